"""Pull-through cache rules, as Txn generators; each write is one statement (atomic on both backends)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from berth.db import prefixed
from berth.db.store import Q, Txn

TABLE = "pull_through_rules"
COLUMNS = ("prefix, upstream_url, upstream_registry, upstream_prefix, credential_arn, custom_role_arn, "
           "created_at, updated_at")


@dataclass(frozen=True, slots=True)
class RuleRow:
    prefix: str
    upstream_url: str
    upstream_registry: str | None
    upstream_prefix: str
    credential_arn: str | None
    custom_role_arn: str | None
    created_at: float
    updated_at: float


def _row(r: Any) -> RuleRow | None:
    return None if r is None else RuleRow(*r)


def create_rule(account: str, region: str, r: RuleRow, limit: int) -> Txn[str]:
    """"created", "exists" or "limit" (nothing written); counted under the account's row lock."""
    return (yield from prefixed.create(TABLE, COLUMNS, account, region, (
        r.prefix, r.upstream_url, r.upstream_registry, r.upstream_prefix, r.credential_arn, r.custom_role_arn,
        r.created_at, r.updated_at), limit))


def update_rule(account: str, region: str, prefix: str, credential_arn: str | None, custom_role_arn: str | None,
                now: float) -> Txn[RuleRow | None]:
    row = yield Q(f"UPDATE pull_through_rules SET credential_arn = ?, custom_role_arn = ?, updated_at = ? "
                  f"WHERE account_id = ? AND region = ? AND prefix = ? RETURNING {COLUMNS}",
                  (credential_arn, custom_role_arn, now, account, region, prefix), "one")
    return _row(row)


def delete_rule(account: str, region: str, prefix: str) -> Txn[RuleRow | None]:
    return _row((yield from prefixed.delete(TABLE, COLUMNS, account, region, prefix)))


def list_rules(account: str, region: str, prefixes: Sequence[str] | None = None) -> Txn[list[RuleRow]]:
    return [RuleRow(*r) for r in (yield from prefixed.select(TABLE, COLUMNS, account, region, prefixes))]


def all_rules() -> Txn[list[tuple[str, str, RuleRow]]]:
    """Every rule of the deployment, with its account and region (the pull path's cache)."""
    rows = yield Q(f"SELECT account_id, region, {COLUMNS} FROM pull_through_rules", (), "all")
    return [(r[0], r[1], RuleRow(*r[2:])) for r in rows]


def tag_checked_at(repo_id: int, tag: str) -> Txn[float | None]:
    row = yield Q("SELECT checked_at FROM pull_through_checks WHERE repository_id = ? AND tag = ?",
                  (repo_id, tag), "one")
    return None if row is None else float(row[0])


def mark_tag_checked(repo_id: int, tag: str, at: float) -> Txn[None]:
    yield Q("INSERT INTO pull_through_checks (repository_id, tag, checked_at) VALUES (?, ?, ?) "
            "ON CONFLICT (repository_id, tag) DO UPDATE SET checked_at = excluded.checked_at", (repo_id, tag, at))
