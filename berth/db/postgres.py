"""PostgreSQL backend on asyncpg: the same operations as SQLite, `?` rewritten to `$n`."""

from __future__ import annotations

import asyncio
from functools import lru_cache
from typing import Any

import asyncpg

from berth.db.store import Q, T, TxnFn

_RETRYABLE = (asyncpg.SerializationError, asyncpg.DeadlockDetectedError, asyncpg.UniqueViolationError)


@lru_cache(maxsize=1024)
def _numbered(sql: str) -> str:
    parts = sql.split("?")
    out = [parts[0]]
    for i, part in enumerate(parts[1:], start=1):
        out.append(f"${i}{part}")
    return "".join(out)


async def _run(conn: asyncpg.Connection, fn: TxnFn[T], args: tuple[Any, ...]) -> T:
    gen = fn(*args)
    try:
        q: Q = next(gen)
        while True:
            sql = _numbered(q.postgres or q.sql)
            if q.how == "one":
                result: Any = await conn.fetchrow(sql, *q.params)
            elif q.how == "all":
                result = await conn.fetch(sql, *q.params)
            else:
                status = await conn.execute(sql, *q.params)
                tail = status.rsplit(" ", 1)[-1]
                result = int(tail) if tail.isdigit() else 0
            q = gen.send(result)
    except StopIteration as stop:
        return stop.value  # type: ignore[no-any-return]


class PostgresBackend:
    def __init__(self, pool: asyncpg.Pool) -> None:
        self._pool = pool

    @classmethod
    async def connect(cls, url: str) -> PostgresBackend:
        pool = await asyncpg.create_pool(url, min_size=1, max_size=16)
        return cls(pool)

    async def read(self, fn: TxnFn[T], *args: Any) -> T:
        async with self._pool.acquire() as conn:
            return await _run(conn, fn, args)

    async def write(self, fn: TxnFn[T], *args: Any) -> T:
        for attempt in range(5):
            try:
                async with self._pool.acquire() as conn, conn.transaction():
                    return await _run(conn, fn, args)
            except _RETRYABLE:
                if attempt == 4:
                    raise
                await asyncio.sleep(0.01 * (attempt + 1))
        raise AssertionError("unreachable")

    def version(self) -> int | None:
        return None

    async def close(self) -> None:
        await self._pool.close()
