"""The Alembic migrations and the SQLAlchemy models (berth.db.schema) describe the same schema."""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import Callable
from pathlib import Path
from typing import Any

from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import create_engine, inspect, pool
from sqlalchemy.engine import Connection
from sqlalchemy.ext.asyncio import create_async_engine

from berth.db.migrate import HEAD, alembic_config, postgres_is_current, sqlalchemy_url, sqlite_is_current, upgrade
from berth.db.schema import metadata
from tests.support.servers import PostgresCluster

OPTS = {"compare_type": True, "compare_server_default": True}


def _diff(conn: Connection) -> list[Any]:
    return list(compare_metadata(MigrationContext.configure(conn, opts=OPTS), metadata))


def _head(conn: Connection) -> str | None:
    return MigrationContext.configure(conn).get_current_revision()


def test_sqlite_migrations_match_models(tmp_path: Path) -> None:
    url = sqlalchemy_url("", tmp_path / "berth.db")
    assert url == f"sqlite:///{tmp_path / 'berth.db'}"
    upgrade(url)
    upgrade(url)  # idempotent: already at head
    engine = create_engine(url, poolclass=pool.NullPool)
    try:
        with engine.connect() as conn:
            assert _diff(conn) == []
            assert _head(conn) is not None
            assert set(inspect(conn).get_table_names()) >= set(metadata.tables)
    finally:
        engine.dispose()


def test_postgres_migrations_match_models(postgres: Any, tmp_path: Path) -> None:
    url = sqlalchemy_url(postgres.new_database(), tmp_path / "unused.db")
    assert url.startswith("postgresql+asyncpg://")
    upgrade(url)

    async def check() -> tuple[list[Any], str | None, list[str]]:
        engine = create_async_engine(url, poolclass=pool.NullPool)
        try:
            async with engine.connect() as conn:
                diff = await conn.run_sync(_diff)
                head = await conn.run_sync(_head)
                tables = await conn.run_sync(lambda c: inspect(c).get_table_names())
                return diff, head, tables
        finally:
            await engine.dispose()

    diff, head, tables = asyncio.run(check())
    assert diff == []
    assert head is not None
    assert set(tables) >= set(metadata.tables)


def test_sqlite_downgrade_to_base_and_back(tmp_path: Path) -> None:
    url = sqlalchemy_url("", tmp_path / "berth.db")
    upgrade(url)
    command.downgrade(alembic_config(url), "base")
    engine = create_engine(url, poolclass=pool.NullPool)
    try:
        with engine.connect() as conn:
            assert set(inspect(conn).get_table_names()) <= {"alembic_version"}
        upgrade(url)
        with engine.connect() as conn:
            assert _diff(conn) == []
    finally:
        engine.dispose()


def test_head_constant_matches_the_scripts() -> None:
    scripts = ScriptDirectory.from_config(alembic_config("sqlite://"))
    assert scripts.get_heads() == [HEAD]  # one head: no unmerged branches
    chain = [rev.revision for rev in scripts.walk_revisions()]
    assert chain[0] == HEAD and len(chain) == len(set(chain))
    assert scripts.get_revision(chain[-1]).down_revision is None


def _current_only_at_head(alembic_url: str, is_current: Callable[[], bool]) -> None:
    upgrade(alembic_url)
    assert is_current() is True
    command.downgrade(alembic_config(alembic_url), "-1")
    assert is_current() is False
    upgrade(alembic_url)
    assert is_current() is True


def test_postgres_is_current(postgres: PostgresCluster) -> None:
    url = postgres.new_database()
    alembic_url = sqlalchemy_url(url, Path("unused"))
    assert postgres_is_current(url) is False  # an empty database: no alembic_version table
    _current_only_at_head(alembic_url, lambda: postgres_is_current(url))
    assert postgres_is_current(url.rsplit("/", 1)[0] + "/no_such_database") is False


def test_sqlite_is_current(tmp_path: Path) -> None:
    path = tmp_path / "berth.db"
    assert sqlite_is_current(path) is False
    assert not path.exists()  # asking does not create the file
    sqlite3.connect(path).close()
    assert sqlite_is_current(path) is False  # an empty database: no alembic_version table
    _current_only_at_head(sqlalchemy_url("", path), lambda: sqlite_is_current(path))
