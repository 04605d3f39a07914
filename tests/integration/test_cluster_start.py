"""Nodes that start together on an empty PostgreSQL: one migrates and bootstraps, the others wait; all serve.

Before the advisory locks, 1 or 2 of 3 nodes died with `relation "alembic_version" already exists` in
about 3 of 4 such starts, and two nodes could each create an administrator key (or collide on a given one).
"""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest

from tests.support.cluster import query, start_together, stop_all
from tests.support.servers import BerthServer, PostgresCluster

pytestmark = pytest.mark.integration

ROUNDS = 3
NODES = 3
KEY_ID, SECRET = "AKIACLUSTERSTART0001", "cluster-start-secret-0123456789abcdefghij"


@pytest.mark.parametrize("round_", range(ROUNDS))
def test_nodes_started_together_on_an_empty_database_all_serve(postgres: PostgresCluster, tmp_path: Path,
                                                              round_: int) -> None:
    url = postgres.new_database()
    # even rounds: the administrator key is given (every node tries to create that one key); odd: generated
    env = {"BERTH_ADMIN_ACCESS_KEY_ID": KEY_ID, "BERTH_ADMIN_SECRET_ACCESS_KEY": SECRET} if round_ % 2 == 0 else {}
    nodes = [BerthServer(tmp_path / f"node{i}", database_url=url, env=env, args=["--auth", "iam"])
             for i in range(NODES)]
    try:
        failures = start_together(nodes)
        assert failures == [], "\n".join(failures)
        for node in nodes:
            r = httpx.get(node.url + "/v2/", timeout=10)
            assert r.status_code == 401  # serving, and asking for credentials (--auth iam)
            assert httpx.get(node.url + "/readyz", timeout=10).status_code == 200
            assert "Traceback" not in node.read_log(), node.read_log()
        keys = query(url, "SELECT id FROM access_keys")
        assert len(keys) == 1, keys  # one administrator key, whichever node created it
        if env:
            assert keys[0]["id"] == KEY_ID
        assert len(query(url, "SELECT id FROM signing_keys")) == 1
        assert len(query(url, "SELECT version_num FROM alembic_version")) == 1
    finally:
        stop_all(nodes)
