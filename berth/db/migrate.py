"""Run Alembic migrations programmatically (on start and from `berth db upgrade`)."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # Alembic loads only when migrating: `serve` checks sqlite_is_current without it
    from alembic.config import Config

_HERE = Path(__file__).parent
# pg_advisory_lock key held while migrating (and while bootstrapping an administrator): any constant
# no other application on the database uses; int.from_bytes(b"berthmig", "big") >> 1.
MIGRATION_LOCK = 3545099516329243827
BOOTSTRAP_LOCK = MIGRATION_LOCK + 1


def sqlalchemy_url(database_url: str, sqlite_path: Path) -> str:
    if not database_url or database_url.startswith("sqlite"):
        return f"sqlite:///{sqlite_path}"
    return "postgresql+asyncpg://" + database_url.split("://", 1)[1]


def alembic_config(url: str) -> Config:
    from alembic.config import Config

    cfg = Config()
    cfg.set_main_option("script_location", str(_HERE / "migrations"))
    cfg.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    return cfg


def upgrade(url: str) -> None:
    from alembic import command

    command.upgrade(alembic_config(url), "head")


HEAD = "0016"  # the newest revision; tests/unit/test_migrations.py checks it against the scripts


def sqlite_is_current(path: Path) -> bool:
    """True when the SQLite database is already at HEAD (lets `serve` skip loading Alembic)."""
    import sqlite3

    if not path.exists():
        return False
    conn = sqlite3.connect(path)
    try:
        row = conn.execute("SELECT version_num FROM alembic_version").fetchone()
    except sqlite3.Error:
        return False
    finally:
        conn.close()
    return row is not None and row[0] == HEAD


def postgres_is_current(url: str, timeout: float = 10.0) -> bool:
    """True when the PostgreSQL database is already at HEAD: one query, no Alembic (a no-op `berth db upgrade`
    process costs every start 1-3 s). Anything else (no table yet, another revision, no answer) is False:
    the caller migrates, under the migrations' lock."""
    import asyncio

    import asyncpg

    async def version() -> str | None:
        conn = await asyncpg.connect(url, timeout=timeout)
        try:
            return await conn.fetchval("SELECT version_num FROM alembic_version")
        finally:
            await conn.close()

    try:
        return asyncio.run(version()) == HEAD
    except (TimeoutError, OSError, asyncpg.PostgresError, asyncpg.InterfaceError):
        return False
