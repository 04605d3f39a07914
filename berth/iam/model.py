"""Identity value objects the IdentityService hands to the edges (never the store's rows)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from berth.db.iam import KeyRow, UserRow
    from berth.db.iam_entities import GroupRow, OidcProviderRow, PolicyRow, RoleRow, VersionRow


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


@dataclass(frozen=True, slots=True)
class Group:
    account_id: str
    name: str
    group_id: str
    path: str
    created_at: float

    @classmethod
    def from_row(cls, row: GroupRow) -> Group:
        return cls(row.account_id, row.name, row.group_id, row.path, row.created_at)


@dataclass(frozen=True, slots=True)
class Role:
    account_id: str
    name: str
    role_id: str
    path: str
    trust_policy: str
    description: str
    max_session_duration: int
    created_at: float

    @classmethod
    def from_row(cls, row: RoleRow) -> Role:
        return cls(row.account_id, row.name, row.role_id, row.path, row.trust_policy, row.description,
                   row.max_session_duration, row.created_at)


@dataclass(frozen=True, slots=True)
class ManagedPolicy:
    arn: str
    account_id: str  # "aws" for an AWS managed policy
    name: str
    path: str
    policy_id: str
    description: str
    default_version: str
    next_version: int
    created_at: float
    updated_at: float

    @classmethod
    def from_row(cls, row: PolicyRow) -> ManagedPolicy:
        return cls(row.arn, row.account_id, row.name, row.path, row.policy_id, row.description, row.default_version,
                   row.next_version, row.created_at, row.updated_at)


@dataclass(frozen=True, slots=True)
class PolicyVersion:
    policy_arn: str
    version_id: str
    document: str
    created_at: float

    @classmethod
    def from_row(cls, row: VersionRow) -> PolicyVersion:
        return cls(row.policy_arn, row.version_id, row.document, row.created_at)


@dataclass(frozen=True, slots=True)
class OidcProvider:
    account_id: str
    url: str
    issuer: str
    client_ids: str  # JSON list
    thumbprints: str  # JSON list
    created_at: float

    @classmethod
    def from_row(cls, row: OidcProviderRow) -> OidcProvider:
        return cls(row.account_id, row.url, row.issuer, row.client_ids, row.thumbprints, row.created_at)
