"""The jobs queue, in SQL: a transactional outbox and a work queue in one table.

`enqueue` is meant to be `yield from`-ed inside another operation's transaction, so that a change and
the job it causes commit or roll back together. The rest is the worker's side: claim with a lease,
heartbeat, complete, fail (back to `queued` with a later `run_at`, or `dead` after `max_attempts`),
release, reap expired leases, and periodic schedules.

States: queued -> running -> done, or -> queued again (failed, retried later), or -> dead (last error kept).

Unique keys: at most one *live* (queued or running) row per (kind, key); NULL keys never collide.
Enqueueing a key that is live coalesces into that row: the newest payload wins (it describes the
latest change), `run_at` becomes the earlier of the two, attempts carry on. When the live row is
already running, it is marked `rerun`: on completion it goes back to `queued` with the new payload
instead of `done`, so a change made while its job runs is never lost and two runs of one key never
overlap.

Claiming: PostgreSQL `FOR UPDATE SKIP LOCKED` (concurrent claimers take disjoint rows); SQLite has one
writer at a time (BEGIN IMMEDIATE), which serialises claimers across processes.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from enum import Enum
from typing import Any

from berth.db.store import Q, Txn, lease

QUEUED, RUNNING, DONE, DEAD = "queued", "running", "done", "dead"
STATES = (QUEUED, RUNNING, DONE, DEAD)
LIVE = "state IN ('queued', 'running')"  # the predicate of ix_jobs_live_key
DEFAULT_MAX_ATTEMPTS = 8
PERIODIC_KEY = "periodic"


@dataclass(frozen=True, slots=True)
class Job:
    """A job as a worker or an operator sees it (payload decoded)."""

    id: int
    kind: str
    key: str | None
    payload: dict[str, Any]
    state: str
    attempts: int
    max_attempts: int
    run_at: float
    lease_owner: str | None
    lease_until: float | None
    last_error: str | None
    created_at: float
    updated_at: float


@dataclass(frozen=True, slots=True)
class NewJob:
    kind: str
    payload: Mapping[str, Any]
    key: str | None = None
    run_at: float | None = None  # None: now


@dataclass(frozen=True, slots=True)
class KindStats:
    kind: str
    counts: dict[str, int]  # state -> rows
    oldest_queued: float | None  # created_at of the oldest queued row


class Retry(Enum):
    QUEUED = "queued"
    UNKNOWN = "unknown"
    LIVE = "live"  # still queued or running: nothing to retry
    DUPLICATE = "duplicate"  # another live row holds its key


_COLUMNS = ("id, kind, key, payload, state, attempts, max_attempts, run_at, lease_owner, lease_until, "
            "last_error, created_at, updated_at")


def _job(row: Sequence[Any]) -> Job:
    return Job(int(row[0]), row[1], row[2], json.loads(row[3]), row[4], int(row[5]), int(row[6]), float(row[7]),
               row[8], None if row[9] is None else float(row[9]), row[10], float(row[11]), float(row[12]))


def _marks(n: int) -> str:
    return ", ".join("?" * n)


def encode(payload: Mapping[str, Any]) -> str:
    return json.dumps(payload, separators=(",", ":"), sort_keys=True)


# the producer's side: inside the caller's transaction

_ENQUEUE = (
    "INSERT INTO jobs (kind, key, payload, state, attempts, max_attempts, run_at, created_at, updated_at) "
    f"VALUES (?, ?, ?, 'queued', 0, {DEFAULT_MAX_ATTEMPTS}, ?, ?, ?) "
    f"ON CONFLICT (kind, key) WHERE {LIVE} DO UPDATE SET "
    "payload = excluded.payload, "
    "run_at = CASE WHEN jobs.state = 'running' OR excluded.run_at < jobs.run_at "
    "THEN excluded.run_at ELSE jobs.run_at END, "
    "rerun = CASE WHEN jobs.state = 'running' THEN 1 ELSE jobs.rerun END, "
    "updated_at = excluded.updated_at "
    "RETURNING id"
)


def enqueue(kind: str, payload: Mapping[str, Any], now: float, key: str | None = None,
            run_at: float | None = None) -> Txn[int]:
    """Queue a job (or coalesce into the live job with the same key); its id. `yield from` it.
    Its retry policy (attempts, backoff) is its kind's, registered with the handler."""
    row = yield Q(_ENQUEUE, (kind, key, encode(payload), now if run_at is None else run_at, now, now), "one")
    return int(row[0])


def enqueue_many(jobs: Iterable[NewJob], now: float) -> Txn[list[int]]:
    ids = []
    for j in jobs:
        ids.append((yield from enqueue(j.kind, j.payload, now, j.key, j.run_at)))
    return ids


# the worker's side

_CLAIM = (
    "UPDATE jobs SET state = 'running', attempts = attempts + 1, lease_owner = ?, lease_until = ?, "
    "updated_at = ? WHERE id IN (SELECT id FROM jobs WHERE state = 'queued' AND run_at <= ?{kinds} "
    "ORDER BY run_at LIMIT ?{lock}) RETURNING " + _COLUMNS
)


@lease  # a claim lost in a crash: the job is still queued and is claimed again
def claim(owner: str, now: float, lease: float, limit: int, kinds: Sequence[str] | None = None) -> Txn[list[Job]]:
    """Lease up to `limit` due jobs (of `kinds`, or any) to `owner` until now + lease; oldest run_at first."""
    where = f" AND kind IN ({_marks(len(kinds))})" if kinds else ""
    params = (owner, now + lease, now, now, *(kinds or ()), limit)
    rows = yield Q(_CLAIM.format(kinds=where, lock=""), params, "all",
                   postgres=_CLAIM.format(kinds=where, lock=" FOR UPDATE SKIP LOCKED"))
    return sorted((_job(r) for r in rows), key=lambda j: (j.run_at, j.id))


def any_due(now: float, kinds: Sequence[str] | None = None) -> Txn[bool]:
    """A cheap read before a claim (which is a write): is anything due?"""
    where = f" AND kind IN ({_marks(len(kinds))})" if kinds else ""
    row = yield Q(f"SELECT 1 FROM jobs WHERE state = 'queued' AND run_at <= ?{where} LIMIT 1",
                  (now, *(kinds or ())), "one")
    return row is not None


def _ids_clause(ids: Sequence[int]) -> str:
    return f"id IN ({_marks(len(ids))})"


@lease
def heartbeat(owner: str, ids: Sequence[int], now: float, lease: float) -> Txn[int]:
    """Extend the leases `owner` still holds; how many it still holds."""
    if not ids:
        return 0
    n: int = yield Q(f"UPDATE jobs SET lease_until = ?, updated_at = ? WHERE lease_owner = ? AND state = 'running' "
                     f"AND {_ids_clause(ids)}", (now + lease, now, owner, *ids))
    return n


def complete(owner: str, ids: Sequence[int], now: float) -> Txn[int]:
    """Mark jobs done (or queued again when enqueued while running); ignores leases `owner` lost."""
    if not ids:
        return 0
    n: int = yield Q(
        "UPDATE jobs SET state = CASE WHEN rerun = 1 THEN 'queued' ELSE 'done' END, "
        "attempts = CASE WHEN rerun = 1 THEN 0 ELSE attempts END, rerun = 0, "
        "lease_owner = NULL, lease_until = NULL, updated_at = ? "
        f"WHERE lease_owner = ? AND state = 'running' AND {_ids_clause(ids)}", (now, owner, *ids))
    return n


def fail(owner: str, job_id: int, error: str, now: float, retry_at: float,
         max_attempts: int = DEFAULT_MAX_ATTEMPTS) -> Txn[str | None]:
    """Record a failed attempt: queued again at `retry_at`, or dead once `max_attempts` (the kind's policy,
    recorded on the row) are spent. The job's new state, or None when `owner` no longer holds it."""
    row = yield Q(
        "UPDATE jobs SET state = CASE WHEN attempts >= ? THEN 'dead' ELSE 'queued' END, "
        "run_at = CASE WHEN attempts >= ? THEN run_at ELSE ? END, rerun = 0, max_attempts = ?, "
        "lease_owner = NULL, lease_until = NULL, last_error = ?, updated_at = ? "
        "WHERE id = ? AND lease_owner = ? AND state = 'running' RETURNING state",
        (max_attempts, max_attempts, retry_at, max_attempts, error[:4000], now, job_id, owner), "one")
    return None if row is None else str(row[0])


def release(owner: str, now: float) -> Txn[int]:
    """Give back every job `owner` holds (a graceful stop): queued at once, the interrupted attempt not counted."""
    n: int = yield Q(
        "UPDATE jobs SET state = 'queued', attempts = CASE WHEN attempts > 0 THEN attempts - 1 ELSE 0 END, "
        "rerun = 0, lease_owner = NULL, lease_until = NULL, updated_at = ? "
        "WHERE lease_owner = ? AND state = 'running'", (now, owner))
    return n


def reap(now: float) -> Txn[int]:
    """Jobs whose lease expired (their worker died): queued again, or dead when their attempts are spent."""
    n: int = yield Q(
        "UPDATE jobs SET state = CASE WHEN attempts >= max_attempts THEN 'dead' ELSE 'queued' END, "
        "rerun = 0, last_error = 'lease expired (worker ' || COALESCE(lease_owner, '') || ' lost)', "
        "lease_owner = NULL, lease_until = NULL, updated_at = ? "
        "WHERE state = 'running' AND lease_until < ?", (now, now))
    return n


def prune(done_before: float, dead_before: float, limit: int = 10_000) -> Txn[int]:
    """Delete finished rows past their retention, at most `limit` per call."""
    n: int = yield Q(
        "DELETE FROM jobs WHERE id IN (SELECT id FROM jobs WHERE (state = 'done' AND updated_at < ?) "
        "OR (state = 'dead' AND updated_at < ?) LIMIT ?)", (done_before, dead_before, limit))
    return n


# periodic schedules: one row per kind; the conditional update on next_run is the claim

def ensure_periodic(schedules: Sequence[tuple[str, float]], now: float) -> Txn[None]:
    """Create each (kind, interval) schedule, due now; an existing one takes the new interval (and is not
    left due later than one new interval from now)."""
    for kind, interval in schedules:
        yield Q("INSERT INTO periodic (kind, interval_seconds, next_run) VALUES (?, ?, ?) "
                "ON CONFLICT (kind) DO UPDATE SET interval_seconds = excluded.interval_seconds, "
                "next_run = CASE WHEN periodic.next_run > ? THEN ? ELSE periodic.next_run END",
                (kind, interval, now, now + interval, now + interval))


def next_periodic(kinds: Sequence[str]) -> Txn[float | None]:
    if not kinds:
        return None
    row = yield Q(f"SELECT MIN(next_run) FROM periodic WHERE kind IN ({_marks(len(kinds))})", tuple(kinds), "one")
    return None if row is None or row[0] is None else float(row[0])


def tick_periodic(owner: str, kinds: Sequence[str], now: float) -> Txn[list[str]]:
    """Enqueue one job for each due schedule this node runs; the kinds it enqueued. Of many nodes ticking at
    once exactly one wins each due row: SQLite serialises writers, and on PostgreSQL the losers' UPDATE waits
    for the winner's row lock and then sees next_run in the future."""
    if not kinds:
        return []
    rows = yield Q(f"SELECT kind, interval_seconds FROM periodic WHERE next_run <= ? AND kind IN "
                   f"({_marks(len(kinds))})", (now, *kinds), "all")
    won = []
    for kind, interval in rows:
        n = yield Q("UPDATE periodic SET next_run = ?, last_owner = ?, last_run = ? WHERE kind = ? AND next_run <= ?",
                    (now + float(interval), owner, now, kind, now))
        if n:
            yield from enqueue(kind, {}, now, key=PERIODIC_KEY)
            won.append(kind)
    return won


# operators

def get_job(job_id: int) -> Txn[Job | None]:
    row = yield Q(f"SELECT {_COLUMNS} FROM jobs WHERE id = ?", (job_id,), "one")
    return None if row is None else _job(row)


def list_jobs(state: str | None = None, kind: str | None = None, limit: int = 50) -> Txn[list[Job]]:
    """The newest jobs first, optionally of one state and one kind."""
    where, params = [], []
    if state is not None:
        where.append("state = ?")
        params.append(state)
    if kind is not None:
        where.append("kind = ?")
        params.append(kind)
    clause = f" WHERE {' AND '.join(where)}" if where else ""
    rows = yield Q(f"SELECT {_COLUMNS} FROM jobs{clause} ORDER BY id DESC LIMIT ?", (*params, limit), "all")
    return [_job(r) for r in rows]


def stats() -> Txn[list[KindStats]]:
    rows = yield Q("SELECT kind, state, COUNT(*), MIN(created_at) FROM jobs GROUP BY kind, state ORDER BY kind, state",
                   (), "all")
    out: dict[str, KindStats] = {}
    for kind, state, count, oldest in rows:
        ks = out.setdefault(kind, KindStats(kind, {}, None))
        ks.counts[state] = int(count)
        if state == QUEUED:
            out[kind] = KindStats(kind, ks.counts, float(oldest))
    return list(out.values())


def retry(job_id: int, now: float) -> Txn[Retry]:
    """Queue a dead (or done) job again now, with its attempts reset."""
    row = yield Q("SELECT kind, key, state FROM jobs WHERE id = ?", (job_id,), "one")
    if row is None:
        return Retry.UNKNOWN
    kind, key, state = row
    if state in (QUEUED, RUNNING):
        return Retry.LIVE
    if key is not None:
        twin = yield Q(f"SELECT id FROM jobs WHERE kind = ? AND key = ? AND {LIVE}", (kind, key), "one")
        if twin is not None:
            return Retry.DUPLICATE
    # Conditional on the state read above, and the partial unique index on live keys refuses a second live
    # twin: two retries at once queue the job once (the other sees LIVE, or DUPLICATE after a retry).
    n = yield Q("UPDATE jobs SET state = 'queued', attempts = 0, rerun = 0, run_at = ?, updated_at = ? "
                "WHERE id = ? AND state NOT IN ('queued', 'running')", (now, now, job_id))
    return Retry.QUEUED if n else Retry.LIVE
