"""Memory stays flat whatever the blob size: a 2 GiB push and pull, streamed, under a fixed RSS budget.

One backend is enough (the metadata store plays no part in the data path): SQLite.
"""

from __future__ import annotations

import hashlib
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


def test_two_gib_push_and_pull_in_constant_memory(server: BerthServer) -> None:
    repo = "mem/big"
    started = time.monotonic()
    with httpx.Client(base_url=server.url, timeout=120) as http:
        assert http.get("/v2/").status_code == 200
        baseline = peak_rss(server)

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
        done = time.monotonic()

    print(f"\npeak RSS (sum of VmHWM over {len(server.pids())} server processes): "
          f"baseline {baseline / MiB:.1f} MiB, after 2 GiB push {after_push / MiB:.1f} MiB, "
          f"after pull {peak / MiB:.1f} MiB (limit {PEAK_LIMIT / MiB:.0f} MiB); "
          f"push {BLOB_SIZE / MiB / (pushed - started):.0f} MiB/s, pull {BLOB_SIZE / MiB / (done - pushed):.0f} MiB/s")
    assert peak < PEAK_LIMIT, f"peak RSS {peak / MiB:.1f} MiB"
    # and the growth over the idle server is small: nothing scales with the blob
    assert peak - baseline < 64 * MiB, f"grew by {(peak - baseline) / MiB:.1f} MiB"
