"""Concurrent PATCHes of one upload at one offset, spread over the two processes of `--workers 2`:
exactly one is accepted each round (the others get 416 with the upload's Range), and the blob is
byte-exact. The offset is claimed in the database, so a per-process lock is not enough to pass."""

from __future__ import annotations

import http.client
import os
import threading
from collections.abc import Iterator
from urllib.parse import urlsplit

import pytest

from tests.support.oci import OciClient, sha256
from tests.support.servers import BerthServer

pytestmark = pytest.mark.integration

WRITERS = 8
ROUNDS = 25
CHUNK = 256 * 1024


@pytest.fixture(scope="module", params=["sqlite", "postgres"])
def two_workers(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[BerthServer]:
    url = request.getfixturevalue("postgres").new_database() if request.param == "postgres" else ""
    srv = BerthServer(tmp_path_factory.mktemp("race") / "data", database_url=url, args=["--workers", "2"]).start()
    try:
        yield srv
    finally:
        srv.stop()


def _race(server: BerthServer, location: str, offset: int, bodies: list[bytes],
          put: bool = False) -> list[tuple[int, str, str]]:
    """Send every body as a PATCH at `offset` (or as the closing PUT with its digest), each on its
    own connection, released at once."""
    port = urlsplit(server.url).port
    barrier = threading.Barrier(len(bodies))
    results: list[tuple[int, str, str]] = [(0, "", "")] * len(bodies)

    def send(i: int) -> None:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
        try:
            conn.connect()  # a new connection each: the kernel hands it to either worker
            headers = {"Content-Type": "application/octet-stream", "Content-Length": str(len(bodies[i]))}
            if not put:
                headers["Content-Range"] = f"{offset}-{offset + len(bodies[i]) - 1}"
            target = f"{location}?digest={sha256(bodies[i])}" if put else location
            barrier.wait(10)
            conn.request("PUT" if put else "PATCH", target, body=bodies[i], headers=headers)
            r = conn.getresponse()
            text = r.read().decode(errors="replace")
            results[i] = (r.status, r.getheader("Range") or "", text)
        finally:
            conn.close()

    threads = [threading.Thread(target=send, args=(i,)) for i in range(len(bodies))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(90)
    return results


def test_one_patch_wins_each_offset(two_workers: BerthServer) -> None:
    double_accepts = 0
    for round_ in range(ROUNDS):
        with OciClient(two_workers.url) as c:
            location = urlsplit(c.start_upload("race/app")).path
        stored = b""
        for step in range(2):  # the race at offset 0, then again once the upload holds bytes
            bodies = [os.urandom(CHUNK) for _ in range(WRITERS)]
            results = _race(two_workers, location, len(stored), bodies)
            won = [i for i, (status, _, _) in enumerate(results) if status == 202]
            double_accepts += len(won) > 1
            assert len(won) == 1, (round_, step, [r[:2] for r in results])
            for status, rng, text in results:
                if status != 202:
                    assert status == 416, (round_, step, status, text)
                    assert "BLOB_UPLOAD_INVALID" in text, text
                    # the winner's claim was still open, or its bytes were already committed
                    assert rng in (f"0-{max(len(stored) - 1, 0)}", f"0-{len(stored) + CHUNK - 1}"), (round_, rng)
            stored += bodies[won[0]]
        with OciClient(two_workers.url) as c:
            r = c.http.put(location, params={"digest": sha256(stored)})
            assert r.status_code == 201, (round_, r.status_code, r.text)
            assert c.get_blob("race/app", sha256(stored)).content == stored
    assert double_accepts == 0


def test_one_put_completes_a_fresh_upload(two_workers: BerthServer) -> None:
    """POST, then 8 PUTs with a whole (different) blob each: one 201, the others find it ended."""
    for round_ in range(ROUNDS):
        with OciClient(two_workers.url) as c:
            location = urlsplit(c.start_upload("race/put")).path
        bodies = [os.urandom(32 * 1024) for _ in range(WRITERS)]
        results = _race(two_workers, location, 0, bodies, put=True)
        won = [i for i, (status, _, _) in enumerate(results) if status == 201]
        assert len(won) == 1, (round_, [r[:2] for r in results])
        for status, _, text in results:
            assert status in (201, 404, 416), (round_, status, text)
            if status == 404:
                assert "BLOB_UPLOAD_UNKNOWN" in text, text
        with OciClient(two_workers.url) as c:
            assert c.get_blob("race/put", sha256(bodies[won[0]])).content == bodies[won[0]]
            assert c.http.get(location).status_code == 404  # the session ended with the winner
