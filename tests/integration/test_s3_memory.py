"""Memory stays flat on S3 too: a 2 GiB blob pushed to and pulled from radosgw under 150 MiB (PSS; see test_memory).

The blob streams through one PATCH (multipart parts of 6 MiB, two in flight) and is pulled back
streamed (ranged GET read 1 MiB at a time). SQLite: the metadata store plays no part in the data path.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.integration.test_memory import PEAK_LIMIT, MiB, PeakPss, assert_flat, peak_rss
from tests.support.ceph import CephCluster
from tests.support.oci import counter_blocks
from tests.support.servers import BerthServer

pytestmark = pytest.mark.integration

BLOB_SIZE = 2 << 30


@pytest.fixture
def server(ceph: CephCluster, tmp_path: Path) -> Iterator[BerthServer]:
    bucket = ceph.new_bucket("memory")
    url = f"s3://{bucket}/m?endpoint={ceph.endpoint}"
    env = {"AWS_ACCESS_KEY_ID": ceph.access_key, "AWS_SECRET_ACCESS_KEY": ceph.secret_key}
    s = BerthServer(tmp_path / "data", env=env, args=["--storage-url", url]).start()
    try:
        yield s
    finally:
        s.stop()
        s3 = ceph.client()  # give the memstore OSD its RAM back
        for o in s3.list_objects_v2(Bucket=bucket).get("Contents", []):
            s3.delete_object(Bucket=bucket, Key=o["Key"])


def test_two_gib_push_and_pull_on_s3_in_constant_memory(server: BerthServer) -> None:
    repo = "mem/s3"
    started = time.monotonic()
    with httpx.Client(base_url=server.url, timeout=600) as http:
        assert http.get("/v2/").status_code == 200
        baseline = peak_rss(server)
        watch = PeakPss.start(server)
        r = http.post(f"/v2/{repo}/blobs/uploads/")
        assert r.status_code == 202
        hasher = hashlib.sha256()

        def body() -> Iterator[bytes]:
            for block in counter_blocks(BLOB_SIZE):
                hasher.update(block)
                yield block

        r = http.patch(r.headers["Location"], content=body(), headers={"Content-Type": "application/octet-stream"})
        assert r.status_code == 202, r.text
        digest = "sha256:" + hasher.hexdigest()
        r = http.put(r.headers["Location"], params={"digest": digest})
        assert r.status_code == 201, r.text
        after_push = peak_rss(server)
        pushed = time.monotonic()

        pulled, size = hashlib.sha256(), 0
        with http.stream("GET", f"/v2/{repo}/blobs/{digest}") as r:
            assert r.status_code == 200
            assert r.headers["Content-Length"] == str(BLOB_SIZE)
            for chunk in r.iter_raw(MiB):
                pulled.update(chunk)
                size += len(chunk)
        assert size == BLOB_SIZE and "sha256:" + pulled.hexdigest() == digest
        peak = peak_rss(server)
        watch.stop()
        done = time.monotonic()
    print(f"\nS3: peak PSS {watch.peak / MiB:.1f} MiB (limit {PEAK_LIMIT / MiB:.0f}); VmHWM baseline "
          f"{baseline / MiB:.1f} MiB, after 2 GiB push {after_push / MiB:.1f} MiB, after pull {peak / MiB:.1f} MiB; "
          f"push {BLOB_SIZE / MiB / (pushed - started):.0f}"
          f" MiB/s, pull {BLOB_SIZE / MiB / (done - pushed):.0f} MiB/s")
    assert_flat(watch.peak, baseline, peak)
