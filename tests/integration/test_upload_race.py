"""Concurrent PATCHes of one upload at one offset, spread over the two processes of `--workers 2`:
exactly one is accepted each round (the others get 416 with the upload's Range), and the blob is
byte-exact. The offset is claimed in the database, so a per-process lock is not enough to pass."""

from __future__ import annotations

import http.client
import os
import threading
from collections.abc import Iterator
from typing import Any
from urllib.parse import urlsplit

import boto3
import pytest
from botocore.config import Config
from botocore.exceptions import ClientError

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


def _ecr_race(clients: list[Any], upload_id: str, bodies: list[bytes]) -> list[str]:
    """UploadLayerPart of each body at byte 0, one client each, released at once: "ok" or the error code."""
    barrier = threading.Barrier(len(bodies))
    outcomes = [""] * len(bodies)

    def send(i: int) -> None:
        barrier.wait(10)
        try:
            clients[i].upload_layer_part(repositoryName="race/ecr", uploadId=upload_id, partFirstByte=0,
                                         partLastByte=len(bodies[i]) - 1, layerPartBlob=bodies[i])
            outcomes[i] = "ok"
        except ClientError as e:
            outcomes[i] = e.response["Error"]["Code"]

    threads = [threading.Thread(target=send, args=(i,)) for i in range(len(bodies))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    return outcomes


def test_one_ecr_layer_part_wins_each_offset(two_workers: BerthServer) -> None:
    """The ECR face of the same race: UploadLayerPart at one partFirstByte from 8 clients at once;
    one succeeds, the others get InvalidLayerPartException."""
    def client() -> Any:
        return boto3.client("ecr", endpoint_url=two_workers.url, region_name="us-east-1",
                            aws_access_key_id="AKIARACETEST00000001", aws_secret_access_key="race-test-secret",
                            config=Config(retries={"max_attempts": 1}))

    clients = [client() for _ in range(WRITERS)]
    ecr = clients[0]
    ecr.create_repository(repositoryName="race/ecr")
    for round_ in range(ROUNDS // 5):
        upload_id = ecr.initiate_layer_upload(repositoryName="race/ecr")["uploadId"]
        bodies = [os.urandom(64 * 1024) for _ in range(WRITERS)]
        outcomes = _ecr_race(clients, upload_id, bodies)
        assert outcomes.count("ok") == 1, (round_, outcomes)
        assert set(outcomes) == {"ok", "InvalidLayerPartException"}, outcomes
        winner = bodies[outcomes.index("ok")]
        ecr.complete_layer_upload(repositoryName="race/ecr", uploadId=upload_id, layerDigests=[sha256(winner)])
        with OciClient(two_workers.url) as c:
            assert c.get_blob("race/ecr", sha256(winner)).content == winner
