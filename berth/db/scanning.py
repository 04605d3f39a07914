"""Scanning's metadata: the vulnerability database (records, affected packages, state, sources), the
registry scanning configuration, and one row per scanned image, as Txn generators.

Atomicity: `upsert_records` reads the stored `modified` of its batch and writes only newer records in the
same transaction; the single `vulndb_state` row is bumped (and locked FOR UPDATE on PostgreSQL) whenever
anything changed, so two concurrent imports serialise on it. `request_scan` decides the basic-scan quota
under the image's manifest row lock (the scan row may not exist yet).
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from berth.db.jobs import enqueue
from berth.db.store import Q, Txn

SCAN_JOB = "scanning.scan"  # payload: repository id, account, region, name, digest
REMATCH_JOB = "scanning.rematch"  # the vulndb changed: re-match stored inventories (coalesced, one key)


def _marks(n: int) -> str:
    return ", ".join("?" * n)


def _dumps(v: Any) -> str:
    return json.dumps(v, separators=(",", ":"), sort_keys=True)


@dataclass(frozen=True, slots=True)
class NewRecord:
    id: str
    modified: str
    modified_ts: float
    severity: str
    score: float | None
    body: dict[str, Any]
    affected: list[tuple[str, str, dict[str, Any]]]  # (ecosystem, name, data)


@dataclass(frozen=True, slots=True)
class Upserted:
    new: int
    replaced: int
    unchanged: int


def upsert_records(records: Sequence[NewRecord], source: str, now: float) -> Txn[Upserted]:
    """Store records that are new or whose `modified` is newer than the stored one; the rest are left."""
    new = replaced = 0
    stored: dict[str, float] = {}
    ids = list(dict.fromkeys(r.id for r in records))
    for i in range(0, len(ids), 500):
        chunk = ids[i:i + 500]
        rows = yield Q(f"SELECT id, modified_ts FROM vuln_records WHERE id IN ({_marks(len(chunk))})",
                       tuple(chunk), "all", lock="UPDATE")
        stored.update((r[0], float(r[1])) for r in rows)
    seen: dict[str, NewRecord] = {}
    for r in records:  # the newest of one id within the batch
        if r.id not in seen or r.modified_ts > seen[r.id].modified_ts:
            seen[r.id] = r
    for r in seen.values():
        old = stored.get(r.id)
        if old is not None and old >= r.modified_ts:
            continue
        if old is None:
            new += 1
        else:
            replaced += 1
            yield Q("DELETE FROM vuln_affected WHERE record_id = ?", (r.id,))
        yield Q("INSERT INTO vuln_records (id, modified, modified_ts, source, severity, score, body, imported_at) "
                "VALUES (?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT (id) DO UPDATE SET modified = excluded.modified, "
                "modified_ts = excluded.modified_ts, source = excluded.source, severity = excluded.severity, "
                "score = excluded.score, body = excluded.body, imported_at = excluded.imported_at",
                (r.id, r.modified, r.modified_ts, source, r.severity, r.score, _dumps(r.body), now))
        for seq, (eco, name, data) in enumerate(r.affected):
            yield Q("INSERT INTO vuln_affected (record_id, seq, ecosystem, name, data) VALUES (?, ?, ?, ?, ?)",
                    (r.id, seq, eco, name, _dumps(data)))
    if new or replaced:
        yield from bump_generation(now)
    return Upserted(new, replaced, len(records) - new - replaced)


def bump_generation(now: float) -> Txn[int]:
    row = yield Q("INSERT INTO vulndb_state (id, generation, updated_at) VALUES (1, 1, ?) ON CONFLICT (id) DO "
                  "UPDATE SET generation = vulndb_state.generation + 1, updated_at = excluded.updated_at "
                  "RETURNING generation", (now,), "one")
    yield from enqueue(REMATCH_JOB, {"generation": int(row[0])}, now, key="all")
    return int(row[0])


def generation() -> Txn[int]:
    row = yield Q("SELECT generation FROM vulndb_state WHERE id = 1", (), "one")
    return 0 if row is None else int(row[0])


def record_source(name: str, now: float, records: int, changed: int, failed: int) -> Txn[None]:
    yield Q("INSERT INTO vulndb_sources (name, imported_at, records, changed, failed) VALUES (?, ?, ?, ?, ?) "
            "ON CONFLICT (name) DO UPDATE SET imported_at = excluded.imported_at, records = excluded.records, "
            "changed = excluded.changed, failed = excluded.failed", (name, now, records, changed, failed))


@dataclass(frozen=True, slots=True)
class VulnStatus:
    generation: int
    updated_at: float | None
    records: int
    newest_modified: str | None
    by_ecosystem: dict[str, int]
    sources: list[tuple[str, float, int, int, int]]


def status() -> Txn[VulnStatus]:
    state = yield Q("SELECT generation, updated_at FROM vulndb_state WHERE id = 1", (), "one")
    count = yield Q("SELECT COUNT(*), MAX(modified) FROM vuln_records", (), "one")
    ecos = yield Q("SELECT ecosystem, COUNT(DISTINCT record_id) FROM vuln_affected GROUP BY ecosystem "
                   "ORDER BY ecosystem", (), "all")
    sources = yield Q("SELECT name, imported_at, records, changed, failed FROM vulndb_sources ORDER BY name",
                      (), "all")
    return VulnStatus(0 if state is None else int(state[0]), None if state is None else float(state[1]),
                      int(count[0]), count[1], {r[0]: int(r[1]) for r in ecos},
                      [(r[0], float(r[1]), int(r[2]), int(r[3]), int(r[4])) for r in sources])


@dataclass(frozen=True, slots=True)
class AffectedRow:
    ecosystem: str
    name: str
    data: dict[str, Any]
    record_id: str
    severity: str
    score: float | None
    body: dict[str, Any]


def affected_for(packages: Iterable[tuple[str, str]]) -> Txn[list[AffectedRow]]:
    """Every affected entry naming one of the (ecosystem, name) pairs, with its record."""
    by_eco: dict[str, list[str]] = {}
    for eco, name in set(packages):
        by_eco.setdefault(eco, []).append(name)
    out = []
    for eco, names in sorted(by_eco.items()):
        names.sort()
        for i in range(0, len(names), 500):
            chunk = names[i:i + 500]
            rows = yield Q("SELECT a.ecosystem, a.name, a.data, r.id, r.severity, r.score, r.body FROM vuln_affected a "
                           "JOIN vuln_records r ON r.id = a.record_id "
                           f"WHERE a.ecosystem = ? AND a.name IN ({_marks(len(chunk))})", (eco, *chunk), "all")
            out += [AffectedRow(r[0], r[1], json.loads(r[2]), r[3], r[4], None if r[5] is None else float(r[5]),
                                json.loads(r[6])) for r in rows]
    return out


# registry scanning configuration

def get_registry_config(account: str, region: str) -> Txn[tuple[str, list[dict[str, Any]]]]:
    row = yield Q("SELECT scan_type, rules FROM registry_scanning WHERE account_id = ? AND region = ?",
                  (account, region), "one")
    return ("BASIC", []) if row is None else (row[0], json.loads(row[1]))


def put_registry_config(account: str, region: str, scan_type: str, rules: list[dict[str, Any]]) -> Txn[None]:
    yield Q("INSERT INTO registry_scanning (account_id, region, scan_type, rules) VALUES (?, ?, ?, ?) "
            "ON CONFLICT (account_id, region) DO UPDATE SET scan_type = excluded.scan_type, rules = excluded.rules",
            (account, region, scan_type, _dumps(rules)))


# image scans

@dataclass(frozen=True, slots=True)
class ScanRow:
    repository_id: int
    digest: str
    status: str
    description: str
    scan_type: str
    requested_at: float
    completed_at: float | None
    generation: int
    inventory: dict[str, Any] | None
    findings: list[dict[str, Any]] | None
    continuous: bool


_SCAN_COLUMNS = ("repository_id, digest, status, description, scan_type, requested_at, completed_at, generation, "
                 "inventory, findings, continuous")


def _scan(r: Any) -> ScanRow:
    return ScanRow(int(r[0]), r[1], r[2], r[3], r[4], float(r[5]), None if r[6] is None else float(r[6]),
                   int(r[7]), None if r[8] is None else json.loads(r[8]), None if r[9] is None else json.loads(r[9]),
                   bool(r[10]))


def get_scan(repo_id: int, digest: str, with_data: bool = True) -> Txn[ScanRow | None]:
    cols = _SCAN_COLUMNS if with_data else _SCAN_COLUMNS.replace("inventory, findings", "NULL, NULL")
    row = yield Q(f"SELECT {cols} FROM image_scans WHERE repository_id = ? AND digest = ?", (repo_id, digest), "one")
    return None if row is None else _scan(row)


def scan_summaries(repo_id: int, digests: Sequence[str]) -> Txn[dict[str, ScanRow]]:
    """Scan rows with their findings (for the summary counts), without inventories."""
    out: dict[str, ScanRow] = {}
    cols = _SCAN_COLUMNS.replace("inventory, ", "NULL, ")
    for i in range(0, len(digests), 500):
        chunk = digests[i:i + 500]
        rows = yield Q(f"SELECT {cols} FROM image_scans WHERE repository_id = ? AND digest IN ({_marks(len(chunk))})",
                       (repo_id, *chunk), "all")
        out.update((r[1], _scan(r)) for r in rows)
    return out


def request_scan(repo_id: int, account: str, region: str, name: str, digest: str, scan_type: str,
                 continuous: bool, now: float, quota_seconds: float | None) -> Txn[ScanRow | None]:
    """Mark the image IN_PROGRESS and queue its scan job; None (nothing written) when a scan of it was
    requested less than `quota_seconds` ago (ECR's basic-scan quota). The image's manifest row is locked
    first: before its first scan there is no scan row to lock, and two first requests would both pass."""
    yield Q("SELECT digest FROM manifests WHERE repository_id = ? AND digest = ?", (repo_id, digest), "one",
            lock="UPDATE")
    row = yield Q(f"SELECT {_SCAN_COLUMNS.replace('inventory, findings', 'NULL, NULL')} FROM image_scans "
                  "WHERE repository_id = ? AND digest = ?", (repo_id, digest), "one", lock="UPDATE")
    if row is not None and quota_seconds is not None and now - float(row[5]) < quota_seconds:
        return None
    yield Q("INSERT INTO image_scans (repository_id, digest, status, description, scan_type, requested_at, "
            "generation, continuous) VALUES (?, ?, 'IN_PROGRESS', 'The scan is in progress.', ?, ?, 0, ?) "
            "ON CONFLICT (repository_id, digest) DO UPDATE SET status = 'IN_PROGRESS', "
            "description = excluded.description, scan_type = excluded.scan_type, "
            "requested_at = excluded.requested_at, continuous = excluded.continuous",
            (repo_id, digest, scan_type, now, int(continuous)))
    yield from enqueue(SCAN_JOB, {"repositoryId": repo_id, "account": account, "region": region,
                                  "repository": name, "digest": digest}, now, key=f"{repo_id}@{digest}")
    got = yield from get_scan(repo_id, digest, with_data=False)
    return got


def finish_scan(repo_id: int, digest: str, status: str, description: str, now: float, generation: int,
                inventory: dict[str, Any] | None, findings: list[dict[str, Any]] | None) -> Txn[bool]:
    """Record a scan's result; False when the image (or its scan row) is gone."""
    n = yield Q("UPDATE image_scans SET status = ?, description = ?, completed_at = ?, generation = ?, "
                "inventory = ?, findings = ? WHERE repository_id = ? AND digest = ? AND EXISTS "
                "(SELECT 1 FROM manifests m WHERE m.repository_id = image_scans.repository_id "
                "AND m.digest = image_scans.digest)",
                (status, description, now, generation, None if inventory is None else _dumps(inventory),
                 None if findings is None else _dumps(findings), repo_id, digest))
    return bool(n)


def update_findings(repo_id: int, digest: str, generation: int, findings: list[dict[str, Any]],
                    now: float) -> Txn[None]:
    """New findings of a stored inventory; a FINDINGS_UNAVAILABLE scan becomes COMPLETE."""
    yield Q("UPDATE image_scans SET findings = ?, generation = ?, completed_at = ?, status = 'COMPLETE', "
            "description = 'The scan was completed successfully.' "
            "WHERE repository_id = ? AND digest = ? AND status IN ('COMPLETE', 'FINDINGS_UNAVAILABLE')",
            (_dumps(findings), generation, now, repo_id, digest))


@dataclass(frozen=True, slots=True)
class Stored:
    repository_id: int
    account: str
    region: str
    repository: str
    digest: str
    scan_type: str
    generation: int


def continuous_scans(before_generation: int, after: tuple[int, str], limit: int) -> Txn[list[Stored]]:
    """Images matched against an older vulndb generation, in key order: COMPLETE continuously scanned ones, and
    FINDINGS_UNAVAILABLE ones (scanned before any vulnerability data existed), continuous or not."""
    rows = yield Q("SELECT s.repository_id, r.account_id, r.region, r.name, s.digest, s.scan_type, s.generation "
                   "FROM image_scans s JOIN repositories r ON r.id = s.repository_id "
                   "WHERE ((s.status = 'COMPLETE' AND s.continuous = 1) OR s.status = 'FINDINGS_UNAVAILABLE') "
                   "AND s.generation < ? "
                   "AND (s.repository_id > ? OR (s.repository_id = ? AND s.digest > ?)) "
                   "ORDER BY s.repository_id, s.digest LIMIT ?",
                   (before_generation, after[0], after[0], after[1], limit), "all")
    return [Stored(int(r[0]), r[1], r[2], r[3], r[4], r[5], int(r[6])) for r in rows]


# signing

SIGN_JOB = "signing.sign"  # payload: repository id, account, region, name, digest, profile ARN


def get_signing_config(account: str, region: str) -> Txn[list[dict[str, Any]] | None]:
    row = yield Q("SELECT rules FROM signing_config WHERE account_id = ? AND region = ?", (account, region), "one")
    return None if row is None else json.loads(row[0])


def put_signing_config(account: str, region: str, rules: list[dict[str, Any]]) -> Txn[None]:
    yield Q("INSERT INTO signing_config (account_id, region, rules) VALUES (?, ?, ?) ON CONFLICT (account_id, region) "
            "DO UPDATE SET rules = excluded.rules", (account, region, _dumps(rules)))


def delete_signing_config(account: str, region: str) -> Txn[list[dict[str, Any]] | None]:
    row = yield Q("DELETE FROM signing_config WHERE account_id = ? AND region = ? RETURNING rules",
                  (account, region), "one")
    return None if row is None else json.loads(row[0])


def get_profile_key(account: str, name: str) -> Txn[tuple[str, str] | None]:
    row = yield Q("SELECT private_key, public_key FROM signing_profiles WHERE account_id = ? AND name = ?",
                  (account, name), "one")
    return None if row is None else (row[0], row[1])


def put_profile_key(account: str, name: str, private_pem: str, public_pem: str, now: float,
                    replace: bool) -> Txn[bool]:
    """Store a profile's key; when not `replace`, an existing key is kept (False)."""
    if replace:
        yield Q("INSERT INTO signing_profiles (account_id, name, private_key, public_key, created_at) "
                "VALUES (?, ?, ?, ?, ?) ON CONFLICT (account_id, name) DO UPDATE SET "
                "private_key = excluded.private_key, public_key = excluded.public_key, "
                "created_at = excluded.created_at",
                (account, name, private_pem, public_pem, now))
        return True
    n = yield Q("INSERT INTO signing_profiles (account_id, name, private_key, public_key, created_at) "
                "VALUES (?, ?, ?, ?, ?) ON CONFLICT (account_id, name) DO NOTHING",
                (account, name, private_pem, public_pem, now))
    return bool(n)


def request_signing(repo_id: int, account: str, region: str, name: str, digest: str, profile_arns: Sequence[str],
                    now: float) -> Txn[None]:
    for arn in profile_arns:
        yield Q("INSERT INTO image_signatures (repository_id, digest, profile_arn, status, updated_at) "
                "VALUES (?, ?, ?, 'IN_PROGRESS', ?) ON CONFLICT (repository_id, digest, profile_arn) DO UPDATE SET "
                "status = 'IN_PROGRESS', failure_code = NULL, failure_reason = NULL, updated_at = excluded.updated_at",
                (repo_id, digest, arn, now))
        yield from enqueue(SIGN_JOB, {"repositoryId": repo_id, "account": account, "region": region,
                                      "repository": name, "digest": digest, "profileArn": arn}, now,
                           key=f"{repo_id}@{digest}@{arn}")


def finish_signing(repo_id: int, digest: str, arn: str, status: str, code: str | None, reason: str | None,
                   signature: str | None, now: float) -> Txn[None]:
    yield Q("UPDATE image_signatures SET status = ?, failure_code = ?, failure_reason = ?, signature_digest = ?, "
            "updated_at = ? WHERE repository_id = ? AND digest = ? AND profile_arn = ?",
            (status, code, reason, signature, now, repo_id, digest, arn))


def signing_statuses(repo_id: int, digest: str) -> Txn[list[tuple[str, str, str | None, str | None]]]:
    rows = yield Q("SELECT profile_arn, status, failure_code, failure_reason FROM image_signatures "
                   "WHERE repository_id = ? AND digest = ? ORDER BY profile_arn", (repo_id, digest), "all")
    return [(r[0], r[1], r[2], r[3]) for r in rows]
