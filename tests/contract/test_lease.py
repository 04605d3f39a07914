"""Lease writes (claims, renewals: `berth.db.store.lease`) commit without waiting for the disk, on both
backends, and leave the connection as durable as before for every other write."""

from __future__ import annotations

import asyncpg

from berth.db.sqlite import SqliteBackend
from berth.db.store import Backend, Q, Txn, is_durable, lease
from tests.contract import test_metadata as metadata_contract
from tests.contract.test_metadata import ACCOUNT, NOW, REGION, Harness

db = metadata_contract.db
postgres_url = metadata_contract.postgres_url
sqlite_template = metadata_contract.sqlite_template


@lease
def _claim(name: str) -> Txn[int]:
    n = yield Q("INSERT INTO repositories (account_id, region, name, created_at) VALUES (?, ?, ?, ?)",
                (ACCOUNT, REGION, name, NOW))
    return int(n)


def _durable(name: str) -> Txn[int]:
    n = yield Q("INSERT INTO repositories (account_id, region, name, created_at) VALUES (?, ?, ?, ?)",
                (ACCOUNT, REGION, name, NOW))
    return int(n)


def _names() -> Txn[list[str]]:
    rows = yield Q("SELECT name FROM repositories ORDER BY name", (), "all")
    return [r[0] for r in rows]


def test_a_lease_write_commits_and_the_next_write_is_durable_again(db: Harness) -> None:
    assert not is_durable(_claim) and is_durable(_durable)

    async def body(backend: Backend) -> None:
        assert await backend.write(_claim, "leased") == 1
        assert await backend.write(_durable, "durable") == 1
        assert await backend.read(_names) == ["durable", "leased"]
        if isinstance(backend, SqliteBackend):  # the writer connection is back to synchronous=FULL (2)
            level = backend._writer_pool.submit(
                lambda: backend._writer.execute("PRAGMA synchronous").fetchone()[0]).result()
            assert level == 2
        else:  # SET LOCAL ended with its transaction: a fresh one commits synchronously
            conn = await asyncpg.connect(db.where)
            try:
                assert await conn.fetchval("SHOW synchronous_commit") == "on"
            finally:
                await conn.close()

    db.run(body)
