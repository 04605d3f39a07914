"""Secrets Manager secrets, as Txn generators; each write is one statement."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from berth.db.store import Q, Txn

COLUMNS = "name, arn, description, kms_key_id, sealed, version_id, tags, created_at, updated_at, deleted_at"


@dataclass(frozen=True, slots=True)
class SecretRow:
    name: str
    arn: str
    description: str
    kms_key_id: str | None
    sealed: str
    version_id: str
    tags: str  # JSON [{"Key", "Value"}]
    created_at: float
    updated_at: float
    deleted_at: float | None


def _row(r: Any) -> SecretRow | None:
    return None if r is None else SecretRow(*r)


def create_secret(account: str, region: str, s: SecretRow) -> Txn[bool]:
    row = yield Q(f"INSERT INTO secrets (account_id, region, {COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) "
                  "ON CONFLICT (account_id, region, name) DO NOTHING RETURNING name",
                  (account, region, s.name, s.arn, s.description, s.kms_key_id, s.sealed, s.version_id, s.tags,
                   s.created_at, s.updated_at, s.deleted_at), "one")
    return row is not None


def secret_by_name(account: str, region: str, name: str) -> Txn[SecretRow | None]:
    row = yield Q(f"SELECT {COLUMNS} FROM secrets WHERE account_id = ? AND region = ? AND name = ?",
                  (account, region, name), "one")
    return _row(row)


def secret_by_arn(account: str, region: str, arn: str) -> Txn[SecretRow | None]:
    row = yield Q(f"SELECT {COLUMNS} FROM secrets WHERE account_id = ? AND region = ? AND arn = ?",
                  (account, region, arn), "one")
    return _row(row)


def put_value(account: str, region: str, name: str, sealed: str, version_id: str, now: float) -> Txn[SecretRow | None]:
    """A new current version of a live secret; None when there is none (or it is scheduled for deletion)."""
    row = yield Q(f"UPDATE secrets SET sealed = ?, version_id = ?, updated_at = ? WHERE account_id = ? AND region = ? "
                  f"AND name = ? AND deleted_at IS NULL RETURNING {COLUMNS}",
                  (sealed, version_id, now, account, region, name), "one")
    return _row(row)


def schedule_deletion(account: str, region: str, name: str, at: float) -> Txn[SecretRow | None]:
    row = yield Q(f"UPDATE secrets SET deleted_at = ? WHERE account_id = ? AND region = ? AND name = ? "
                  f"RETURNING {COLUMNS}", (at, account, region, name), "one")
    return _row(row)


def delete_secret(account: str, region: str, name: str) -> Txn[SecretRow | None]:
    row = yield Q(f"DELETE FROM secrets WHERE account_id = ? AND region = ? AND name = ? RETURNING {COLUMNS}",
                  (account, region, name), "one")
    return _row(row)


def purge_due(account: str, region: str, now: float) -> Txn[int]:
    """Secrets whose recovery window is over are gone for good."""
    n = yield Q("DELETE FROM secrets WHERE account_id = ? AND region = ? AND deleted_at IS NOT NULL "
                "AND deleted_at <= ?", (account, region, now))
    return int(n)


def list_secrets(account: str, region: str, after: str, limit: int, include_deleted: bool) -> Txn[list[SecretRow]]:
    live = "" if include_deleted else " AND deleted_at IS NULL"
    rows = yield Q(f"SELECT {COLUMNS} FROM secrets WHERE account_id = ? AND region = ? AND name > ?{live} "
                   "ORDER BY name LIMIT ?", (account, region, after, limit), "all")
    return [SecretRow(*r) for r in rows]
