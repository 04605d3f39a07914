"""SQLite's group commit (berth/db/sqlite.py): writes queued while a commit runs share the next
transaction, each in its own savepoint: a failing write undoes only itself, and every caller gets its
own result or error, only once the transaction holding its write has committed."""

from __future__ import annotations

import asyncio
import sqlite3
from pathlib import Path

import pytest

from berth.db.sqlite import SqliteBackend
from berth.db.store import Q, Txn, lease


class Refused(Exception):
    pass


def _insert(n: int, fail: bool = False) -> Txn[int]:
    yield Q("INSERT INTO t (n) VALUES (?)", (n,))
    if fail:  # after its statement: the savepoint must undo it
        raise Refused(n)
    return n


@lease
def _insert_lease(n: int) -> Txn[int]:
    yield Q("INSERT INTO t (n) VALUES (?)", (n,))
    return n


def _ends_the_transaction(n: int) -> Txn[int]:
    yield Q("INSERT INTO t (n) VALUES (?)", (n,))
    yield Q("ROLLBACK")  # as SQLITE_FULL or an I/O error would: everything before it in the batch is undone
    raise Refused(n)


def _all() -> Txn[list[int]]:
    rows = yield Q("SELECT n FROM t ORDER BY n", (), "all")
    return [r[0] for r in rows]


@pytest.fixture
def path(tmp_path: Path) -> Path:
    p = tmp_path / "g.db"
    with sqlite3.connect(p) as conn:
        conn.execute("CREATE TABLE t (n INTEGER PRIMARY KEY)")
    return p


def _commits(backend: SqliteBackend) -> list[str]:
    seen: list[str] = []
    backend._writer_pool.submit(backend._writer.set_trace_callback,
                                lambda sql: seen.append(sql) if sql == "COMMIT" else None).result()
    return seen


def test_concurrent_writes_share_commits_and_failures_undo_only_themselves(path: Path) -> None:
    async def main() -> tuple[list[object], list[int], int]:
        db = SqliteBackend(path)
        commits = _commits(db)
        try:
            results = await asyncio.gather(*(db.write(_insert, i, fail=i % 3 == 0) for i in range(1, 201)),
                                           return_exceptions=True)
            return results, await db.read(_all), len(commits)
        finally:
            await db.close()

    results, stored, commits = asyncio.run(main())
    for i, r in enumerate(results, 1):
        if i % 3 == 0:
            assert isinstance(r, Refused) and r.args == (i,)
        else:
            assert r == i
    assert stored == [i for i in range(1, 201) if i % 3]
    assert commits < 100, commits  # 200 writes queued at once: far fewer transactions than writes


def test_a_write_that_ends_the_transaction_fails_alone_and_the_rest_are_written(path: Path) -> None:
    async def main() -> tuple[list[object], list[int]]:
        db = SqliteBackend(path)
        try:
            writes = [db.write(_insert, 1), db.write(_insert_lease, 2), db.write(_ends_the_transaction, 3),
                      db.write(_insert, 4), db.write(_insert, 5, fail=True), db.write(_insert, 6)]
            results = await asyncio.gather(*writes, return_exceptions=True)
            return results, await db.read(_all)
        finally:
            await db.close()

    results, stored = asyncio.run(main())
    assert results[:2] == [1, 2] and results[3] == 4 and results[5] == 6
    assert isinstance(results[2], Refused) and isinstance(results[4], Refused)
    assert stored == [1, 2, 4, 6]


def test_a_batch_of_leases_only_is_not_fsynced_and_the_next_write_is_durable(path: Path) -> None:
    async def main() -> tuple[int, int]:
        db = SqliteBackend(path)
        levels: list[int] = []
        try:
            await asyncio.gather(*(db.write(_insert_lease, i) for i in range(10)))
            levels.append(db._writer_pool.submit(
                lambda: db._writer.execute("PRAGMA synchronous").fetchone()[0]).result())
            await db.write(_insert, 100)
            return levels[0], len(await db.read(_all))
        finally:
            await db.close()

    level, count = asyncio.run(main())
    assert level == 2 and count == 11  # back to FULL after the lease batch


def test_a_cancelled_caller_leaves_its_write_standing(path: Path) -> None:
    async def main() -> list[int]:
        db = SqliteBackend(path)
        try:
            task = asyncio.ensure_future(db.write(_insert, 7))
            await asyncio.sleep(0)
            task.cancel()
            await db.write(_insert, 8)  # queued behind it: once this has committed, so has 7
            return await db.read(_all)
        finally:
            await db.close()

    assert asyncio.run(main()) == [7, 8]


def test_a_batch_that_cannot_even_roll_back_fails_its_writes_and_later_writes_go_on(path: Path) -> None:
    class Broken(sqlite3.Connection):  # both rollbacks of the first failure fail too (as an I/O error could)
        breaks = 2

        def execute(self, sql: str, *args: object) -> sqlite3.Cursor:  # type: ignore[override]
            if sql.startswith("ROLLBACK") and self.breaks:
                self.breaks -= 1
                raise sqlite3.OperationalError("disk I/O error")
            return super().execute(sql, *args)  # type: ignore[arg-type]

    async def main() -> tuple[object, int, list[int]]:
        db = SqliteBackend(path)
        broken = db._writer_pool.submit(sqlite3.connect, path, isolation_level=None, check_same_thread=False,
                                        factory=Broken).result()
        db._writer.close()
        db._writer = broken
        try:
            try:
                await db.write(_ends_the_transaction_badly, 1)
            except Exception as e:  # noqa: BLE001
                first: object = e
            later = await db.write(_insert, 2)
            return first, later, await db.read(_all)
        finally:
            await db.close()

    first, later, stored = asyncio.run(main())
    assert isinstance(first, sqlite3.OperationalError) and "disk I/O" in str(first)
    assert later == 2 and stored == [2]  # the next batch rolled the stuck transaction back first


def _ends_the_transaction_badly(n: int) -> Txn[int]:
    yield Q("INSERT INTO t (n) VALUES (?)", (n,))
    yield Q("SELECT * FROM no_such_table", (), "all")  # fails inside the transaction; the ROLLBACK then fails
    return n
