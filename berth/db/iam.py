"""Identity metadata operations (accounts, users, access keys, inline policies, signing keys).

Atomic on both backends (PostgreSQL runs READ COMMITTED; SQLite's single writer already serialises and
ignores Q.lock): delete_user locks the user row FOR UPDATE before it looks for keys and policies;
create_access_key locks it FOR UPDATE too (the per-user key limit is counted under that lock) and
put_user_policy FOR KEY SHARE, so a key or policy is written only for a user that still exists and a
concurrent delete sees it. The other writes are single statements.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum
from typing import Any

from berth.db.store import Lock, Q, Txn


@dataclass(frozen=True, slots=True)
class UserRow:
    account_id: str
    name: str
    user_id: str
    path: str
    created_at: float


@dataclass(frozen=True, slots=True)
class KeyRow:
    id: str
    account_id: str
    user_name: str
    secret: str
    status: str
    created_at: float


_USER = "account_id, name, user_id, path, created_at"
_KEY = "id, account_id, user_name, secret, status, created_at"


def _user(row: Any) -> UserRow | None:
    return None if row is None else UserRow(*row)


# accounts

def ensure_account(account: str, now: float) -> Txn[bool]:
    n = yield Q("INSERT INTO accounts (id, created_at) VALUES (?, ?) ON CONFLICT (id) DO NOTHING", (account, now))
    return bool(n)


def lock_account(account: str) -> Txn[None]:
    """Lock the account's row for the rest of the transaction: registry-wide quotas (templates, pull-through
    rules, pull-time exclusions) count their rows after it, so on PostgreSQL the count sees every create
    committed before (READ COMMITTED takes a new snapshot per statement); SQLite's writer lock already does."""
    yield Q("SELECT id FROM accounts WHERE id = ?", (account,), "one", lock="UPDATE")


def account_exists(account: str) -> Txn[bool]:
    row = yield Q("SELECT 1 FROM accounts WHERE id = ?", (account,), "one")
    return row is not None


# users

def get_user(account: str, name: str) -> Txn[UserRow | None]:
    row = yield Q(f"SELECT {_USER} FROM iam_users WHERE account_id = ? AND name = ?", (account, name), "one")
    return _user(row)


def create_user(account: str, name: str, user_id: str, path: str, now: float,
                tags: tuple[tuple[str, str], ...] = ()) -> Txn[UserRow | None]:
    """None when the user already exists. `tags` are stored with it, in the same transaction."""
    n = yield Q("INSERT INTO iam_users (account_id, name, user_id, path, created_at) VALUES (?, ?, ?, ?, ?) "
                "ON CONFLICT (account_id, name) DO NOTHING", (account, name, user_id, path, now))
    if not n:
        return None
    for key, value in tags:
        yield Q("INSERT INTO iam_tags (account_id, kind, entity_name, key_lower, key, value) "
                "VALUES (?, 'user', ?, ?, ?, ?)", (account, name, key.lower(), key, value))
    return UserRow(account, name, user_id, path, now)


def list_users(account: str, after: str, limit: int) -> Txn[list[UserRow]]:
    rows = yield Q(f"SELECT {_USER} FROM iam_users WHERE account_id = ? AND name > ? ORDER BY name LIMIT ?",
                   (account, after, limit), "all")
    return [UserRow(*r) for r in rows]


class UserOutcome(Enum):
    DONE = "done"
    NO_USER = "no_user"
    CONFLICT = "conflict"  # delete_user: keys or policies remain (IAM's DeleteConflict); nothing deleted
    TIED = "tied"  # delete_user: still in a group or with an attached policy (DeleteConflict); nothing deleted
    LIMIT = "limit"  # create_access_key: the user has `limit` keys already
    KEY_EXISTS = "key_exists"  # create_access_key: the key id is taken


def _lock_user(account: str, name: str, lock: Lock) -> Txn[bool]:
    row = yield Q("SELECT 1 FROM iam_users WHERE account_id = ? AND name = ?", (account, name), "one", lock=lock)
    return row is not None


def delete_user(account: str, name: str) -> Txn[UserOutcome]:
    if not (yield from _lock_user(account, name, "UPDATE")):
        return UserOutcome.NO_USER
    keys = yield Q("SELECT 1 FROM access_keys WHERE account_id = ? AND user_name = ? LIMIT 1", (account, name), "one")
    pols = yield Q("SELECT 1 FROM user_policies WHERE account_id = ? AND user_name = ? LIMIT 1",
                   (account, name), "one")
    if keys is not None or pols is not None:
        return UserOutcome.CONFLICT
    for sql in ("SELECT 1 FROM group_members WHERE account_id = ? AND user_name = ? LIMIT 1",
                "SELECT 1 FROM policy_attachments WHERE account_id = ? AND kind = 'user' AND entity_name = ? LIMIT 1"):
        if (yield Q(sql, (account, name), "one")) is not None:
            return UserOutcome.TIED
    yield Q("DELETE FROM iam_tags WHERE account_id = ? AND kind = 'user' AND entity_name = ?", (account, name))
    yield Q("DELETE FROM iam_users WHERE account_id = ? AND name = ?", (account, name))
    return UserOutcome.DONE


# access keys

def create_access_key(key: KeyRow, limit: int) -> Txn[UserOutcome]:
    """Add a key to an existing user with fewer than `limit` keys."""
    if not (yield from _lock_user(key.account_id, key.user_name, "UPDATE")):
        return UserOutcome.NO_USER
    row = yield Q("SELECT COUNT(*) FROM access_keys WHERE account_id = ? AND user_name = ?",
                  (key.account_id, key.user_name), "one")
    if int(row[0]) >= limit:
        return UserOutcome.LIMIT
    n = yield Q(f"INSERT INTO access_keys ({_KEY}) VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT (id) DO NOTHING",
                (key.id, key.account_id, key.user_name, key.secret, key.status, key.created_at))
    return UserOutcome.DONE if n else UserOutcome.KEY_EXISTS


def get_access_key(key_id: str) -> Txn[KeyRow | None]:
    row = yield Q(f"SELECT {_KEY} FROM access_keys WHERE id = ?", (key_id,), "one")
    return None if row is None else KeyRow(*row)


def list_access_keys(account: str, user: str) -> Txn[list[KeyRow]]:
    rows = yield Q(f"SELECT {_KEY} FROM access_keys WHERE account_id = ? AND user_name = ? ORDER BY created_at",
                   (account, user), "all")
    return [KeyRow(*r) for r in rows]


def update_access_key(account: str, user: str, key_id: str, status: str) -> Txn[bool]:
    n = yield Q("UPDATE access_keys SET status = ? WHERE id = ? AND account_id = ? AND user_name = ?",
                (status, key_id, account, user))
    return bool(n)


def delete_access_key(account: str, user: str, key_id: str) -> Txn[bool]:
    n = yield Q("DELETE FROM access_keys WHERE id = ? AND account_id = ? AND user_name = ?", (key_id, account, user))
    return bool(n)


# inline user policies

def put_user_policy(account: str, user: str, name: str, document: str) -> Txn[UserOutcome]:
    if not (yield from _lock_user(account, user, "KEY SHARE")):
        return UserOutcome.NO_USER
    yield Q("INSERT INTO user_policies (account_id, user_name, name, document) VALUES (?, ?, ?, ?) "
            "ON CONFLICT (account_id, user_name, name) DO UPDATE SET document = excluded.document",
            (account, user, name, document))
    return UserOutcome.DONE


def get_user_policy(account: str, user: str, name: str) -> Txn[str | None]:
    row = yield Q("SELECT document FROM user_policies WHERE account_id = ? AND user_name = ? AND name = ?",
                  (account, user, name), "one")
    return None if row is None else row[0]


def user_policies(account: str, user: str) -> Txn[list[tuple[str, str]]]:
    rows = yield Q("SELECT name, document FROM user_policies WHERE account_id = ? AND user_name = ? ORDER BY name",
                   (account, user), "all")
    return [(r[0], r[1]) for r in rows]


def delete_user_policy(account: str, user: str, name: str) -> Txn[bool]:
    n = yield Q("DELETE FROM user_policies WHERE account_id = ? AND user_name = ? AND name = ?",
                (account, user, name))
    return bool(n)


# token signing keys, shared by every node

def signing_keys() -> Txn[dict[str, str]]:
    rows = yield Q("SELECT id, secret FROM signing_keys ORDER BY created_at", (), "all")
    return {r[0]: r[1] for r in rows}


def add_signing_key(key_id: str, secret: str, now: float) -> Txn[None]:
    yield Q("INSERT INTO signing_keys (id, secret, created_at) VALUES (?, ?, ?) ON CONFLICT (id) DO NOTHING",
            (key_id, secret, now))


def retire_signing_keys(superseded_before: float) -> Txn[list[str]]:
    """Delete the keys superseded (by a newer key) before `superseded_before`; never the newest. Their ids."""
    rows = yield Q("SELECT id, created_at FROM signing_keys ORDER BY created_at", (), "all", lock="UPDATE")
    gone = [r[0] for r, nxt in zip(rows, rows[1:], strict=False) if nxt[1] < superseded_before]
    for key_id in gone:
        yield Q("DELETE FROM signing_keys WHERE id = ?", (key_id,))
    return gone
