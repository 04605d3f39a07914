"""SQLite backend (WAL): reads inline in the event loop, writes serialised on one thread."""

from __future__ import annotations

import asyncio
import sqlite3
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from berth.db.store import P, Q, StatementFailed, T, Txn, is_durable


def _connect(path: Path) -> sqlite3.Connection:
    conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False, timeout=30)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA synchronous=FULL")  # a commit is on disk: 201 means durable
    conn.execute("PRAGMA foreign_keys=ON")
    conn.execute("PRAGMA busy_timeout=30000")
    return conn


def run_sync(conn: sqlite3.Connection, fn: Callable[..., Txn[T]], args: tuple[Any, ...],
             kwargs: dict[str, Any]) -> T:
    # Q.lock is ignored: every write runs under BEGIN IMMEDIATE, one writer at a time.
    gen = fn(*args, **kwargs)
    try:
        q: Q = next(gen)
        while True:
            try:
                cur = conn.execute(q.sql, q.params)
                if q.how == "one":
                    result: Any = cur.fetchone()
                elif q.how == "all":
                    result = cur.fetchall()
                else:
                    result = cur.rowcount
            except sqlite3.Error as e:
                gen.close()
                raise StatementFailed(fn, q, e) from e
            q = gen.send(result)
    except StopIteration as stop:
        return stop.value  # type: ignore[no-any-return]


class SqliteBackend:
    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self._reader = _connect(self.path)
        self._reader.execute("PRAGMA query_only=1")
        self._writer_pool = ThreadPoolExecutor(1, thread_name_prefix="sqlite-writer")
        self._writer = self._writer_pool.submit(_connect, self.path).result()
        self._seen: tuple[object, int, float] | None = None  # (task, data_version, when) of the last check

    async def read(self, fn: Callable[P, Txn[T]], /, *args: P.args, **kwargs: P.kwargs) -> T:
        # Short indexed reads: cheaper inline than any thread hop (see DESIGN.md).
        return run_sync(self._reader, fn, args, kwargs)

    def _write_sync(self, fn: Callable[..., Txn[T]], args: tuple[Any, ...], kwargs: dict[str, Any]) -> T:
        conn = self._writer
        durable = is_durable(fn)
        if not durable:  # WAL + NORMAL: the commit is not fsynced; the next FULL commit's fsync covers it
            conn.execute("PRAGMA synchronous=NORMAL")
        try:
            conn.execute("BEGIN IMMEDIATE")
            try:
                result = run_sync(conn, fn, args, kwargs)
            except BaseException:
                conn.execute("ROLLBACK")
                raise
            conn.execute("COMMIT")
            return result
        finally:
            if not durable:
                conn.execute("PRAGMA synchronous=FULL")

    async def write(self, fn: Callable[P, Txn[T]], /, *args: P.args, **kwargs: P.kwargs) -> T:
        loop = asyncio.get_running_loop()
        try:
            return await loop.run_in_executor(self._writer_pool, self._write_sync, fn, args, kwargs)
        finally:
            self._seen = None

    async def sync(self) -> None:
        self._seen = None  # the next version() reads data_version: every commit of any process so far

    def version(self) -> int | None:
        # One check per request (asyncio task) is enough: the caches it guards are consulted several
        # times per request, and this process's own writes reset it. Long-lived tasks re-check often.
        try:
            task: object = asyncio.current_task()
        except RuntimeError:
            task = None
        now = time.monotonic()
        seen = self._seen
        if seen is not None and task is not None and seen[0] is task and now - seen[2] < 0.005:
            return seen[1]
        v = int(self._reader.execute("PRAGMA data_version").fetchone()[0])
        self._seen = (task, v, now)
        return v

    async def close(self) -> None:
        self._reader.close()
        self._writer_pool.submit(self._writer.close).result()
        self._writer_pool.shutdown()
