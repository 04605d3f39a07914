"""PostgreSQL backend on asyncpg: the same operations as SQLite, `?` rewritten to `$n`, `Q.lock` as FOR <lock>.

Transactions are READ COMMITTED; operations that decide on what they read lock those rows (Q.lock).
A transaction that fails on a serialisation failure, a deadlock or a unique violation (two writers
inserting one key) is run again from the start, up to five times.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from functools import lru_cache
from typing import Any

import asyncpg

from berth.db.store import P, Q, StatementFailed, T, Txn, is_durable

_RETRYABLE = (asyncpg.SerializationError, asyncpg.DeadlockDetectedError, asyncpg.UniqueViolationError)
ATTEMPTS = 5


@lru_cache(maxsize=1024)
def _numbered(sql: str, lock: str | None) -> str:
    parts = sql.split("?")
    out = [parts[0]]
    for i, part in enumerate(parts[1:], start=1):
        out.append(f"${i}{part}")
    if lock is not None:
        out.append(f" FOR {lock}")
    return "".join(out)


async def _run(conn: asyncpg.Connection, fn: Callable[..., Txn[T]], args: tuple[Any, ...],
               kwargs: dict[str, Any]) -> T:
    gen = fn(*args, **kwargs)
    try:
        q: Q = next(gen)
        while True:
            sql = _numbered(q.postgres or q.sql, q.lock)
            try:
                if q.how == "one":
                    result: Any = await conn.fetchrow(sql, *q.params)
                elif q.how == "all":
                    result = await conn.fetch(sql, *q.params)
                else:
                    status = await conn.execute(sql, *q.params)
                    tail = status.rsplit(" ", 1)[-1]
                    result = int(tail) if tail.isdigit() else 0
            except (asyncpg.PostgresError, asyncpg.InterfaceError) as e:
                gen.close()
                raise StatementFailed(fn, q, e) from e
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

    async def read(self, fn: Callable[P, Txn[T]], /, *args: P.args, **kwargs: P.kwargs) -> T:
        async with self._pool.acquire() as conn:
            return await _run(conn, fn, args, kwargs)

    async def write(self, fn: Callable[P, Txn[T]], /, *args: P.args, **kwargs: P.kwargs) -> T:
        for attempt in range(ATTEMPTS):
            try:
                async with self._pool.acquire() as conn, conn.transaction():
                    if not is_durable(fn):
                        await conn.execute("SET LOCAL synchronous_commit TO OFF")
                    return await _run(conn, fn, args, kwargs)
            except StatementFailed as e:
                if attempt == ATTEMPTS - 1 or not isinstance(e.__cause__, _RETRYABLE):
                    raise
                await asyncio.sleep(0.01 * (attempt + 1))
        raise AssertionError("unreachable")

    def version(self) -> int | None:
        return None

    async def close(self) -> None:
        await self._pool.close()
