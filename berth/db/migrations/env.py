"""Alembic environment: sync engine for SQLite, asyncpg engine for PostgreSQL."""

import asyncio

from alembic import context
from sqlalchemy import create_engine, pool

from berth.db.schema import metadata

url = context.config.get_main_option("sqlalchemy.url")


def _run(connection):
    context.configure(connection=connection, target_metadata=metadata, render_as_batch=True)
    with context.begin_transaction():
        context.run_migrations()


async def _run_async():
    from sqlalchemy.ext.asyncio import create_async_engine  # needs greenlet; PostgreSQL only

    engine = create_async_engine(url, poolclass=pool.NullPool)
    async with engine.connect() as conn:
        await conn.run_sync(_run)
    await engine.dispose()


if url.startswith("sqlite"):
    engine = create_engine(url, poolclass=pool.NullPool)
    with engine.connect() as conn:
        _run(conn)
    engine.dispose()
else:
    asyncio.run(_run_async())
