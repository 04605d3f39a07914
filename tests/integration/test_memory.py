"""Memory stays flat whatever the blob size: a 2 GiB push and pull, streamed, under a fixed memory budget.

Two measures. The budget is on the server's proportional set size (PSS, summed over its processes,
sampled while the data moves): a granian worker is forked from its supervisor, and summing their
resident sets counts the pages they share twice (about 27 MiB at rest). The growth is on the
high-water resident set (VmHWM), which the kernel keeps exactly, so no spike escapes it.
One backend is enough (the metadata store plays no part in the data path): SQLite.
"""

from __future__ import annotations

import hashlib
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.support.oci import counter_blocks
from tests.support.servers import BerthServer

pytestmark = pytest.mark.integration

MiB = 1 << 20
BLOB_SIZE = 2 << 30  # 2 GiB
PATCHES = 2
PEAK_LIMIT = 150 * MiB
GROWTH_LIMIT = 64 * MiB


@pytest.fixture
def server(tmp_path: Path) -> Iterator[BerthServer]:
    s = BerthServer(tmp_path / "data").start()
    try:
        yield s
    finally:
        s.stop()


def _vm(pid: int, field: str) -> int:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1]) * 1024
    raise AssertionError(f"no {field} for {pid}")


def peak_rss(server: BerthServer) -> int:
    """Sum of the high-water resident set (VmHWM) of the server's processes."""
    pids = server.pids()
    assert pids, "server has no processes"
    return sum(_vm(pid, "VmHWM") for pid in pids)


def _pss(pid: int) -> int:
    try:
        with open(f"/proc/{pid}/smaps_rollup") as f:
            for line in f:
                if line.startswith("Pss:"):
                    return int(line.split()[1]) * 1024
    except (FileNotFoundError, ProcessLookupError):
        pass
    return 0


class PeakPss:
    """The largest sum of PSS over the server's processes, sampled every 20 ms until stopped."""

    def __init__(self, server: BerthServer) -> None:
        self.pids = server.pids()
        self.peak = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.wait(0.02):
            self.peak = max(self.peak, sum(_pss(p) for p in self.pids))

    @classmethod
    def start(cls, server: BerthServer) -> PeakPss:
        watch = cls(server)
        watch.peak = sum(_pss(p) for p in watch.pids)
        watch._thread.start()
        return watch

    def stop(self) -> int:
        self._stop.set()
        self._thread.join()
        return self.peak


def test_two_gib_push_and_pull_in_constant_memory(server: BerthServer) -> None:
    repo = "mem/big"
    started = time.monotonic()
    with httpx.Client(base_url=server.url, timeout=120) as http:
        assert http.get("/v2/").status_code == 200
        baseline = peak_rss(server)
        watch = PeakPss.start(server)

        r = http.post(f"/v2/{repo}/blobs/uploads/")
        assert r.status_code == 202
        location = r.headers["Location"]
        hasher = hashlib.sha256()
        blocks = counter_blocks(BLOB_SIZE)
        part = BLOB_SIZE // PATCHES

        def body(n: int) -> Iterator[bytes]:
            """`n` bytes of the blob, block by block, hashed as they go out (chunked transfer encoding)."""
            sent = 0
            while sent < n:
                block = next(blocks)
                hasher.update(block)
                sent += len(block)
                yield block

        for i in range(PATCHES):
            start = i * part
            r = http.patch(location, content=body(part), headers={
                "Content-Type": "application/octet-stream", "Content-Range": f"{start}-{start + part - 1}"})
            assert r.status_code == 202, r.text
            assert r.headers["Range"] == f"0-{start + part - 1}"
            location = r.headers["Location"]
        digest = "sha256:" + hasher.hexdigest()
        r = http.put(location, params={"digest": digest})
        assert r.status_code == 201, r.text
        after_push = peak_rss(server)
        pushed = time.monotonic()

        pulled = hashlib.sha256()
        size = 0
        with http.stream("GET", f"/v2/{repo}/blobs/{digest}") as r:
            assert r.status_code == 200
            assert r.headers["Content-Length"] == str(BLOB_SIZE)
            for chunk in r.iter_raw(MiB):
                pulled.update(chunk)
                size += len(chunk)
        assert size == BLOB_SIZE
        assert "sha256:" + pulled.hexdigest() == digest
        peak = peak_rss(server)
        watch.stop()
        done = time.monotonic()

    print(f"\nmemory over {len(server.pids())} server processes: peak PSS {watch.peak / MiB:.1f} MiB "
          f"(limit {PEAK_LIMIT / MiB:.0f} MiB); VmHWM baseline {baseline / MiB:.1f} MiB, after 2 GiB push "
          f"{after_push / MiB:.1f} MiB, after pull {peak / MiB:.1f} MiB; "
          f"push {BLOB_SIZE / MiB / (pushed - started):.0f} MiB/s, pull {BLOB_SIZE / MiB / (done - pushed):.0f} MiB/s")
    assert_flat(watch.peak, baseline, peak)


def assert_flat(pss_peak: int, hwm_baseline: int, hwm_peak: int) -> None:
    assert pss_peak < PEAK_LIMIT, f"peak PSS {pss_peak / MiB:.1f} MiB"
    # and the growth over the idle server is small: nothing scales with the blob
    assert hwm_peak - hwm_baseline < GROWTH_LIMIT, f"grew by {(hwm_peak - hwm_baseline) / MiB:.1f} MiB"
