"""What the `berth` commands share: their Settings (flags beat environment beat file) and the metadata
database opened for one command's work. Light imports only: every capability's CLI module imports it."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Awaitable, Callable
from pathlib import Path

import typer

from berth.config import ConfigError, Settings

# the options of the capabilities' commands (berth/*/cli.py)
DataDir = typer.Option(None, "--data-dir", help="Data directory (env BERTH_DATA_DIR).")
DatabaseUrl = typer.Option(None, "--database-url", help="postgresql://… (env BERTH_DATABASE_URL); default SQLite.")


def settings(config: Path | None = None, **overrides: object) -> Settings:
    try:
        return Settings.from_env(None, config, **overrides)
    except ConfigError as e:
        typer.echo(f"berth: {e}", err=True)
        raise typer.Exit(2) from None


def migrate(s: Settings) -> None:
    """The schema at HEAD, in a process of its own (`berth db upgrade`, which also makes the data dir 0700),
    so the command's own process never loads Alembic."""
    from berth.db.migrate import postgres_is_current, sqlite_is_current

    if not (postgres_is_current(s.database_url) if s.uses_postgres else sqlite_is_current(s.sqlite_path)):
        subprocess.run([sys.executable, "-m", "berth", "db", "upgrade"], env={**os.environ, **s.to_env()}, check=True)


def run_on_db(s: Settings, fn: Callable[..., Awaitable[int]], *args: object) -> None:
    """Run `fn(db, *args)` on the metadata database (migrated first); its non-zero result is the exit code."""
    import asyncio

    from berth.app import open_backend

    migrate(s)

    async def main() -> int:
        db = await open_backend(s)
        try:
            return await fn(db, *args)
        finally:
            await db.close()

    code = asyncio.run(main())
    if code:
        raise typer.Exit(code)
