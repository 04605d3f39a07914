"""The shape the registry-wide stores keyed by prefix share (pull-through cache rules, repository creation
templates): rows keyed by (account, region, prefix), created under a per-registry limit, deleted and listed
by prefix. `columns` names every column but account_id and region, prefix first."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from berth.db.iam import lock_account
from berth.db.store import Q, Txn


def create(table: str, columns: str, account: str, region: str, values: Sequence[Any], limit: int) -> Txn[str]:
    """"created", "exists" or "limit" (nothing written); counted under the account's row lock."""
    yield from lock_account(account)
    if (yield from count(table, account, region)) >= limit:
        return "limit"
    marks = ", ".join("?" * (len(values) + 2))
    row = yield Q(f"INSERT INTO {table} (account_id, region, {columns}) VALUES ({marks}) "
                  "ON CONFLICT (account_id, region, prefix) DO NOTHING RETURNING prefix",
                  (account, region, *values), "one")
    return "created" if row is not None else "exists"


def count(table: str, account: str, region: str) -> Txn[int]:
    row = yield Q(f"SELECT COUNT(*) FROM {table} WHERE account_id = ? AND region = ?", (account, region), "one")
    return int(row[0])


def delete(table: str, columns: str, account: str, region: str, prefix: str) -> Txn[Any]:
    """The row deleted (its `columns`), or None."""
    row = yield Q(f"DELETE FROM {table} WHERE account_id = ? AND region = ? AND prefix = ? RETURNING {columns}",
                  (account, region, prefix), "one")
    return row


def select(table: str, columns: str, account: str, region: str, prefixes: Sequence[str] | None) -> Txn[list[Any]]:
    """A registry's rows in prefix order, or those with these prefixes."""
    where, args = "", tuple[str, ...]()
    if prefixes is not None:
        if not prefixes:
            return []
        where = f" AND prefix IN ({', '.join('?' * len(prefixes))})"
        args = tuple(prefixes)
    rows = yield Q(f"SELECT {columns} FROM {table} WHERE account_id = ? AND region = ?{where} ORDER BY prefix",
                   (account, region, *args), "all")
    return list(rows)
