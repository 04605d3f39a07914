"""Durability: crashes (SIGKILL) at random moments lose nothing acknowledged; concurrent writers stay consistent.

Runs against a real `berth serve`, on SQLite and on PostgreSQL.
"""

from __future__ import annotations

import os
import random
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest

from tests.support.oci import Image, OciClient, error_codes, random_image, sha256
from tests.support.servers import BerthServer

pytestmark = pytest.mark.integration


@pytest.fixture
def oci(berth: BerthServer) -> Iterator[OciClient]:
    with OciClient(berth.url) as client:
        yield client


# (1) SIGKILL at random moments


@dataclass
class PushLog:
    acknowledged: list[tuple[str, str, Image]] = field(default_factory=list)  # (repo, tag, image)
    server_errors: list[str] = field(default_factory=list)
    connection_errors: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock)


class _ServerError(Exception):
    pass


def _check(r: httpx.Response, expected: int) -> None:
    if r.status_code >= 500:
        raise _ServerError(f"{r.request.method} {r.request.url.path} -> {r.status_code} {r.text[:300]}")
    assert r.status_code == expected, (r.request.method, r.request.url.path, r.status_code, r.text)


def _push_one(oci: OciClient, repo: str, tag: str, image: Image, chunked: bool) -> None:
    for data in image.blobs:
        if chunked:
            r = oci.http.post(f"/v2/{repo}/blobs/uploads/")
            _check(r, 202)
            location = r.headers["Location"]
            half = len(data) // 2
            for start, part in ((0, data[:half]), (half, data[half:])):
                r = oci.patch(location, part, start)
                _check(r, 202)
                location = r.headers["Location"]
            _check(oci.http.put(location, params={"digest": sha256(data)}), 201)
        else:
            _check(oci.push_blob(repo, data), 201)
    _check(oci.put_manifest(repo, tag, image.body, image.media_type), 201)


def _pusher(url: str, repo: str, worker: int, log: PushLog, stop: threading.Event) -> None:
    rng = random.Random(worker)
    with OciClient(url, timeout=10) as oci:
        n = 0
        while not stop.is_set():
            image = random_image(layers=rng.randint(1, 3), layer_size=rng.randint(100, 20_000))
            tag = f"w{worker}-{n}"
            n += 1
            try:
                _push_one(oci, repo, tag, image, chunked=rng.random() < 0.3)
            except httpx.TransportError:
                with log.lock:
                    log.connection_errors += 1
                time.sleep(0.2)  # the server is down: let it restart in peace
                continue
            except _ServerError as e:
                with log.lock:
                    log.server_errors.append(str(e))
                continue
            except AssertionError as e:  # a 4xx where none belongs: also a finding
                with log.lock:
                    log.server_errors.append(f"unexpected answer: {e}")
                continue
            with log.lock:
                log.acknowledged.append((repo, tag, image))


def _verify_all(oci: OciClient, acknowledged: list[tuple[str, str, Image]]) -> None:
    by_repo: dict[str, set[str]] = {}
    for repo, tag, image in acknowledged:
        by_repo.setdefault(repo, set()).add(tag)
        r = oci.get_manifest(repo, tag)
        assert r.status_code == 200, (repo, tag, r.status_code, r.text)
        assert r.content == image.body, (repo, tag)
        assert r.headers["Docker-Content-Digest"] == image.digest == sha256(r.content)
        r = oci.get_manifest(repo, image.digest)
        assert r.status_code == 200 and r.content == image.body, (repo, image.digest)
        for data in image.blobs:
            r = oci.get_blob(repo, sha256(data))
            assert r.status_code == 200, (repo, sha256(data), r.status_code)
            assert sha256(r.content) == sha256(data) and r.content == data
    for repo, tags in by_repo.items():
        assert tags <= set(oci.all_tags(repo)), repo


@pytest.fixture(params=["sqlite", "postgres"])
def crash_server(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[BerthServer]:
    """A dedicated server that this test alone kills and restarts."""
    url = request.getfixturevalue("postgres").new_database() if request.param == "postgres" else ""
    server = BerthServer(tmp_path / "data", database_url=url).start()
    try:
        yield server
    finally:
        server.stop()


KILLS = 4


def test_sigkill_loses_nothing_acknowledged(crash_server: BerthServer) -> None:
    server = crash_server
    rng = random.Random()
    log = PushLog()
    stop = threading.Event()
    repos = [f"crash/{uuid.uuid4().hex[:8]}-{i}" for i in range(2)]
    threads = [threading.Thread(target=_pusher, args=(server.url, repos[i % 2], i, log, stop), daemon=True)
               for i in range(3)]
    for t in threads:
        t.start()
    acked_at_kill = []
    restarts = []
    try:
        for _ in range(KILLS):
            time.sleep(rng.uniform(0.4, 1.5))
            server.kill()
            with log.lock:
                acked_at_kill.append(len(log.acknowledged))
            time.sleep(rng.uniform(0.0, 0.3))
            t0 = time.monotonic()
            server.start()
            restarts.append(round(time.monotonic() - t0, 1))
        time.sleep(0.5)
    finally:
        stop.set()
        for t in threads:
            t.join(30)
    print(f"\n{len(log.acknowledged)} images acknowledged across {KILLS} kills "
          f"(at each kill: {acked_at_kill}; restarts took {restarts} s); "
          f"{log.connection_errors} pushes cut off by a kill or refused while down")
    assert not log.server_errors, log.server_errors[:5]
    assert len(log.acknowledged) >= 10, "too little pushed for the test to mean anything"
    assert acked_at_kill[-1] > acked_at_kill[0], "pushes did not progress across restarts"
    # after one more crash and restart, everything acknowledged is there, byte for byte
    server.kill()
    server.start()
    with OciClient(server.url) as oci:
        _verify_all(oci, log.acknowledged)
        # and the registry still takes pushes
        image = random_image()
        assert oci.push_image(repos[0], image, "after-crashes").status_code == 201
        assert oci.get_manifest(repos[0], "after-crashes").content == image.body
    assert "Traceback" not in server.read_log(), server.read_log()[-3000:]


# (2) concurrent writers


def _clean_error(r: httpx.Response) -> None:
    """A refusal, not a failure: 4xx with an OCI error body."""
    assert 400 <= r.status_code < 500, (r.status_code, r.text)
    error_codes(r)


@pytest.mark.parametrize("round_", range(2))
def test_same_blob_pushed_concurrently(berth: BerthServer, round_: int) -> None:
    repo = f"race/{uuid.uuid4().hex[:8]}"
    data = os.urandom(3 << 20)
    digest = sha256(data)
    n = 6
    barrier = threading.Barrier(n)
    results: list[object] = [None] * n

    def push(i: int) -> None:
        with OciClient(berth.url) as oci:
            barrier.wait()
            try:
                if i % 3 == 0:
                    results[i] = oci.push_blob(repo, data)
                elif i % 3 == 1:
                    results[i] = oci.push_blob_chunked(repo, data, chunk=1 << 20)
                else:
                    results[i] = oci.push_blob_post_put(repo, data)
            except Exception as e:  # noqa: BLE001 - reported below
                results[i] = e

    threads = [threading.Thread(target=push, args=(i,)) for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    ok = 0
    for r in results:
        assert isinstance(r, httpx.Response), r
        if r.status_code == 201:
            ok += 1
            assert r.headers["Docker-Content-Digest"] == digest
        else:
            _clean_error(r)
    assert ok >= 1
    with OciClient(berth.url) as oci:
        r = oci.get_blob(repo, digest)
        assert r.status_code == 200
        assert r.headers["Content-Length"] == str(len(data))
        assert sha256(r.content) == digest
    hexpart = digest.split(":")[1]
    assert (berth.data_dir / "blobs" / "sha256" / hexpart[:2] / hexpart).stat().st_size == len(data)


def test_same_blob_into_many_repositories_concurrently(berth: BerthServer) -> None:
    data = os.urandom(1 << 20)
    digest = sha256(data)
    repos = [f"race/many-{uuid.uuid4().hex[:6]}-{i}" for i in range(6)]
    barrier = threading.Barrier(len(repos))
    results: dict[str, httpx.Response] = {}

    def push(repo: str) -> None:
        with OciClient(berth.url) as oci:
            barrier.wait()
            results[repo] = oci.push_blob(repo, data)

    threads = [threading.Thread(target=push, args=(r,)) for r in repos]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    with OciClient(berth.url) as oci:
        for repo in repos:
            assert results[repo].status_code == 201, results[repo].text
            assert sha256(oci.get_blob(repo, digest).content) == digest


@pytest.mark.parametrize("round_", range(3))
def test_different_manifests_to_one_tag_concurrently(berth: BerthServer, round_: int) -> None:
    repo = f"race/tag-{uuid.uuid4().hex[:8]}"
    images = [random_image(layers=1, layer_size=512) for _ in range(6)]
    with OciClient(berth.url) as oci:
        for image in images:
            for data in image.blobs:
                assert oci.push_blob(repo, data).status_code == 201
    barrier = threading.Barrier(len(images))
    results: list[httpx.Response | None] = [None] * len(images)

    def put(i: int) -> None:
        with OciClient(berth.url) as oci:
            barrier.wait()
            results[i] = oci.put_manifest(repo, "contested", images[i].body)

    threads = [threading.Thread(target=put, args=(i,)) for i in range(len(images))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    for i, r in enumerate(results):
        assert r is not None and r.status_code == 201, (i, r and r.text)
        assert r.headers["Docker-Content-Digest"] == images[i].digest
    digests = {image.digest: image for image in images}
    with OciClient(berth.url) as oci:
        seen = set()
        for _ in range(5):  # every read agrees: bytes, digest header and HEAD
            r = oci.get_manifest(repo, "contested")
            assert r.status_code == 200
            served = r.headers["Docker-Content-Digest"]
            assert served == sha256(r.content)
            assert served in digests and r.content == digests[served].body
            assert oci.get_manifest(repo, "contested", "HEAD").headers["Docker-Content-Digest"] == served
            seen.add(served)
        assert len(seen) == 1
        assert oci.all_tags(repo) == ["contested"]
        for image in images:  # every manifest was stored, tagged or not
            assert oci.get_manifest(repo, image.digest).content == image.body


def test_concurrent_chunks_to_one_session_stay_consistent(berth: BerthServer) -> None:
    """Two clients racing PATCHes on one session: each chunk lands whole or is refused (416)."""
    repo = f"race/session-{uuid.uuid4().hex[:8]}"
    data = os.urandom(2 << 20)
    with OciClient(berth.url) as oci:
        location = oci.start_upload(repo)
    barrier = threading.Barrier(2)
    results: list[httpx.Response | None] = [None, None]

    def patch(i: int) -> None:
        with OciClient(berth.url) as oci:
            barrier.wait()
            results[i] = oci.patch(location, data[: 1 << 20], 0)

    threads = [threading.Thread(target=patch, args=(i,)) for i in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    statuses = sorted(r.status_code for r in results if r is not None)
    assert statuses == [202, 416], statuses
    with OciClient(berth.url) as oci:
        r = oci.http.get(location)
        assert r.headers["Range"] == f"0-{(1 << 20) - 1}"
        assert oci.patch(location, data[1 << 20:], 1 << 20).status_code == 202
        assert oci.http.put(location, params={"digest": sha256(data)}).status_code == 201
        assert sha256(oci.get_blob(repo, sha256(data)).content) == sha256(data)


# (3) nothing left behind


def test_no_leftover_upload_files(berth: BerthServer, oci: OciClient) -> None:
    uploads = berth.data_dir / "uploads"
    before = set(uploads.iterdir())
    repo = f"tidy/{uuid.uuid4().hex[:8]}"
    blobs = [os.urandom(random.randint(0, 300_000)) for _ in range(9)]
    for i, data in enumerate(blobs):
        push = (oci.push_blob, oci.push_blob_post_put, lambda r, d: oci.push_blob_chunked(r, d, 100_000))[i % 3]
        assert push(repo, data).status_code == 201
    image = random_image()
    assert oci.push_image(repo, image, "v1", chunked=True).status_code == 201
    # a cancelled session and refused uploads clean up after themselves too
    location = oci.start_upload(repo)
    oci.patch(location, b"abandon", 0)
    assert oci.http.delete(location).status_code == 204
    assert oci.push_blob(repo, b"data", digest=sha256(b"not the data")).status_code == 400
    assert oci.push_blob_chunked(repo, b"chunked data", 5, digest=sha256(b"nope")).status_code == 400
    assert oci.push_blob_post_put(repo, b"put data", digest=sha256(b"nope")).status_code == 400
    leftovers = set(uploads.iterdir()) - before
    assert not leftovers, sorted(p.name for p in leftovers)
    for data in blobs:
        hexpart = sha256(data).split(":")[1]
        assert (berth.data_dir / "blobs" / "sha256" / hexpart[:2] / hexpart).read_bytes() == data
    # nothing half-written in the blob store either (temporary files are only ever under uploads/)
    stray = [p for p in (berth.data_dir / "blobs").rglob("*") if p.is_file() and len(p.name) != 64]
    assert not stray, stray
