"""PostgreSQL backend on asyncpg: the same operations as SQLite, `?` rewritten to `$n`, `Q.lock` as FOR <lock>.

Transactions are READ COMMITTED; operations that decide on what they read lock those rows (Q.lock).
A transaction that fails on a serialisation failure, a deadlock or a unique violation (two writers
inserting one key) is run again from the start, up to five times.

Several nodes share one database. Every write that changes a row sends `NOTIFY berth_changes` in its
own transaction (PostgreSQL delivers it on commit, to every listener); each node keeps one listening
connection and counts what it hears, and that count is `version()`: the in-process caches of every
node are dropped when any node commits. While the listening connection is down, `version()` is None
(caches off) until it is back.

A notification travels on its own: node B could answer from its cache before it hears of a commit on A
that the client already saw acknowledged. `sync()` closes that window: one round trip on the listening
connection, and PostgreSQL sends a session every notification already committed before it answers a
query. Concurrent callers share one round trip (each waits for one that started after it called).

When the server restarts or fails over, or is short of memory or connections (SQLSTATE class 53 but
disk_full), a statement fails with MetadataUnavailable (the faces answer 503, retryable). A full data
disk (53100 disk_full) stays the statement's own failure, rolled back, and the faces answer it as
insufficient storage (berth.registry.errors); a full WAL disk PANICs the server: that is the server gone
(tests/integration/test_pg_full_disk.py). A read that met a pooled connection the server had closed is
run once more on a fresh one; the pool reconnects by itself.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from functools import lru_cache
from typing import Any

import asyncpg

from berth.db.store import MetadataUnavailable, P, Q, StatementFailed, T, Txn, is_durable

_RETRYABLE = (asyncpg.SerializationError, asyncpg.DeadlockDetectedError, asyncpg.UniqueViolationError)
# the server is gone or going: restart, failover, crash, network, or it is not accepting connections yet
_GONE = (OSError, asyncio.TimeoutError, asyncpg.PostgresConnectionError, asyncpg.CannotConnectNowError,
         asyncpg.AdminShutdownError, asyncpg.CrashShutdownError,
         asyncpg.InternalClientError)  # a connection left mid-protocol by a lost server ("another operation")
_DISK_FULL = "53100"
ATTEMPTS = 5
CHANNEL = "berth_changes"
PING_EVERY = 5.0  # the listening connection is checked this often (a half-open socket is not noticed otherwise)

log = logging.getLogger("berth.db")


@lru_cache(maxsize=1024)
def _numbered(sql: str, lock: str | None) -> str:
    parts = sql.split("?")
    out = [parts[0]]
    for i, part in enumerate(parts[1:], start=1):
        out.append(f"${i}{part}")
    if lock is not None:
        out.append(f" FOR {lock}")
    return "".join(out)


def _gone(e: BaseException) -> bool:
    cause = e.__cause__ if isinstance(e, StatementFailed) else e
    if isinstance(cause, asyncpg.InterfaceError):  # asyncpg's own: a connection it knows is closed
        return "closed" in str(cause) or "closing" in str(cause)
    state = getattr(cause, "sqlstate", None) or ""
    if state.startswith("53") and state != _DISK_FULL:  # out of memory or connections: the server, for now
        return True
    return isinstance(cause, _GONE)


@lru_cache(maxsize=1024)
def _kind(sql: str) -> str:
    head = sql.lstrip()[:6].upper()
    return "read" if head == "SELECT" else "returning" if "RETURNING" in sql.upper() else "write"


def _changes(q: Q, result: Any) -> bool:
    """Whether a statement may have changed a row: a count above 0, or a row a RETURNING gave back
    (INSERT … ON CONFLICT DO NOTHING RETURNING gives none when it inserted nothing); any other write counts."""
    if q.how == "exec":
        return bool(result)
    kind = _kind(q.postgres or q.sql)
    return kind == "write" or kind == "returning" and bool(result)


async def _run(conn: asyncpg.Connection, fn: Callable[..., Txn[T]], args: tuple[Any, ...],
               kwargs: dict[str, Any], changed: list[bool] | None = None) -> T:
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
            except (asyncpg.PostgresError, asyncpg.InterfaceError, asyncpg.InternalClientError, OSError) as e:
                gen.close()
                raise StatementFailed(fn, q, e) from e
            if changed is not None and not changed[0] and _changes(q, result):
                changed[0] = True
            q = gen.send(result)
    except StopIteration as stop:
        return stop.value  # type: ignore[no-any-return]


def _unavailable(e: BaseException) -> MetadataUnavailable:
    cause = e.__cause__ if isinstance(e, StatementFailed) and e.__cause__ is not None else e
    return MetadataUnavailable(f"metadata database unavailable: {type(cause).__name__}: {cause}")


async def _keep_session(conn: asyncpg.Connection) -> None:
    """Nothing to reset on release: pooled sessions hold no advisory lock, LISTEN, cursor or SET (only
    SET LOCAL). asyncpg's default reset is a round trip per release (measured: 19 per pushed image); an
    open transaction is still rolled back by asyncpg itself before this is called."""


def _discard(conn: asyncpg.Connection) -> None:
    try:
        conn.terminate()
    except asyncpg.InterfaceError:  # the pool saw it close and has it back already
        pass


class PostgresBackend:
    def __init__(self, pool: asyncpg.Pool, url: str = "", connect_timeout: float = 5.0) -> None:
        self._pool = pool
        self._url = url
        self._timeout = connect_timeout
        self._epoch = 0  # changes heard of (and made here); version() while listening
        self._listening = False
        self._listener: asyncio.Task[None] | None = None
        self._up = asyncio.Event()
        self._conn: asyncpg.Connection | None = None  # the listening connection
        self._next: asyncio.Future[None] | None = None  # the round trip callers wait for, not yet sent
        self._pinger: asyncio.Task[None] | None = None

    @classmethod
    async def connect(cls, url: str, min_size: int = 1, max_size: int = 16,
                      connect_timeout: float = 5.0) -> PostgresBackend:
        pool = await asyncpg.create_pool(url, min_size=min_size, max_size=max_size, timeout=connect_timeout,
                                         reset=_keep_session)
        backend = cls(pool, url, connect_timeout)
        backend._listener = asyncio.get_running_loop().create_task(backend._listen())
        try:  # caches are on from the first request when the listener is up at once (it is, normally)
            await asyncio.wait_for(backend._up.wait(), connect_timeout)
        except TimeoutError:
            log.warning("not listening for changes yet: caches stay off until it is")
        return backend

    # change notifications

    def _heard(self, *_: object) -> None:
        self._epoch += 1

    async def _listen(self) -> None:
        delay = 0.1
        while True:
            conn: asyncpg.Connection | None = None
            try:
                conn = await asyncpg.connect(self._url, timeout=self._timeout)
                lost = asyncio.Event()
                conn.add_termination_listener(lambda _c, lost=lost: lost.set())
                await conn.add_listener(CHANNEL, self._heard)
                self._conn = conn
                self._epoch += 1  # whatever changed while nobody listened
                self._listening = True
                self._up.set()
                delay = 0.1
                while not lost.is_set():
                    try:
                        await asyncio.wait_for(lost.wait(), PING_EVERY)
                    except TimeoutError:
                        await asyncio.wait_for(self._round_trip(), self._timeout)
            except asyncio.CancelledError:
                raise
            except Exception as e:  # noqa: BLE001 - any failure: caches off, connect again
                if self._listening or delay == 0.1:
                    log.warning("change notifications lost (%s: %s); caches off until reconnected",
                                type(e).__name__, e)
            finally:
                self._listening = False
                self._conn = None
                if conn is not None:
                    conn.terminate()
            await asyncio.sleep(delay)
            delay = min(delay * 2, 2.0)

    def _round_trip(self) -> asyncio.Future[None]:
        """A future for a round trip on the listening connection that starts after this call."""
        if self._next is None:
            self._next = asyncio.get_running_loop().create_future()
            if self._pinger is None or self._pinger.done():
                self._pinger = asyncio.get_running_loop().create_task(self._ping_loop())
        return self._next

    async def _ping_loop(self) -> None:
        while self._next is not None:
            fut, self._next = self._next, None
            conn = self._conn
            try:
                if conn is None:
                    raise ConnectionError("not listening")
                await conn.execute("SELECT 1", timeout=self._timeout)
            except Exception as e:  # noqa: BLE001 - the waiters see it; the listener reconnects
                if not fut.done():
                    fut.set_exception(e)
                    fut.exception()  # retrieved: a waiter may have gone
                continue
            if not fut.done():
                fut.set_result(None)  # after the notifications' callbacks: asyncpg queued those first

    async def sync(self) -> None:
        """Hear every change committed before this call (see the module's doc). Never raises: caches go off
        instead."""
        if not self._listening:
            return
        try:
            await asyncio.wait_for(asyncio.shield(self._round_trip()), self._timeout)
        except Exception as e:  # noqa: BLE001 - cannot tell what changed: caches off until the listener is back
            log.warning("change notifications unconfirmed (%s); caches off until reconnected", e)
            self._listening = False
            if self._conn is not None:
                self._conn.terminate()
            return

    # the port

    async def _acquire(self) -> asyncpg.Connection:
        try:
            return await self._pool.acquire()
        except Exception as e:
            if _gone(e):
                raise _unavailable(e) from e
            raise

    async def _release(self, conn: asyncpg.Connection) -> None:
        try:
            await self._pool.release(conn)
        except Exception as e:  # noqa: BLE001 - asyncpg has terminated it; the pool opens another
            log.debug("releasing a broken connection: %s", e)

    async def read(self, fn: Callable[P, Txn[T]], /, *args: P.args, **kwargs: P.kwargs) -> T:
        for attempt in (0, 1):
            conn = await self._acquire()
            try:
                return await _run(conn, fn, args, kwargs)
            except StatementFailed as e:
                if not _gone(e):
                    raise
                _discard(conn)  # never back into the pool
                if attempt:  # a second connection failed too: the server is away
                    raise _unavailable(e) from e
                # a pooled connection the server closed (it restarted): once more, on a fresh one
            finally:
                await self._release(conn)
        raise AssertionError("unreachable")

    async def write(self, fn: Callable[P, Txn[T]], /, *args: P.args, **kwargs: P.kwargs) -> T:
        notify = is_durable(fn)  # leases (claims, renewals) touch nothing any cache holds
        for attempt in range(ATTEMPTS):
            conn = await self._acquire()
            changed = [False]
            try:
                async with conn.transaction():
                    if not is_durable(fn):
                        await conn.execute("SET LOCAL synchronous_commit TO OFF")
                    result = await _run(conn, fn, args, kwargs, changed)
                    if notify and changed[0]:
                        await conn.execute(f"NOTIFY {CHANNEL}")  # delivered on commit, to every node
                return result
            except StatementFailed as e:
                if _gone(e):
                    _discard(conn)
                    raise _unavailable(e) from e
                if attempt == ATTEMPTS - 1 or not isinstance(e.__cause__, _RETRYABLE):
                    raise
            except (asyncpg.PostgresError, asyncpg.InterfaceError, asyncpg.InternalClientError,
                    OSError) as e:  # BEGIN or COMMIT
                if _gone(e):
                    _discard(conn)
                    raise _unavailable(e) from e
                raise
            finally:
                if changed[0]:  # this node's own caches, at once (also when the commit's fate is unknown)
                    self._epoch += 1
                await self._release(conn)
            await asyncio.sleep(0.01 * (attempt + 1))
        raise AssertionError("unreachable")

    def version(self) -> int | None:
        return self._epoch if self._listening else None

    async def close(self) -> None:
        if self._listener is not None:
            self._listener.cancel()
            try:
                await self._listener
            except asyncio.CancelledError:
                pass
        await self._pool.close()


@asynccontextmanager
async def advisory_lock(url: str, key: int, timeout: float = 5.0) -> AsyncIterator[None]:
    """Hold a session-level advisory lock on a connection of its own (e.g. nodes bootstrapping at once)."""
    conn = await asyncpg.connect(url, timeout=timeout)
    try:
        await conn.execute("SELECT pg_advisory_lock($1)", key)
        yield
    finally:
        await conn.close()  # ends the session: the lock is released
