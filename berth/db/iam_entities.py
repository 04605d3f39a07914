"""Identity metadata beyond users: groups, roles, customer managed policies and their versions,
policy attachments, and the inline policies of groups and roles."""

from __future__ import annotations

from dataclasses import astuple, dataclass
from typing import Any

from berth.db.store import Lock, Q, Txn

MAX_POLICY_VERSIONS = 5  # as in IAM
AWS_MANAGED_PREFIX = "arn:aws:iam::aws:policy/"  # AWS managed policies live in code, not in managed_policies


@dataclass(frozen=True, slots=True)
class GroupRow:
    account_id: str
    name: str
    group_id: str
    path: str
    created_at: float


@dataclass(frozen=True, slots=True)
class RoleRow:
    account_id: str
    name: str
    role_id: str
    path: str
    trust_policy: str
    description: str
    max_session_duration: int
    created_at: float


@dataclass(frozen=True, slots=True)
class PolicyRow:
    arn: str
    account_id: str
    name: str
    path: str
    policy_id: str
    description: str
    default_version: str
    next_version: int
    created_at: float
    updated_at: float


@dataclass(frozen=True, slots=True)
class VersionRow:
    policy_arn: str
    version_id: str
    document: str
    created_at: float


_GROUP = "account_id, name, group_id, path, created_at"
_ROLE = "account_id, name, role_id, path, trust_policy, description, max_session_duration, created_at"
_POLICY = ("arn, account_id, name, path, policy_id, description, default_version, next_version, created_at, "
           "updated_at")


# groups

def create_group(row: GroupRow) -> Txn[bool]:
    n = yield Q(f"INSERT INTO iam_groups ({_GROUP}) VALUES (?, ?, ?, ?, ?) ON CONFLICT (account_id, name) DO NOTHING",
                (row.account_id, row.name, row.group_id, row.path, row.created_at))
    return bool(n)


def get_group(account: str, name: str) -> Txn[GroupRow | None]:
    row = yield Q(f"SELECT {_GROUP} FROM iam_groups WHERE account_id = ? AND name = ?", (account, name), "one")
    return None if row is None else GroupRow(*row)


def list_groups(account: str) -> Txn[list[GroupRow]]:
    rows = yield Q(f"SELECT {_GROUP} FROM iam_groups WHERE account_id = ? ORDER BY name", (account,), "all")
    return [GroupRow(*r) for r in rows]


_ENTITIES = {"user": "iam_users", "group": "iam_groups", "role": "iam_roles"}


def lock_entity(account: str, kind: str, name: str, lock: Lock) -> Txn[bool]:
    """Lock a user, group or role row (PostgreSQL; SQLite's writer lock serialises anyway): whether it
    exists. Deletes take UPDATE and check what hangs off the entity; writes that hang something off it
    (a member, an attachment, an inline policy) take KEY SHARE, so neither decides on a stale read."""
    row = yield Q(f"SELECT 1 FROM {_ENTITIES[kind]} WHERE account_id = ? AND name = ?", (account, name), "one",
                  lock=lock)
    return row is not None


def delete_group(account: str, name: str) -> Txn[str]:
    """"ok", "unknown", or "conflict" while it has members, inline or attached policies (as IAM)."""
    if not (yield from lock_entity(account, "group", name, "UPDATE")):
        return "unknown"
    for sql in ("SELECT 1 FROM group_members WHERE account_id = ? AND group_name = ? LIMIT 1",
                "SELECT 1 FROM entity_policies WHERE account_id = ? AND kind = 'group' AND entity_name = ? LIMIT 1",
                "SELECT 1 FROM policy_attachments WHERE account_id = ? AND kind = 'group' AND entity_name = ? "
                "LIMIT 1"):
        found = yield Q(sql, (account, name), "one")
        if found is not None:
            return "conflict"
    n = yield Q("DELETE FROM iam_groups WHERE account_id = ? AND name = ?", (account, name))
    return "ok" if n else "unknown"


def add_member(account: str, group: str, user: str) -> Txn[bool]:
    """False (nothing written) when the group or the user is gone."""
    if not (yield from lock_entity(account, "group", group, "KEY SHARE")):
        return False
    if not (yield from lock_entity(account, "user", user, "KEY SHARE")):
        return False
    yield Q("INSERT INTO group_members (account_id, group_name, user_name) VALUES (?, ?, ?) "
            "ON CONFLICT (account_id, group_name, user_name) DO NOTHING", (account, group, user))
    return True


def remove_member(account: str, group: str, user: str) -> Txn[bool]:
    n = yield Q("DELETE FROM group_members WHERE account_id = ? AND group_name = ? AND user_name = ?",
                (account, group, user))
    return bool(n)


def members(account: str, group: str) -> Txn[list[str]]:
    rows = yield Q("SELECT user_name FROM group_members WHERE account_id = ? AND group_name = ? ORDER BY user_name",
                   (account, group), "all")
    return [r[0] for r in rows]


def groups_for_user(account: str, user: str) -> Txn[list[GroupRow]]:
    cols = ", ".join(f"g.{c.strip()}" for c in _GROUP.split(","))
    rows = yield Q(f"SELECT {cols} FROM group_members m JOIN iam_groups g ON g.account_id = m.account_id "
                   "AND g.name = m.group_name WHERE m.account_id = ? AND m.user_name = ? ORDER BY g.name",
                   (account, user), "all")
    return [GroupRow(*r) for r in rows]


# roles

def create_role(row: RoleRow, tags: tuple[tuple[str, str], ...] = ()) -> Txn[bool]:
    n = yield Q(f"INSERT INTO iam_roles ({_ROLE}) VALUES (?, ?, ?, ?, ?, ?, ?, ?) "
                "ON CONFLICT (account_id, name) DO NOTHING",
                (row.account_id, row.name, row.role_id, row.path, row.trust_policy, row.description,
                 row.max_session_duration, row.created_at))
    if not n:
        return False
    for key, value in tags:
        yield Q("INSERT INTO iam_tags (account_id, kind, entity_name, key_lower, key, value) "
                "VALUES (?, 'role', ?, ?, ?, ?)", (row.account_id, row.name, key.lower(), key, value))
    return True


def get_role(account: str, name: str) -> Txn[RoleRow | None]:
    row = yield Q(f"SELECT {_ROLE} FROM iam_roles WHERE account_id = ? AND name = ?", (account, name), "one")
    return None if row is None else RoleRow(*row)


def list_roles(account: str) -> Txn[list[RoleRow]]:
    rows = yield Q(f"SELECT {_ROLE} FROM iam_roles WHERE account_id = ? ORDER BY name", (account,), "all")
    return [RoleRow(*r) for r in rows]


def update_trust(account: str, name: str, document: str) -> Txn[bool]:
    n = yield Q("UPDATE iam_roles SET trust_policy = ? WHERE account_id = ? AND name = ?", (document, account, name))
    return bool(n)


def delete_role(account: str, name: str) -> Txn[str]:
    if not (yield from lock_entity(account, "role", name, "UPDATE")):
        return "unknown"
    for sql in ("SELECT 1 FROM entity_policies WHERE account_id = ? AND kind = 'role' AND entity_name = ? LIMIT 1",
                "SELECT 1 FROM policy_attachments WHERE account_id = ? AND kind = 'role' AND entity_name = ? LIMIT 1"):
        found = yield Q(sql, (account, name), "one")
        if found is not None:
            return "conflict"
    yield Q("DELETE FROM iam_tags WHERE account_id = ? AND kind = 'role' AND entity_name = ?", (account, name))
    n = yield Q("DELETE FROM iam_roles WHERE account_id = ? AND name = ?", (account, name))
    return "ok" if n else "unknown"


# tags of users and roles (kind: "user" | "role"); keys compared without case, as IAM does

def tags(account: str, kind: str, entity: str) -> Txn[list[tuple[str, str]]]:
    rows = yield Q("SELECT key, value FROM iam_tags WHERE account_id = ? AND kind = ? AND entity_name = ? "
                   "ORDER BY key_lower", (account, kind, entity), "all")
    return [(r[0], r[1]) for r in rows]


def tag(account: str, kind: str, entity: str, new: tuple[tuple[str, str], ...], limit: int) -> Txn[str]:
    """Add or overwrite tags: "ok", "unknown" (the user or role is gone), or "limit" (more than `limit`
    tags would result; nothing written). Under the entity's row lock, so concurrent calls cannot pass it."""
    if not (yield from lock_entity(account, kind, entity, "NO KEY UPDATE")):
        return "unknown"
    rows = yield Q("SELECT key_lower FROM iam_tags WHERE account_id = ? AND kind = ? AND entity_name = ?",
                   (account, kind, entity), "all")
    if len({r[0] for r in rows} | {k.lower() for k, _ in new}) > limit:
        return "limit"
    for key, value in new:
        yield Q("INSERT INTO iam_tags (account_id, kind, entity_name, key_lower, key, value) VALUES (?, ?, ?, ?, ?, ?) "
                "ON CONFLICT (account_id, kind, entity_name, key_lower) DO UPDATE SET key = excluded.key, "
                "value = excluded.value", (account, kind, entity, key.lower(), key, value))
    return "ok"


def untag(account: str, kind: str, entity: str, keys: list[str]) -> Txn[bool]:
    """False when the user or role is gone; keys not present are ignored (as IAM)."""
    if not (yield from lock_entity(account, kind, entity, "NO KEY UPDATE")):
        return False
    for key in keys:
        yield Q("DELETE FROM iam_tags WHERE account_id = ? AND kind = ? AND entity_name = ? AND key_lower = ?",
                (account, kind, entity, key.lower()))
    return True


# inline policies of groups and roles (kind: "group" | "role")

def put_inline(account: str, kind: str, entity: str, name: str, document: str) -> Txn[bool]:
    """False (nothing written) when the group or role is gone."""
    if not (yield from lock_entity(account, kind, entity, "KEY SHARE")):
        return False
    yield Q("INSERT INTO entity_policies (account_id, kind, entity_name, name, document) VALUES (?, ?, ?, ?, ?) "
            "ON CONFLICT (account_id, kind, entity_name, name) DO UPDATE SET document = excluded.document",
            (account, kind, entity, name, document))
    return True


def inline_policies(account: str, kind: str, entity: str) -> Txn[list[tuple[str, str]]]:
    rows = yield Q("SELECT name, document FROM entity_policies WHERE account_id = ? AND kind = ? AND entity_name = ? "
                   "ORDER BY name", (account, kind, entity), "all")
    return [(r[0], r[1]) for r in rows]


def delete_inline(account: str, kind: str, entity: str, name: str) -> Txn[bool]:
    n = yield Q("DELETE FROM entity_policies WHERE account_id = ? AND kind = ? AND entity_name = ? AND name = ?",
                (account, kind, entity, name))
    return bool(n)


# customer managed policies

def create_policy(row: PolicyRow, document: str) -> Txn[bool]:
    n = yield Q(f"INSERT INTO managed_policies ({_POLICY}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?) "
                "ON CONFLICT (arn) DO NOTHING",
                (row.arn, row.account_id, row.name, row.path, row.policy_id, row.description, row.default_version,
                 row.next_version, row.created_at, row.updated_at))
    if not n:
        return False
    yield Q("INSERT INTO policy_versions (policy_arn, version_id, document, created_at) VALUES (?, ?, ?, ?)",
            (row.arn, row.default_version, document, row.created_at))
    return True


def get_policy(arn: str, lock: Lock | None = None) -> Txn[PolicyRow | None]:
    """The policy row; `lock` (PostgreSQL): version changes and deletes take UPDATE, attachments KEY SHARE,
    so a version count, a default or an "is it attached" decision is never made on a stale read."""
    row = yield Q(f"SELECT {_POLICY} FROM managed_policies WHERE arn = ?", (arn,), "one", lock=lock)
    return None if row is None else PolicyRow(*row)


def list_policies(account: str) -> Txn[list[PolicyRow]]:
    rows = yield Q(f"SELECT {_POLICY} FROM managed_policies WHERE account_id = ? ORDER BY name", (account,), "all")
    return [PolicyRow(*r) for r in rows]


def delete_policy(arn: str) -> Txn[str]:
    """"ok", "unknown", or "conflict" while attached or with non-default versions (as IAM)."""
    policy = yield from get_policy(arn, "UPDATE")
    if policy is None:
        return "unknown"
    attached = yield Q("SELECT 1 FROM policy_attachments WHERE policy_arn = ? LIMIT 1", (arn,), "one")
    if attached is not None:
        return "conflict"
    others = yield Q("SELECT 1 FROM policy_versions WHERE policy_arn = ? AND version_id <> ? LIMIT 1",
                     (arn, policy.default_version), "one")
    if others is not None:
        return "conflict"
    yield Q("DELETE FROM policy_versions WHERE policy_arn = ?", (arn,))
    yield Q("DELETE FROM managed_policies WHERE arn = ?", (arn,))
    return "ok"


def create_version(arn: str, document: str, set_default: bool, now: float) -> Txn[str | None]:
    """The new version's id ("v2" …); None for an unknown policy; "" when it already has five."""
    policy = yield from get_policy(arn, "UPDATE")
    if policy is None:
        return None
    count = yield Q("SELECT COUNT(*) FROM policy_versions WHERE policy_arn = ?", (arn,), "one")
    if count[0] >= MAX_POLICY_VERSIONS:
        return ""
    version = f"v{policy.next_version}"
    yield Q("INSERT INTO policy_versions (policy_arn, version_id, document, created_at) VALUES (?, ?, ?, ?)",
            (arn, version, document, now))
    default = version if set_default else policy.default_version
    yield Q("UPDATE managed_policies SET next_version = ?, default_version = ?, updated_at = ? WHERE arn = ?",
            (policy.next_version + 1, default, now, arn))
    return version


def get_version(arn: str, version: str) -> Txn[VersionRow | None]:
    row = yield Q("SELECT policy_arn, version_id, document, created_at FROM policy_versions "
                  "WHERE policy_arn = ? AND version_id = ?", (arn, version), "one")
    return None if row is None else VersionRow(*row)


def list_versions(arn: str) -> Txn[list[VersionRow]]:
    rows = yield Q("SELECT policy_arn, version_id, document, created_at FROM policy_versions WHERE policy_arn = ? "
                   "ORDER BY created_at DESC, version_id DESC", (arn,), "all")
    return [VersionRow(*r) for r in rows]


def set_default_version(arn: str, version: str, now: float) -> Txn[bool]:
    if (yield from get_policy(arn, "UPDATE")) is None:
        return False
    found = yield from get_version(arn, version)
    if found is None:
        return False
    yield Q("UPDATE managed_policies SET default_version = ?, updated_at = ? WHERE arn = ?", (version, now, arn))
    return True


def delete_version(arn: str, version: str) -> Txn[str]:
    """"ok", "unknown", or "default" (the default version cannot be deleted)."""
    policy = yield from get_policy(arn, "UPDATE")
    if policy is None:
        return "unknown"
    if policy.default_version == version:
        return "default"
    n = yield Q("DELETE FROM policy_versions WHERE policy_arn = ? AND version_id = ?", (arn, version))
    return "ok" if n else "unknown"


def default_documents(arns: list[str]) -> Txn[dict[str, str]]:
    """The default version's document of each customer managed policy in `arns`."""
    out: dict[str, str] = {}
    for arn in arns:
        row = yield Q("SELECT v.document FROM managed_policies p JOIN policy_versions v ON v.policy_arn = p.arn "
                      "AND v.version_id = p.default_version WHERE p.arn = ?", (arn,), "one")
        if row is not None:
            out[arn] = row[0]
    return out


# attachments (kind: "user" | "group" | "role")

def attach(account: str, kind: str, entity: str, arn: str) -> Txn[bool]:
    """False (nothing written) when the user, group or role is gone, or the customer managed policy is
    (AWS managed policies have no row)."""
    if not (yield from lock_entity(account, kind, entity, "KEY SHARE")):
        return False
    if not arn.startswith(AWS_MANAGED_PREFIX) and (yield from get_policy(arn, "KEY SHARE")) is None:
        return False
    yield Q("INSERT INTO policy_attachments (account_id, kind, entity_name, policy_arn) VALUES (?, ?, ?, ?) "
            "ON CONFLICT (account_id, kind, entity_name, policy_arn) DO NOTHING", (account, kind, entity, arn))
    return True


def detach(account: str, kind: str, entity: str, arn: str) -> Txn[bool]:
    n = yield Q("DELETE FROM policy_attachments WHERE account_id = ? AND kind = ? AND entity_name = ? "
                "AND policy_arn = ?", (account, kind, entity, arn))
    return bool(n)


def attached(account: str, kind: str, entity: str) -> Txn[list[str]]:
    rows = yield Q("SELECT policy_arn FROM policy_attachments WHERE account_id = ? AND kind = ? AND entity_name = ? "
                   "ORDER BY policy_arn", (account, kind, entity), "all")
    return [r[0] for r in rows]


def attachment_count(arn: str) -> Txn[int]:
    row: Any = yield Q("SELECT COUNT(*) FROM policy_attachments WHERE policy_arn = ?", (arn,), "one")
    return int(row[0])


# OpenID Connect identity providers

@dataclass(frozen=True, slots=True)
class OidcProviderRow:
    account_id: str
    url: str
    issuer: str
    client_ids: str  # JSON list
    thumbprints: str  # JSON list
    created_at: float


_OIDC = "account_id, url, issuer, client_ids, thumbprints, created_at"


def create_oidc_provider(row: OidcProviderRow) -> Txn[bool]:
    return (yield from _create_provider("oidc_providers", _OIDC, "url", astuple(row)))


def get_oidc_provider(account: str, url: str) -> Txn[OidcProviderRow | None]:
    row = yield from _get_provider("oidc_providers", _OIDC, "url", account, url)
    return None if row is None else OidcProviderRow(*row)


def list_oidc_providers(account: str) -> Txn[list[OidcProviderRow]]:
    return [OidcProviderRow(*r) for r in (yield from _list_providers("oidc_providers", _OIDC, "url", account))]


def delete_oidc_provider(account: str, url: str) -> Txn[bool]:
    return (yield from _delete_provider("oidc_providers", "url", account, url))


# SAML identity providers

@dataclass(frozen=True, slots=True)
class SamlProviderRow:
    account_id: str
    name: str
    provider_uuid: str
    metadata_document: str
    valid_until: float | None
    created_at: float


_SAML = "account_id, name, provider_uuid, metadata_document, valid_until, created_at"


def create_saml_provider(row: SamlProviderRow) -> Txn[bool]:
    return (yield from _create_provider("saml_providers", _SAML, "name", astuple(row)))


def get_saml_provider(account: str, name: str) -> Txn[SamlProviderRow | None]:
    row = yield from _get_provider("saml_providers", _SAML, "name", account, name)
    return None if row is None else SamlProviderRow(*row)


def list_saml_providers(account: str) -> Txn[list[SamlProviderRow]]:
    return [SamlProviderRow(*r) for r in (yield from _list_providers("saml_providers", _SAML, "name", account))]


def delete_saml_provider(account: str, name: str) -> Txn[bool]:
    return (yield from _delete_provider("saml_providers", "name", account, name))


# the identity providers' one shape: rows keyed by (account_id, `key`), the columns in the row class's order

def _create_provider(table: str, columns: str, key: str, values: tuple[Any, ...]) -> Txn[bool]:
    marks = ", ".join("?" * len(values))
    n = yield Q(f"INSERT INTO {table} ({columns}) VALUES ({marks}) ON CONFLICT (account_id, {key}) DO NOTHING", values)
    return bool(n)


def _get_provider(table: str, columns: str, key: str, account: str, name: str) -> Txn[Any]:
    row = yield Q(f"SELECT {columns} FROM {table} WHERE account_id = ? AND {key} = ?", (account, name), "one")
    return row


def _list_providers(table: str, columns: str, key: str, account: str) -> Txn[list[Any]]:
    rows = yield Q(f"SELECT {columns} FROM {table} WHERE account_id = ? ORDER BY {key}", (account,), "all")
    return list(rows)


def _delete_provider(table: str, key: str, account: str, name: str) -> Txn[bool]:
    n = yield Q(f"DELETE FROM {table} WHERE account_id = ? AND {key} = ?", (account, name))
    return bool(n)
