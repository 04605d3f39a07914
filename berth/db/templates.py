"""Repository creation templates, as Txn generators. Each write is one statement (atomic on both backends):
create is INSERT ... ON CONFLICT DO NOTHING, update and delete use RETURNING."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from berth.db.iam import lock_account
from berth.db.store import Q, Txn

COLUMNS = ("prefix, description, applied_for, tag_mutability, tag_mutability_filters, encryption, resource_tags, "
           "repository_policy, lifecycle_policy, custom_role_arn, created_at, updated_at")
FIELDS = tuple(c.strip() for c in COLUMNS.split(","))


@dataclass(frozen=True, slots=True)
class TemplateRow:
    prefix: str
    description: str
    applied_for: str  # JSON text, decoded by berth/registry/templates.py
    tag_mutability: str
    tag_mutability_filters: str
    encryption: str
    resource_tags: str
    repository_policy: str | None
    lifecycle_policy: str | None
    custom_role_arn: str | None
    created_at: float
    updated_at: float


def _row(r: Any) -> TemplateRow | None:
    return None if r is None else TemplateRow(*r)


def create_template(account: str, region: str, t: TemplateRow, limit: int) -> Txn[str]:
    """"created", "exists" or "limit" (nothing written); counted under the account's row lock."""
    yield from lock_account(account)
    count = yield from count_templates(account, region)
    if count >= limit:
        return "limit"
    marks = ", ".join("?" * (len(FIELDS) + 2))
    row = yield Q(f"INSERT INTO repository_creation_templates (account_id, region, {COLUMNS}) VALUES ({marks}) "
                  "ON CONFLICT (account_id, region, prefix) DO NOTHING RETURNING prefix",
                  (account, region, *(getattr(t, f) for f in FIELDS)), "one")
    return "created" if row is not None else "exists"


def count_templates(account: str, region: str) -> Txn[int]:
    row = yield Q("SELECT COUNT(*) FROM repository_creation_templates WHERE account_id = ? AND region = ?",
                  (account, region), "one")
    return int(row[0])


def update_template(account: str, region: str, prefix: str, changes: dict[str, Any]) -> Txn[TemplateRow | None]:
    """Set the given columns (names from FIELDS); None when there is no such template."""
    assert changes and set(changes) <= set(FIELDS)
    sets = ", ".join(f"{k} = ?" for k in changes)
    row = yield Q(f"UPDATE repository_creation_templates SET {sets} WHERE account_id = ? AND region = ? "
                  f"AND prefix = ? RETURNING {COLUMNS}", (*changes.values(), account, region, prefix), "one")
    return _row(row)


def delete_template(account: str, region: str, prefix: str) -> Txn[TemplateRow | None]:
    row = yield Q(f"DELETE FROM repository_creation_templates WHERE account_id = ? AND region = ? AND prefix = ? "
                  f"RETURNING {COLUMNS}", (account, region, prefix), "one")
    return _row(row)


def list_templates(account: str, region: str, prefixes: Sequence[str] | None = None) -> Txn[list[TemplateRow]]:
    """All templates of a registry in prefix order, or those with these prefixes."""
    where, args = "", tuple[str, ...]()
    if prefixes is not None:
        if not prefixes:
            return []
        where = f" AND prefix IN ({', '.join('?' * len(prefixes))})"
        args = tuple(prefixes)
    rows = yield Q(f"SELECT {COLUMNS} FROM repository_creation_templates WHERE account_id = ? AND region = ?{where} "
                   "ORDER BY prefix", (account, region, *args), "all")
    return [TemplateRow(*r) for r in rows]
