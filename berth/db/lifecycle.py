"""Metadata operations for lifecycle policies: the policy of a repository, its preview, the repository
snapshot the evaluation reads, the archive storage class, the history of actions, pull-time exclusions.

Decisions live in berth/lifecycle; atomic read-decide-writes here lock what they read (Q.lock):
starting a preview is one conditional upsert; an action re-checks the image it acts on, locked.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from berth.db.iam import lock_account
from berth.db.store import Q, Txn

IN_PROGRESS, COMPLETE, EXPIRED, FAILED = "IN_PROGRESS", "COMPLETE", "EXPIRED", "FAILED"


@dataclass(frozen=True, slots=True)
class PolicyRow:
    text: str
    updated_at: float
    last_evaluated_at: float | None


@dataclass(frozen=True, slots=True)
class PreviewRow:
    text: str
    status: str
    started_at: float
    finished_at: float | None
    results: list[dict[str, Any]] | None
    error: str | None


@dataclass(frozen=True, slots=True)
class SnapshotRow:
    digest: str
    pushed_at: float
    last_pulled_at: float | None
    status: str
    archived_at: float | None
    subject: str | None
    tags: tuple[str, ...]
    children: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class HistoryRow:
    id: int
    account_id: str
    region: str
    repository: str
    digest: str
    tags: tuple[str, ...]
    rule_priority: int
    action: str
    at: float


@dataclass(frozen=True, slots=True)
class PolicyRepo:
    id: int
    account_id: str
    region: str
    name: str


# policies

def put_policy(repo_id: int, text: str, now: float) -> Txn[bool]:
    """Store the repository's policy; False if the repository is gone."""
    repo = yield Q("SELECT id FROM repositories WHERE id = ?", (repo_id,), "one", lock="KEY SHARE")
    if repo is None:
        return False
    yield Q("INSERT INTO lifecycle_policies (repository_id, policy_text, updated_at) VALUES (?, ?, ?) "
            "ON CONFLICT (repository_id) DO UPDATE SET policy_text = excluded.policy_text, "
            "updated_at = excluded.updated_at", (repo_id, text, now))
    return True


def get_policy(repo_id: int) -> Txn[PolicyRow | None]:
    row = yield Q("SELECT policy_text, updated_at, last_evaluated_at FROM lifecycle_policies WHERE repository_id = ?",
                  (repo_id,), "one")
    return None if row is None else PolicyRow(row[0], float(row[1]), None if row[2] is None else float(row[2]))


def delete_policy(repo_id: int) -> Txn[PolicyRow | None]:
    """Delete the policy; the deleted one, or None if there was none."""
    row = yield Q("SELECT policy_text, updated_at, last_evaluated_at FROM lifecycle_policies WHERE repository_id = ?",
                  (repo_id,), "one", lock="UPDATE")
    if row is None:
        return None
    yield Q("DELETE FROM lifecycle_policies WHERE repository_id = ?", (repo_id,))
    return PolicyRow(row[0], float(row[1]), None if row[2] is None else float(row[2]))


def mark_evaluated(repo_id: int, now: float) -> Txn[int]:
    n: int = yield Q("UPDATE lifecycle_policies SET last_evaluated_at = ? WHERE repository_id = ?", (now, repo_id))
    return n


def repositories_with_policies(name: str | None = None) -> Txn[list[PolicyRepo]]:
    sql = ("SELECT r.id, r.account_id, r.region, r.name FROM lifecycle_policies p "
           "JOIN repositories r ON r.id = p.repository_id")
    params: tuple[Any, ...] = ()
    if name is not None:
        sql += " WHERE r.name = ?"
        params = (name,)
    rows = yield Q(sql + " ORDER BY r.account_id, r.region, r.name", params, "all")
    return [PolicyRepo(int(r[0]), r[1], r[2], r[3]) for r in rows]


# previews

def start_preview(repo_id: int, text: str, now: float, job_kind: str, job_key: str) -> Txn[bool]:
    """Start a preview unless one is in progress, one whose job (`job_kind`, `job_key`) is still queued or
    running (one whose job died is replaced). The row is inserted, or else locked and then read in later
    statements: on PostgreSQL READ COMMITTED a start that waited sees the winner's row and its job."""
    row = yield Q("INSERT INTO lifecycle_previews (repository_id, policy_text, status, started_at) VALUES (?, ?, ?, ?) "
                  "ON CONFLICT (repository_id) DO NOTHING RETURNING repository_id", (repo_id, text, IN_PROGRESS, now),
                  "one")
    if row is not None:
        return True
    row = yield Q("SELECT status FROM lifecycle_previews WHERE repository_id = ?", (repo_id,), "one", lock="UPDATE")
    if row is None:
        return False  # its repository is being deleted
    if row[0] == IN_PROGRESS and (yield from job_live(job_kind, job_key)):
        return False
    yield Q("UPDATE lifecycle_previews SET policy_text = ?, status = ?, started_at = ?, finished_at = NULL, "
            "results = NULL, error = NULL WHERE repository_id = ?", (text, IN_PROGRESS, now, repo_id))
    return True


def job_live(kind: str, key: str) -> Txn[bool]:
    """Whether a job of `kind` with `key` is queued or running (a preview's job that has not ended)."""
    row = yield Q("SELECT 1 FROM jobs WHERE kind = ? AND key = ? AND state IN ('queued', 'running') LIMIT 1",
                  (kind, key), "one")
    return row is not None


def finish_preview(repo_id: int, started_at: float, status: str, results: list[dict[str, Any]] | None,
                   error: str | None, now: float) -> Txn[bool]:
    """Record the outcome of the preview that started at `started_at` (a newer one is left alone)."""
    n: int = yield Q("UPDATE lifecycle_previews SET status = ?, results = ?, error = ?, finished_at = ? "
                     "WHERE repository_id = ? AND started_at = ? AND status = ?",
                     (status, None if results is None else json.dumps(results, separators=(",", ":")), error, now,
                      repo_id, started_at, IN_PROGRESS))
    return n > 0


def get_preview(repo_id: int) -> Txn[PreviewRow | None]:
    row = yield Q("SELECT policy_text, status, started_at, finished_at, results, error FROM lifecycle_previews "
                  "WHERE repository_id = ?", (repo_id,), "one")
    if row is None:
        return None
    return PreviewRow(row[0], row[1], float(row[2]), None if row[3] is None else float(row[3]),
                      None if row[4] is None else json.loads(row[4]), row[5])


# the snapshot the evaluation reads

def snapshot(repo_id: int) -> Txn[list[SnapshotRow]]:
    """Every image of the repository with its tags and (for an index) the manifests it lists."""
    rows = yield Q("SELECT digest, pushed_at, last_pulled_at, image_status, archived_at, subject_digest "
                   "FROM manifests WHERE repository_id = ? ORDER BY digest", (repo_id,), "all")
    tag_rows = yield Q("SELECT digest, name FROM tags WHERE repository_id = ? ORDER BY digest, name",
                       (repo_id,), "all")
    ref_rows = yield Q("SELECT manifest_digest, child_digest FROM manifest_refs WHERE repository_id = ? "
                       "AND kind = 'manifest' ORDER BY manifest_digest, child_digest", (repo_id,), "all")
    tags: dict[str, list[str]] = {}
    for d, name in tag_rows:
        tags.setdefault(d, []).append(name)
    children: dict[str, list[str]] = {}
    for parent, child in ref_rows:
        children.setdefault(parent, []).append(child)
    return [SnapshotRow(r[0], float(r[1]), None if r[2] is None else float(r[2]), r[3],
                        None if r[4] is None else float(r[4]), r[5], tuple(tags.get(r[0], ())),
                        tuple(children.get(r[0], ()))) for r in rows]


def lock_image(repo_id: int, digest: str) -> Txn[tuple[str, float, tuple[str, ...]] | None]:
    """(status, pushed_at, tags) of an image, its tags and its row locked (in delete_image's order: tags
    first); None if it is gone."""
    tag_rows = yield Q("SELECT name FROM tags WHERE repository_id = ? AND digest = ? ORDER BY name",
                       (repo_id, digest), "all", lock="UPDATE")
    row = yield Q("SELECT image_status, pushed_at FROM manifests WHERE repository_id = ? AND digest = ?",
                  (repo_id, digest), "one", lock="UPDATE")
    if row is None:
        return None
    return row[0], float(row[1]), tuple(r[0] for r in tag_rows)


# the archive storage class

def set_status(repo_id: int, digest: str, status: str, now: float) -> Txn[int]:
    """Move an image to ARCHIVED (archived_at = now) or ACTIVATING / ACTIVE (activated_at = now)."""
    column = "archived_at" if status == "ARCHIVED" else "activated_at"
    n: int = yield Q(f"UPDATE manifests SET image_status = ?, {column} = ? WHERE repository_id = ? AND digest = ?",
                     (status, now, repo_id, digest))
    return n


def statuses(repo_id: int, digests: Sequence[str]) -> Txn[dict[str, tuple[str, float | None, float | None]]]:
    """digest -> (status, archived_at, activated_at)."""
    out: dict[str, tuple[str, float | None, float | None]] = {}
    for i in range(0, len(digests), 500):
        chunk = digests[i:i + 500]
        rows = yield Q("SELECT digest, image_status, archived_at, activated_at FROM manifests WHERE repository_id = ? "
                       f"AND digest IN ({', '.join('?' * len(chunk))})", (repo_id, *chunk), "all")
        for r in rows:
            out[r[0]] = (r[1], None if r[2] is None else float(r[2]), None if r[3] is None else float(r[3]))
    return out


def activate_due(before: float, now: float) -> Txn[int]:
    """ACTIVATING images whose restore started before `before` become ACTIVE."""
    n: int = yield Q("UPDATE manifests SET image_status = 'ACTIVE', activated_at = ? "
                     "WHERE image_status = 'ACTIVATING' AND activated_at < ?", (now, before))
    return n


# history

def record_action(account: str, region: str, repository: str, digest: str, tags: Sequence[str], rule_priority: int,
                  action: str, at: float) -> Txn[None]:
    yield Q("INSERT INTO lifecycle_history (account_id, region, repository, digest, tags, rule_priority, action, at) "
            "VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            (account, region, repository, digest, json.dumps(list(tags)), rule_priority, action, at))


def history(account: str | None, region: str | None, repository: str | None, limit: int) -> Txn[list[HistoryRow]]:
    """The newest `limit` actions, newest first, of one repository or all."""
    where, params = [], []
    for column, value in (("account_id", account), ("region", region), ("repository", repository)):
        if value is not None:
            where.append(f"{column} = ?")
            params.append(value)
    sql = ("SELECT id, account_id, region, repository, digest, tags, rule_priority, action, at FROM lifecycle_history"
           + (" WHERE " + " AND ".join(where) if where else "") + " ORDER BY id DESC LIMIT ?")
    rows = yield Q(sql, (*params, limit), "all")
    return [HistoryRow(int(r[0]), r[1], r[2], r[3], r[4], tuple(json.loads(r[5])), int(r[6]), r[7], float(r[8]))
            for r in rows]


# pull-time exclusions

def add_exclusion(account: str, principal: str, now: float, limit: int) -> Txn[str]:
    """'added', 'exists' or 'full' (already `limit` principals)."""
    yield from lock_account(account)  # serialises the count
    row = yield Q("SELECT 1 FROM pull_time_exclusions WHERE account_id = ? AND principal_arn = ?",
                  (account, principal), "one")
    if row is not None:
        return "exists"
    count = yield Q("SELECT COUNT(*) FROM pull_time_exclusions WHERE account_id = ?", (account,), "one")
    if int(count[0]) >= limit:
        return "full"
    yield Q("INSERT INTO pull_time_exclusions (account_id, principal_arn, created_at) VALUES (?, ?, ?)",
            (account, principal, now))
    return "added"


def remove_exclusion(account: str, principal: str) -> Txn[bool]:
    n: int = yield Q("DELETE FROM pull_time_exclusions WHERE account_id = ? AND principal_arn = ?",
                     (account, principal))
    return n > 0


def exclusions(account: str) -> Txn[list[tuple[str, float]]]:
    rows = yield Q("SELECT principal_arn, created_at FROM pull_time_exclusions WHERE account_id = ? "
                   "ORDER BY principal_arn", (account,), "all")
    return [(r[0], float(r[1])) for r in rows]


def excluded(account: str, principal: str) -> Txn[bool]:
    row = yield Q("SELECT 1 FROM pull_time_exclusions WHERE account_id = ? AND principal_arn = ?",
                  (account, principal), "one")
    return row is not None


def excluded_any(account: str, principals: Sequence[str]) -> Txn[bool]:
    """Whether any of these ARNs is excluded from pull-time updates in the account."""
    row = yield Q(f"SELECT 1 FROM pull_time_exclusions WHERE account_id = ? AND principal_arn IN "
                  f"({', '.join('?' * len(principals))}) LIMIT 1", (account, *principals), "one")
    return row is not None
