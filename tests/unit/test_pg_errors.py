"""How PostgreSQL's failures are classified (berth/db/postgres.py): short of resources is the server
away for now (503, retry); a full data disk is the statement's own failure, answered as insufficient
storage; a WAL PANIC shows as a lost connection."""

from __future__ import annotations

import asyncpg

from berth.db.postgres import _gone
from berth.registry.errors import from_failure


def test_class_53_but_disk_full_is_the_server_away() -> None:
    for exc in (asyncpg.TooManyConnectionsError("too many"), asyncpg.OutOfMemoryError("oom"),
                asyncpg.InsufficientResourcesError("x"), asyncpg.ConfigurationLimitExceededError("x")):
        assert _gone(exc), exc
    assert not _gone(asyncpg.DiskFullError("could not extend file"))
    assert _gone(asyncpg.ConnectionDoesNotExistError("connection was closed in the middle of operation"))


def test_disk_full_is_insufficient_storage() -> None:
    failure = from_failure(asyncpg.DiskFullError("could not extend file"))
    assert failure is not None and failure.code == "STORAGE_FULL" and failure.extra["retry_after"] > 0
