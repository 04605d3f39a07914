"""The metadata port, written once for every database.

Each operation is a generator that yields `Q` statements and receives their results; a backend
runs it (synchronously on SQLite's writer thread or inline in the loop, awaiting on asyncpg), so
the SQL lives in one place. Statements use `?` placeholders; backends translate as needed.
"""

from __future__ import annotations

from collections.abc import Callable, Generator
from dataclasses import dataclass
from typing import Any, Protocol, TypeVar

T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class Q:
    sql: str
    params: tuple[Any, ...] = ()
    how: str = "exec"  # one | all | exec (rowcount)
    postgres: str | None = None  # this text instead of `sql` on PostgreSQL (e.g. FOR UPDATE SKIP LOCKED)


Txn = Generator[Q, Any, T]
TxnFn = Callable[..., Txn[T]]


class Backend(Protocol):
    async def read(self, fn: TxnFn[T], *args: Any) -> T:
        """Run a read-only operation."""

    async def write(self, fn: TxnFn[T], *args: Any) -> T:
        """Run an operation in one transaction; committed durably when this returns."""

    def version(self) -> int | None:
        """A number that changes whenever any writer (any process) commits; None if unknowable."""

    async def close(self) -> None: ...
