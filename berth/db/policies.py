"""Resource policies and account settings: repository policies, registry policies, settings.

Each operation is one statement (an upsert, or DELETE ... RETURNING), so atomic on both backends.
"""

from __future__ import annotations

from berth.db.store import Q, Txn


def repository_policy_by_name(account: str, region: str, name: str) -> Txn[str | None]:
    row = yield Q("SELECT p.document FROM repositories r JOIN repository_policies p ON p.repository_id = r.id "
                  "WHERE r.account_id = ? AND r.region = ? AND r.name = ?", (account, region, name), "one")
    return None if row is None else row[0]


def get_repository_policy(repo_id: int) -> Txn[str | None]:
    row = yield Q("SELECT document FROM repository_policies WHERE repository_id = ?", (repo_id,), "one")
    return None if row is None else row[0]


def set_repository_policy(repo_id: int, document: str) -> Txn[None]:
    yield Q("INSERT INTO repository_policies (repository_id, document) VALUES (?, ?) "
            "ON CONFLICT (repository_id) DO UPDATE SET document = excluded.document", (repo_id, document))


def delete_repository_policy(repo_id: int) -> Txn[str | None]:
    """The deleted document, or None when there was none."""
    row = yield Q("DELETE FROM repository_policies WHERE repository_id = ? RETURNING document", (repo_id,), "one")
    return None if row is None else row[0]


def get_registry_policy(account: str, region: str) -> Txn[str | None]:
    row = yield Q("SELECT document FROM registry_policies WHERE account_id = ? AND region = ?",
                  (account, region), "one")
    return None if row is None else row[0]


def put_registry_policy(account: str, region: str, document: str) -> Txn[None]:
    yield Q("INSERT INTO registry_policies (account_id, region, document) VALUES (?, ?, ?) "
            "ON CONFLICT (account_id, region) DO UPDATE SET document = excluded.document", (account, region, document))


def delete_registry_policy(account: str, region: str) -> Txn[str | None]:
    row = yield Q("DELETE FROM registry_policies WHERE account_id = ? AND region = ? RETURNING document",
                  (account, region), "one")
    return None if row is None else row[0]


def get_setting(account: str, region: str, name: str) -> Txn[str | None]:
    row = yield Q("SELECT value FROM account_settings WHERE account_id = ? AND region = ? AND name = ?",
                  (account, region, name), "one")
    return None if row is None else row[0]


def put_setting(account: str, region: str, name: str, value: str) -> Txn[None]:
    yield Q("INSERT INTO account_settings (account_id, region, name, value) VALUES (?, ?, ?, ?) "
            "ON CONFLICT (account_id, region, name) DO UPDATE SET value = excluded.value",
            (account, region, name, value))
