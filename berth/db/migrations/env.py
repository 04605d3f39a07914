"""Alembic environment: sync engine for SQLite, asyncpg engine for PostgreSQL."""

import asyncio
import sys

from alembic import context
from sqlalchemy import create_engine, pool, text

from berth.db.schema import metadata

url = context.config.get_main_option("sqlalchemy.url")


def _run(connection):
    context.configure(connection=connection, target_metadata=metadata, render_as_batch=True)
    with context.begin_transaction():
        context.run_migrations()


def _run_locked(connection):
    """Nodes starting together on an empty database: one migrates, the others wait on the session-level
    advisory lock, then find the schema at head and do nothing (migrate.MIGRATION_LOCK)."""
    from berth.db.migrate import MIGRATION_LOCK

    if not connection.execute(text("SELECT pg_try_advisory_lock(:k)"), {"k": MIGRATION_LOCK}).scalar():
        print("berth: another node is migrating the database; waiting for it", file=sys.stderr, flush=True)
        connection.execute(text("SELECT pg_advisory_lock(:k)"), {"k": MIGRATION_LOCK})
    connection.commit()  # end the implicit transaction; the session lock stays held
    try:
        _run(connection)
    finally:
        connection.execute(text("SELECT pg_advisory_unlock(:k)"), {"k": MIGRATION_LOCK})
        connection.commit()


async def _run_async():
    from sqlalchemy.ext.asyncio import create_async_engine  # needs greenlet; PostgreSQL only

    engine = create_async_engine(url, poolclass=pool.NullPool)
    async with engine.connect() as conn:
        await conn.run_sync(_run_locked)
    await engine.dispose()


if url.startswith("sqlite"):
    engine = create_engine(url, poolclass=pool.NullPool)
    with engine.connect() as conn:
        _run(conn)
    engine.dispose()
else:
    asyncio.run(_run_async())
