"""Replication metadata, as Txn generators: the configuration per registry (account + region), the status
per image and destination, the peer deployments, the back-fills and their per-image results.

The rules (what a configuration means, where an image goes) are berth.replication's; these store. Every
write is one statement (an upsert or a conditional update), but for sync_config_peers, which reads, decides
and writes: it takes the migrations' advisory lock for its transaction on PostgreSQL.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from berth.db.migrate import MIGRATION_LOCK
from berth.db.store import Q, Txn

IN_PROGRESS, COMPLETE, FAILED = "IN_PROGRESS", "COMPLETE", "FAILED"


# configuration

def get_config(account: str, region: str) -> Txn[str | None]:
    row = yield Q("SELECT document FROM replication_configs WHERE account_id = ? AND region = ?",
                  (account, region), "one")
    return None if row is None else str(row[0])


def put_config(account: str, region: str, document: str, now: float) -> Txn[None]:
    yield Q("INSERT INTO replication_configs (account_id, region, document, updated_at) VALUES (?, ?, ?, ?) "
            "ON CONFLICT (account_id, region) DO UPDATE SET document = excluded.document, "
            "updated_at = excluded.updated_at", (account, region, document, now))


# status per image and destination

@dataclass(frozen=True, slots=True)
class StatusRow:
    dest_account: str
    dest_region: str
    status: str
    failure_code: str | None
    attempts: int
    updated_at: float
    detail: str | None = None


def set_status(account: str, region: str, repository: str, digest: str, dest_account: str, dest_region: str,
               status: str, failure_code: str | None, now: float, attempt: bool = False,
               detail: str | None = None) -> Txn[None]:
    """Record where one image stands at one destination (IN_PROGRESS resets the attempt count)."""
    yield Q("INSERT INTO replication_status (account_id, region, repository, digest, dest_account, dest_region, "
            "status, failure_code, attempts, detail, updated_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) "
            "ON CONFLICT (account_id, region, repository, digest, dest_account, dest_region) DO UPDATE SET "
            "status = excluded.status, failure_code = excluded.failure_code, detail = excluded.detail, "
            "attempts = CASE WHEN excluded.status = 'IN_PROGRESS' THEN 0 "
            "ELSE replication_status.attempts + excluded.attempts END, updated_at = excluded.updated_at",
            (account, region, repository, digest, dest_account, dest_region, status, failure_code,
             1 if attempt else 0, detail, now))


def statuses(account: str, region: str, repository: str, digest: str) -> Txn[list[StatusRow]]:
    rows = yield Q("SELECT dest_account, dest_region, status, failure_code, attempts, updated_at, detail "
                   "FROM replication_status WHERE account_id = ? AND region = ? AND repository = ? AND digest = ? "
                   "ORDER BY dest_region, dest_account", (account, region, repository, digest), "all")
    return [StatusRow(r[0], r[1], r[2], r[3], int(r[4]), float(r[5]), r[6]) for r in rows]


def completed_elsewhere(account: str, region: str, repository: str, digest: str, dest_account: str,
                        dest_region: str) -> Txn[str | None]:
    """Another repository of the registry that holds the blob `digest` and whose images reached the
    destination: a mount source for a peer (the same name exists there, with the blob)."""
    row = yield Q("SELECT r.name FROM repository_blobs rb JOIN repositories r ON r.id = rb.repository_id "
                  "WHERE rb.digest = ? AND r.account_id = ? AND r.region = ? AND r.name <> ? AND EXISTS ("
                  "SELECT 1 FROM replication_status s WHERE s.account_id = r.account_id AND s.region = r.region "
                  "AND s.repository = r.name AND s.dest_account = ? AND s.dest_region = ? AND s.status = 'COMPLETE') "
                  "ORDER BY r.name LIMIT 1", (digest, account, region, repository, dest_account, dest_region), "one")
    return None if row is None else str(row[0])


# peers

@dataclass(frozen=True, slots=True)
class PeerRow:
    name: str
    endpoint: str
    access_key_id: str
    secret_access_key: str
    regions: tuple[str, ...]
    accounts: tuple[str, ...]  # empty: any account
    created_at: float

    def serves(self, account: str, region: str) -> bool:
        return region in self.regions and (not self.accounts or account in self.accounts)


def _split(text: str) -> tuple[str, ...]:
    return tuple(p for p in text.split(",") if p)


def _peer(r: Any) -> PeerRow:
    return PeerRow(r[0], r[1], r[2], r[3], _split(r[4]), _split(r[5]), float(r[6]))


_PEER_COLUMNS = "name, endpoint, access_key_id, secret_access_key, regions, accounts, created_at"


def add_peer(name: str, endpoint: str, key: str, secret: str, regions: Sequence[str], accounts: Sequence[str],
             now: float) -> Txn[bool]:
    """Add or replace a peer; True when it is new."""
    old = yield Q("SELECT 1 FROM replication_peers WHERE name = ?", (name,), "one")
    yield Q(f"INSERT INTO replication_peers ({_PEER_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?) ON CONFLICT (name) "
            "DO UPDATE SET endpoint = excluded.endpoint, access_key_id = excluded.access_key_id, "
            "secret_access_key = excluded.secret_access_key, regions = excluded.regions, "
            "accounts = excluded.accounts", (name, endpoint, key, secret, ",".join(regions), ",".join(accounts), now))
    return old is None


def list_peers() -> Txn[list[PeerRow]]:
    rows = yield Q(f"SELECT {_PEER_COLUMNS} FROM replication_peers ORDER BY name", (), "all")
    return [_peer(r) for r in rows]


def remove_peer(name: str) -> Txn[bool]:
    yield Q("DELETE FROM replication_config_peers WHERE name = ?", (name,))
    n = yield Q("DELETE FROM replication_peers WHERE name = ?", (name,))
    return bool(n)


def config_peer_names() -> Txn[set[str]]:
    """The peers that come from the config file (read-only to `berth peers`)."""
    rows = yield Q("SELECT name FROM replication_config_peers", (), "all")
    return {str(r[0]) for r in rows}


def sync_config_peers(peers: Sequence[tuple[str, str, str, str, Sequence[str], Sequence[str]]],
                      now: float) -> Txn[tuple[list[str], list[str]]]:
    """The config file's peers (name, endpoint, key, sealed secret, regions, accounts) stored, taking over
    a CLI peer of the same name, and the file peers of an earlier start it no longer names removed: (kept,
    removed) names. Nodes starting at once on PostgreSQL take turns (the lock is released at commit); SQLite's
    writer lock already serialises."""
    yield Q("SELECT ?", (MIGRATION_LOCK,), "one", postgres="SELECT pg_advisory_xact_lock(?)")
    before = yield from config_peer_names()
    for name, endpoint, key, secret, regions, accounts in peers:
        yield from add_peer(name, endpoint, key, secret, regions, accounts, now)
        yield Q("INSERT INTO replication_config_peers (name) VALUES (?) ON CONFLICT (name) DO NOTHING", (name,))
    named = {p[0] for p in peers}
    removed = sorted(before - named)
    for name in removed:
        yield from remove_peer(name)
    return sorted(named), removed


# back-fills

@dataclass(frozen=True, slots=True)
class BackfillRow:
    id: str
    account_id: str
    region: str
    dest_account: str
    dest_region: str
    status: str  # as stored: PREPARING, IN_PROGRESS (items queued), STOPPING/STOPPED, FAILED
    failure_code: str | None
    started_at: float
    ended_at: float | None
    total: int
    completed: int
    failed: int
    codes: tuple[str, ...]


_ITEMS = "(SELECT COUNT(*) FROM replication_backfill_items i WHERE i.backfill_id = b.id{})"
_DONE = _ITEMS.format(" AND i.status = 'COMPLETE'")
_FAILED = _ITEMS.format(" AND i.status = 'FAILED'")
_BACKFILL = ("b.id, b.account_id, b.region, b.dest_account, b.dest_region, b.status, b.failure_code, b.started_at, "
             f"b.ended_at, {_ITEMS.format('')}, {_DONE}, {_FAILED}")


def _backfill(r: Any, codes: tuple[str, ...] = ()) -> BackfillRow:
    return BackfillRow(r[0], r[1], r[2], r[3], r[4], r[5], r[6], float(r[7]), None if r[8] is None else float(r[8]),
                       int(r[9]), int(r[10]), int(r[11]), codes)


def start_backfill(backfill_id: str, account: str, region: str, dest_account: str, dest_region: str,
                   now: float) -> Txn[str | None]:
    """A new back-fill, PREPARING; the id of one still running to that destination instead (nothing written)."""
    row = yield Q("SELECT id FROM replication_backfills WHERE account_id = ? AND region = ? AND dest_account = ? "
                  "AND dest_region = ? AND status IN ('PREPARING', 'IN_PROGRESS', 'STOPPING')",
                  (account, region, dest_account, dest_region), "one")
    if row is not None:
        return str(row[0])
    yield Q("INSERT INTO replication_backfills (id, account_id, region, dest_account, dest_region, status, "
            "started_at) VALUES (?, ?, ?, ?, ?, 'PREPARING', ?)",
            (backfill_id, account, region, dest_account, dest_region, now))
    return None


def get_backfill(account: str, region: str, backfill_id: str) -> Txn[BackfillRow | None]:
    row = yield Q(f"SELECT {_BACKFILL} FROM replication_backfills b WHERE b.id = ? AND b.account_id = ? "
                  "AND b.region = ?", (backfill_id, account, region), "one")
    if row is None:
        return None
    codes = yield Q("SELECT DISTINCT failure_code FROM replication_backfill_items WHERE backfill_id = ? "
                    "AND status = 'FAILED' AND failure_code IS NOT NULL ORDER BY failure_code", (backfill_id,), "all")
    return _backfill(row, tuple(c[0] for c in codes))


def list_backfills(account: str, region: str, after: tuple[float, str] | None, limit: int) -> Txn[list[BackfillRow]]:
    """Newest first, keyset-paginated by (started_at, id) descending."""
    where, params = "", ()  # type: tuple[str, tuple[Any, ...]]
    if after is not None:
        where = " AND (b.started_at < ? OR (b.started_at = ? AND b.id < ?))"
        params = (after[0], after[0], after[1])
    rows = yield Q(f"SELECT {_BACKFILL} FROM replication_backfills b WHERE b.account_id = ? AND b.region = ?{where} "
                   "ORDER BY b.started_at DESC, b.id DESC LIMIT ?", (account, region, *params, limit), "all")
    return [_backfill(r) for r in rows]


def set_backfill_status(backfill_id: str, status: str, now: float | None, when: Sequence[str] = (),
                        failure_code: str | None = None) -> Txn[bool]:
    """Move a back-fill to `status` (only from one of `when`, if given); `now` sets its end."""
    cond = f" AND status IN ({', '.join('?' * len(when))})" if when else ""
    n = yield Q(f"UPDATE replication_backfills SET status = ?, ended_at = ?, failure_code = ? WHERE id = ?{cond}",
                (status, now, failure_code, backfill_id, *when))
    return bool(n)


def add_backfill_item(backfill_id: str, repository: str, digest: str, tag: str | None) -> Txn[bool]:
    n = yield Q("INSERT INTO replication_backfill_items (backfill_id, repository, digest, tag, status) "
                "VALUES (?, ?, ?, ?, 'IN_PROGRESS') ON CONFLICT DO NOTHING", (backfill_id, repository, digest, tag))
    return bool(n)


def set_backfill_item(backfill_id: str, repository: str, digest: str, status: str,
                      failure_code: str | None) -> Txn[None]:
    yield Q("UPDATE replication_backfill_items SET status = ?, failure_code = ? WHERE backfill_id = ? "
            "AND repository = ? AND digest = ?", (status, failure_code, backfill_id, repository, digest))


@dataclass(frozen=True, slots=True)
class BackfillItem:
    repository: str
    digest: str
    tag: str | None
    status: str
    failure_code: str | None


def backfill_items(backfill_id: str, status: str | None, after: tuple[str, str], limit: int) -> Txn[list[BackfillItem]]:
    where, params = "", ()  # type: tuple[str, tuple[Any, ...]]
    if status is not None:
        where, params = " AND status = ?", (status,)
    rows = yield Q("SELECT repository, digest, tag, status, failure_code FROM replication_backfill_items "
                   f"WHERE backfill_id = ?{where} AND (repository > ? OR (repository = ? AND digest > ?)) "
                   "ORDER BY repository, digest LIMIT ?",
                   (backfill_id, *params, after[0], after[0], after[1], limit), "all")
    return [BackfillItem(*r) for r in rows]


def repository_names(account: str, region: str) -> Txn[list[str]]:
    rows = yield Q("SELECT name FROM repositories WHERE account_id = ? AND region = ? ORDER BY name",
                   (account, region), "all")
    return [r[0] for r in rows]


def image_digests(account: str, region: str, repository: str) -> Txn[list[tuple[str, list[str]]]]:
    """(digest, its tags in name order) of every image of a repository, in push order."""
    rows = yield Q("SELECT m.digest, t.name FROM manifests m JOIN repositories r ON r.id = m.repository_id "
                   "LEFT JOIN tags t ON t.repository_id = m.repository_id AND t.digest = m.digest "
                   "WHERE r.account_id = ? AND r.region = ? AND r.name = ? ORDER BY m.pushed_at, m.digest, t.name",
                   (account, region, repository), "all")
    out: dict[str, list[str]] = {}
    for digest, tag in rows:
        out.setdefault(digest, [])
        if tag is not None:
            out[digest].append(tag)
    return list(out.items())


def finish_backfill_if_done(backfill_id: str, now: float) -> Txn[bool]:
    """IN_PROGRESS -> COMPLETE (STOPPING -> STOPPED) once no image of the back-fill is still in progress."""
    n = yield Q("UPDATE replication_backfills SET status = CASE WHEN status = 'STOPPING' THEN 'STOPPED' "
                "ELSE 'COMPLETE' END, ended_at = ? WHERE id = ? AND status IN ('IN_PROGRESS', 'STOPPING') "
                "AND NOT EXISTS (SELECT 1 FROM replication_backfill_items i WHERE i.backfill_id = ? "
                "AND i.status = 'IN_PROGRESS')", (now, backfill_id, backfill_id))
    return bool(n)
