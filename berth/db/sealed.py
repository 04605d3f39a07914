"""Sealed columns (berth.keys.SEALED): read every value of one, and write values back under row locks.

The table and column names come from berth.keys.SEALED, never from a request.
"""

from __future__ import annotations

from collections.abc import Callable

from berth.db.store import Q, Txn


def values(table: str, id_column: str, value_column: str) -> Txn[list[tuple[str, str]]]:
    rows = yield Q(f"SELECT {id_column}, {value_column} FROM {table} ORDER BY {id_column}", (), "all")
    return [(str(r[0]), str(r[1])) for r in rows]


def rewrite(table: str, id_column: str, value_column: str, change: Callable[[str, str], str | None]) -> Txn[int]:
    """Lock every row and write `change(id, value)` where it returns a new value; the number changed.
    One transaction: a value is never half rewritten, and a concurrent writer waits."""
    rows = yield Q(f"SELECT {id_column}, {value_column} FROM {table} ORDER BY {id_column}", (), "all",
                   lock="UPDATE")
    n = 0
    for row_id, value in rows:
        new = change(str(row_id), str(value))
        if new is not None and new != value:
            yield Q(f"UPDATE {table} SET {value_column} = ? WHERE {id_column} = ?", (new, row_id))
            n += 1
    return n
