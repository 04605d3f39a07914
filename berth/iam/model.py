"""Identity value objects the IdentityService hands to the edges (never the store's rows)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from berth.db.iam import KeyRow, UserRow


@dataclass(frozen=True, slots=True)
class User:
    account_id: str
    name: str
    user_id: str
    path: str
    created_at: float

    @classmethod
    def from_row(cls, row: UserRow) -> User:
        return cls(row.account_id, row.name, row.user_id, row.path, row.created_at)


@dataclass(frozen=True, slots=True)
class AccessKey:
    id: str
    account_id: str
    user_name: str
    secret: str  # SigV4 verification needs it; the IAM face shows it only from CreateAccessKey
    status: str
    created_at: float

    @classmethod
    def from_row(cls, row: KeyRow) -> AccessKey:
        return cls(row.id, row.account_id, row.user_name, row.secret, row.status, row.created_at)
