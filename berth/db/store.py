"""The metadata port, written once for every database.

Each operation is a generator that yields `Q` statements and receives their results; a backend
runs it (synchronously on SQLite's writer thread or inline in the loop, awaiting on asyncpg), so
the SQL lives in one place. Statements use `?` placeholders; backends translate as needed.

Atomicity: SQLite runs every write under BEGIN IMMEDIATE (one writer at a time, across processes);
PostgreSQL runs READ COMMITTED, where a read-decide-write is a race unless the rows the decision
reads are locked. A statement says which lock it needs with `Q.lock` (the one seam between the
backends): PostgreSQL appends `FOR <lock>`, SQLite's writer lock already serialises and ignores it.

`Backend.read/write` are typed by the operation they run: `await db.read(q.tag_digest, repo_id, tag)`
checks the arguments against `tag_digest`'s parameters and has `tag_digest`'s result type.
"""

from __future__ import annotations

from collections.abc import Callable, Generator
from dataclasses import dataclass
from typing import Any, Literal, ParamSpec, Protocol, TypeVar

T = TypeVar("T")
P = ParamSpec("P")

How = Literal["one", "all", "exec"]  # the row or None | all rows | the number of rows changed
Lock = Literal["UPDATE", "NO KEY UPDATE", "SHARE", "KEY SHARE"]


@dataclass(frozen=True, slots=True)
class Q:
    sql: str
    params: tuple[Any, ...] = ()
    how: How = "exec"
    lock: Lock | None = None  # a SELECT's row lock on PostgreSQL (FOR <lock>); SQLite needs none
    postgres: str | None = None  # this text instead of `sql` on PostgreSQL (e.g. FOR UPDATE SKIP LOCKED)


Txn = Generator[Q, Any, T]
TxnFn = Callable[..., Txn[T]]
F = TypeVar("F", bound=Callable[..., Any])


def lease(fn: F) -> F:
    """Mark a write whose loss in a crash loses nothing acknowledged (a claim, a lease renewal): it commits
    without waiting for the disk (SQLite synchronous=NORMAL, PostgreSQL synchronous_commit off). It is
    still atomic, and the next ordinary write makes it durable with itself (both logs are sequential)."""
    fn.durable = False  # type: ignore[attr-defined]
    return fn


def is_durable(fn: Callable[..., Any]) -> bool:
    return getattr(fn, "durable", True)


class StatementFailed(Exception):
    """A statement of a metadata operation failed. Names the operation and the statement; the driver's
    own error is the __cause__."""

    def __init__(self, fn: Callable[..., Any], q: Q, cause: BaseException) -> None:
        self.operation = f"{fn.__module__}.{fn.__qualname__}"
        self.sql = q.sql
        super().__init__(f"{self.operation}: {type(cause).__name__}: {cause} (in: {q.sql[:300]})")


def ping() -> Txn[None]:
    """One round trip to the database (readiness)."""
    yield Q("SELECT 1", (), "one")


class MetadataUnavailable(ConnectionError):
    """The metadata database cannot be reached now (a restart, a failover, the network): the request may be
    retried shortly. A write that raises it may or may not have committed; writes are safe to repeat."""


class Backend(Protocol):
    async def read(self, fn: Callable[P, Txn[T]], /, *args: P.args, **kwargs: P.kwargs) -> T:
        """Run a read-only operation."""

    async def write(self, fn: Callable[P, Txn[T]], /, *args: P.args, **kwargs: P.kwargs) -> T:
        """Run an operation in one transaction; committed durably when this returns (unless the operation is
        a `lease`). An exception raised by the operation rolls the transaction back and propagates."""

    def version(self) -> int | None:
        """A number that changes whenever any writer (any process) commits; None if unknowable."""

    async def sync(self) -> None:
        """Make version() reflect every commit made (by any process) before this call: a request that
        answers from a cache calls it first, so a change a client saw acknowledged elsewhere is never hidden."""

    async def close(self) -> None: ...
