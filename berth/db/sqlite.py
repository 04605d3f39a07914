"""SQLite backend (WAL): reads inline in the event loop, writes serialised on one thread, group-committed."""

from __future__ import annotations

import asyncio
import sqlite3
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
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


BATCH = 64  # writes per group commit at most: a long queue still sees commits every few milliseconds


@dataclass
class _Write:
    fn: Callable[..., Txn[Any]]
    args: tuple[Any, ...]
    kwargs: dict[str, Any]
    loop: asyncio.AbstractEventLoop
    done: asyncio.Future[Any]


def _settle(outcomes: list[tuple[asyncio.Future[Any], tuple[bool, Any]]]) -> None:
    for done, (ok, value) in outcomes:
        if done.cancelled():  # its caller went away; the write stands (as an executor job's would)
            continue
        if ok:
            done.set_result(value)
        else:
            done.set_exception(value)


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
        self._lock = threading.Lock()
        self._queue: list[_Write] = []
        self._draining = False
        self._seen: tuple[object, int, float] | None = None  # (task, data_version, when) of the last check

    async def read(self, fn: Callable[P, Txn[T]], /, *args: P.args, **kwargs: P.kwargs) -> T:
        # Short indexed reads: cheaper inline than any thread hop (see DESIGN.md).
        return run_sync(self._reader, fn, args, kwargs)

    async def write(self, fn: Callable[P, Txn[T]], /, *args: P.args, **kwargs: P.kwargs) -> T:
        loop = asyncio.get_running_loop()
        done: asyncio.Future[T] = loop.create_future()
        with self._lock:
            self._queue.append(_Write(fn, args, kwargs, loop, done))
            start = not self._draining
            self._draining = True
        if start:
            self._writer_pool.submit(self._drain)
        try:
            return await done
        finally:
            self._seen = None

    # Group commit: the writes queued while a commit waits for the disk go in the next transaction
    # together, each in its own savepoint (its failure undoes only it), with one fsync for all of them.

    def _drain(self) -> None:
        while True:
            with self._lock:
                batch, self._queue = self._queue[:BATCH], self._queue[BATCH:]
                if not batch:
                    self._draining = False
                    return
            try:
                outcomes = self._run_batch(batch)
            except BaseException as e:  # noqa: BLE001 - a failed ROLLBACK or PRAGMA: these writes fail, the next go on
                outcomes = [(False, e)] * len(batch)
            loops = {w.loop for w in batch}
            for loop in loops:
                mine = [(w.done, o) for w, o in zip(batch, outcomes, strict=True) if w.loop is loop]
                try:
                    loop.call_soon_threadsafe(_settle, mine)
                except RuntimeError:  # that loop has closed: nobody waits for these any more
                    pass

    def _run_batch(self, batch: list[_Write]) -> list[tuple[bool, Any]]:
        """(True, result) or (False, exception) per write, once the transaction holding them committed."""
        conn = self._writer
        outcomes: list[tuple[bool, Any]] = [(False, None)] * len(batch)  # every one is set below
        todo = list(range(len(batch)))
        while todo:
            durable = any(is_durable(batch[i].fn) for i in todo)
            ran: list[int] = []
            try:
                if conn.in_transaction:  # a previous batch's rollback failed: end that transaction first
                    conn.execute("ROLLBACK")
                if not durable:  # WAL + NORMAL: not fsynced; the next FULL commit's fsync covers it
                    conn.execute("PRAGMA synchronous=NORMAL")
                conn.execute("BEGIN IMMEDIATE")
                for n, i in enumerate(todo):
                    w = batch[i]
                    conn.execute("SAVEPOINT w")
                    try:
                        outcomes[i] = (True, run_sync(conn, w.fn, w.args, w.kwargs))
                    except BaseException as e:
                        outcomes[i] = (False, e)
                        if not conn.in_transaction:  # the error ended the transaction: what ran is undone
                            todo = ran + todo[n + 1:]
                            break
                        conn.execute("ROLLBACK TO w")
                    conn.execute("RELEASE w")
                    ran.append(i)
                else:
                    conn.execute("COMMIT")
                    todo = []
            except BaseException as e:  # BEGIN or COMMIT failed: none of them is written
                if conn.in_transaction:
                    conn.execute("ROLLBACK")
                for i in todo:
                    outcomes[i] = (False, e)
                todo = []
            finally:
                if not durable:
                    conn.execute("PRAGMA synchronous=FULL")
        return outcomes

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
