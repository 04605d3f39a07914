from __future__ import annotations

import signal
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import settings

from tests.support.ceph import CephCluster, shared_cluster, stop_shared
from tests.support.servers import BerthServer, PostgresCluster


@pytest.fixture(scope="session")
def postgres() -> Iterator[PostgresCluster]:
    cluster = PostgresCluster().start()
    try:
        yield cluster
    finally:
        cluster.stop()


@pytest.fixture(scope="session", params=["sqlite", "postgres"])
def berth(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[BerthServer]:
    """A running `berth serve` (create-on-push on), once on the embedded default, once on PostgreSQL; shared by
    every module that uses it (test_oci_api, test_bad_input*, test_clients, test_durability, test_gc): each names
    its own repositories, and a test needing a registry of its own uses another account's host or server."""
    base: Path = tmp_path_factory.mktemp("berth")
    url = ""
    if request.param == "postgres":
        url = request.getfixturevalue("postgres").new_database()
    # the regions test_oci_api's ECR-style hosts name: a host naming a region not served is refused
    server = BerthServer(base / "data", database_url=url,
                         env={"BERTH_REGIONS": "us-east-1,us-west-2,eu-central-1"}).start()
    try:
        yield server
    finally:
        server.stop()


# No timed assertions in tests: hypothesis' per-example deadline is one, and it fails on a busy machine.
settings.register_profile("berth", deadline=None)
settings.load_profile("berth")
@pytest.fixture(scope="session")
def ceph() -> Iterator[CephCluster]:
    """A throwaway one-node Ceph with radosgw (S3 on 127.0.0.1), started once per session on first use."""
    yield shared_cluster()


def _interrupted(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


def pytest_configure(config: pytest.Config) -> None:
    # A SIGTERM (a CI timeout, a killed run) ends the session as Ctrl-C does: the fixtures' finalizers run
    # and stop the servers they started, each in a session of its own that the signal does not reach.
    signal.signal(signal.SIGTERM, _interrupted)


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    stop_shared()  # the session's Ceph, if any test started it
