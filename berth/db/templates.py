"""Repository creation templates, as Txn generators. Each write is one statement (atomic on both backends):
create is INSERT ... ON CONFLICT DO NOTHING, update and delete use RETURNING."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from berth.db import prefixed
from berth.db.store import Q, Txn

TABLE = "repository_creation_templates"
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
    return (yield from prefixed.create(TABLE, COLUMNS, account, region, [getattr(t, f) for f in FIELDS], limit))


def update_template(account: str, region: str, prefix: str, changes: dict[str, Any]) -> Txn[TemplateRow | None]:
    """Set the given columns (names from FIELDS); None when there is no such template."""
    assert changes and set(changes) <= set(FIELDS)
    sets = ", ".join(f"{k} = ?" for k in changes)
    row = yield Q(f"UPDATE {TABLE} SET {sets} WHERE account_id = ? AND region = ? "
                  f"AND prefix = ? RETURNING {COLUMNS}", (*changes.values(), account, region, prefix), "one")
    return _row(row)


def delete_template(account: str, region: str, prefix: str) -> Txn[TemplateRow | None]:
    return _row((yield from prefixed.delete(TABLE, COLUMNS, account, region, prefix)))


def list_templates(account: str, region: str, prefixes: Sequence[str] | None = None) -> Txn[list[TemplateRow]]:
    """All templates of a registry in prefix order, or those with these prefixes."""
    return [TemplateRow(*r) for r in (yield from prefixed.select(TABLE, COLUMNS, account, region, prefixes))]
