"""--workers 2: requests of one client land on either process; every answer stays consistent."""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest

from tests.support.oci import OciClient, random_image, sha256
from tests.support.servers import BerthServer

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module", params=["sqlite", "postgres"])
def two_workers(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[BerthServer]:
    url = request.getfixturevalue("postgres").new_database() if request.param == "postgres" else ""
    srv = BerthServer(tmp_path_factory.mktemp("workers") / "data", database_url=url, args=["--workers", "2"]).start()
    try:
        yield srv
    finally:
        srv.stop()


def fresh(server: BerthServer) -> OciClient:
    """A new connection, so that the kernel may hand it to either worker."""
    return OciClient(server.url)


def test_two_worker_processes_serve(two_workers: BerthServer) -> None:
    assert len(two_workers.pids()) >= 3  # the supervisor and its two workers


def test_chunked_upload_across_workers(two_workers: BerthServer) -> None:
    data = os.urandom(64 * 1024)
    with fresh(two_workers) as c:
        location = c.start_upload("spread/app")
    for start in range(0, len(data), 8 * 1024):  # each chunk on a new connection: any worker continues it
        with fresh(two_workers) as c:
            r = c.patch(location, data[start:start + 8 * 1024], start)
            assert r.status_code == 202, r.text
            location = r.headers["Location"]
    with fresh(two_workers) as c:
        assert c.http.put(location, params={"digest": sha256(data)}).status_code == 201
        assert c.get_blob("spread/app", sha256(data)).content == data


def test_tag_moves_are_seen_by_every_worker(two_workers: BerthServer) -> None:
    for round_ in range(3):
        image = random_image(layers=1, layer_size=512)
        with fresh(two_workers) as c:
            assert c.push_image("spread/tags", image, "latest").status_code == 201
        for _ in range(12):  # read-after-write from any process, including one that cached the old tag
            with fresh(two_workers) as c:
                r = c.get_manifest("spread/tags", "latest")
                assert r.status_code == 200 and r.headers["Docker-Content-Digest"] == image.digest, round_
