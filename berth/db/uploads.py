"""Upload sessions, as Txn generators: the committed size, the driver's state, and writer claims.

A row is written by the first request that brings bytes (a signed upload id needs none before:
berth/registry/uploads.py) or at start (ECR's UUID ids). An ended session (finished, cancelled,
dropped) keeps its row as a tombstone, size ENDED, so that its id is never taken for a fresh one;
the purge deletes rows, tombstones too, once older than the maximum upload age.

Atomicity: every decision is one conditional UPDATE or DELETE on the upload's row, so SQLite's
single writer and PostgreSQL's row lock (READ COMMITTED re-checks the WHERE clause after waiting
for a concurrent writer) give the same answer: of writers racing for one offset exactly one
claims it. A claim is a random token with an expiry; the writer holding it commits the new size
(`advance_upload`) or finishes the upload (`finish_upload`) only while its token is still there.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum
from typing import Any

from berth.db.registry import link_blob
from berth.db.store import Q, Txn, lease

ENDED = -1  # the size of a tombstone


@dataclass(frozen=True, slots=True)
class Upload:
    id: str
    repository_id: int
    size: int  # committed: bytes acknowledged to the client; ENDED for a tombstone
    state: str | None  # the BlobStore driver's opaque state for resuming at `size`; None: not begun
    created_at: float

    @property
    def ended(self) -> bool:
        return self.size < 0


class ClaimOutcome(Enum):
    CLAIMED = "claimed"
    UNKNOWN = "unknown"  # no such upload in this repository
    MOVED = "moved"  # the committed size is not the offset asked for
    BUSY = "busy"  # another writer holds an unexpired claim


@dataclass(frozen=True, slots=True)
class Claim:
    outcome: ClaimOutcome
    upload: Upload | None  # as claimed, or as it stands (None when unknown)


_COLUMNS = "id, repository_id, size, state, created_at"


def _upload(row: Any) -> Upload | None:
    return None if row is None else Upload(row[0], int(row[1]), int(row[2]), row[3], float(row[4]))


def create_upload(upload_id: str, repo_id: int, now: float) -> Txn[None]:
    yield Q("INSERT INTO uploads (id, repository_id, created_at, size) VALUES (?, ?, ?, 0)", (upload_id, repo_id, now))


def get_upload(upload_id: str, repo_id: int) -> Txn[Upload | None]:
    row = yield Q(f"SELECT {_COLUMNS} FROM uploads WHERE id = ? AND repository_id = ?", (upload_id, repo_id), "one")
    return _upload(row)


@lease  # a claim lost in a crash loses nothing: the write it guards ends with a durable commit
def claim_upload(upload_id: str, repo_id: int, size: int | None, token: str, now: float, expires: float,
                 fresh_since: float | None = None) -> Txn[Claim]:
    """Claim the upload for one writer at committed size `size` (None: at whatever size it has).
    `fresh_since`: the id is a valid one minted then, so a missing row is an empty session."""
    if fresh_since is not None:
        yield Q("INSERT INTO uploads (id, repository_id, created_at, size) VALUES (?, ?, ?, 0) "
                "ON CONFLICT (id) DO NOTHING", (upload_id, repo_id, fresh_since))
    at = " AND size >= 0" if size is None else " AND size = ?"
    row = yield Q(f"UPDATE uploads SET claim = ?, claim_expires = ? WHERE id = ? AND repository_id = ?{at} "
                  f"AND (claim IS NULL OR claim_expires < ?) RETURNING {_COLUMNS}",
                  (token, expires, upload_id, repo_id, *(() if size is None else (size,)), now), "one")
    if row is not None:
        return Claim(ClaimOutcome.CLAIMED, _upload(row))
    current = yield from get_upload(upload_id, repo_id)
    if current is None or current.ended:
        return Claim(ClaimOutcome.UNKNOWN, None)
    return Claim(ClaimOutcome.MOVED if size is not None and current.size != size else ClaimOutcome.BUSY, current)


@lease
def renew_claim(upload_id: str, token: str, expires: float) -> Txn[bool]:
    n = yield Q("UPDATE uploads SET claim_expires = ? WHERE id = ? AND claim = ?", (expires, upload_id, token))
    return bool(n)


@lease
def release_claim(upload_id: str, token: str) -> Txn[None]:
    yield Q("UPDATE uploads SET claim = NULL, claim_expires = NULL WHERE id = ? AND claim = ?", (upload_id, token))


@lease  # with the bytes it counts, which reach the disk only at the commit (a 202 is not a durability promise)
def advance_upload(upload_id: str, token: str, size: int, state: str) -> Txn[bool]:
    """Commit the claim holder's bytes: the new committed size and driver state; releases the claim.
    False (nothing written) when the claim was lost: taken over after expiry, or the upload dropped."""
    n = yield Q("UPDATE uploads SET size = ?, state = ?, claim = NULL, claim_expires = NULL "
                "WHERE id = ? AND claim = ?", (size, state, upload_id, token))
    return bool(n)


def finish_upload(upload_id: str, token: str, repo_id: int, digest: str, size: int, now: float) -> Txn[bool]:
    """End the claimed session and link its blob, or nothing (False) when the claim was lost."""
    n = yield Q("UPDATE uploads SET size = -1, claim = NULL, claim_expires = NULL WHERE id = ? AND claim = ?",
                (upload_id, token))
    if not n:
        return False
    yield from link_blob(repo_id, digest, size, now)
    return True


class EndOutcome(Enum):
    ENDED = "ended"  # it was in progress: `upload` says what to delete from storage
    FRESH = "fresh"  # it had no row (nothing stored): a tombstone now says it ended
    UNKNOWN = "unknown"  # no such session in this repository, or it had ended already


@dataclass(frozen=True, slots=True)
class End:
    outcome: EndOutcome
    upload: Upload | None


def finish_unclaimed(upload_id: str, repo_id: int, at: int, digest: str, size: int, now: float,
                     fresh_since: float | None = None) -> Txn[End]:
    """End a session whose committed size is `at` and which no writer holds, linking the blob
    (`size` bytes): the claim and the finish in one statement, for a PUT that brought the rest of
    the bytes itself (POST then PUT of a whole blob). `fresh_since` as for claim_upload."""
    end = End(EndOutcome.UNKNOWN, None)
    if fresh_since is not None:  # no row yet: the tombstone is the whole session's record
        n = yield Q("INSERT INTO uploads (id, repository_id, created_at, size) VALUES (?, ?, ?, -1) "
                    "ON CONFLICT (id) DO NOTHING", (upload_id, repo_id, fresh_since))
        if n:
            end = End(EndOutcome.FRESH, None)
    if end.outcome is EndOutcome.UNKNOWN:
        row = yield Q(f"UPDATE uploads SET size = -1 WHERE id = ? AND repository_id = ? AND size = ? "
                      f"AND (claim IS NULL OR claim_expires < ?) RETURNING {_COLUMNS}",
                      (upload_id, repo_id, at, now), "one")
        if row is None:
            return end
        end = End(EndOutcome.ENDED, _upload(row))
    yield from link_blob(repo_id, digest, size, now)
    return end


def end_upload(upload_id: str, repo_id: int, fresh_since: float | None = None) -> Txn[End]:
    """End a session (cancelled, or a failed completion), whoever holds it; its row becomes a tombstone."""
    row = yield Q(f"UPDATE uploads SET size = -1, claim = NULL, claim_expires = NULL "
                  f"WHERE id = ? AND repository_id = ? AND size >= 0 RETURNING {_COLUMNS}", (upload_id, repo_id), "one")
    if row is not None:
        return End(EndOutcome.ENDED, _upload(row))
    if fresh_since is not None:
        n = yield Q("INSERT INTO uploads (id, repository_id, created_at, size) VALUES (?, ?, ?, -1) "
                    "ON CONFLICT (id) DO NOTHING", (upload_id, repo_id, fresh_since))
        if n:
            return End(EndOutcome.FRESH, None)
    return End(EndOutcome.UNKNOWN, None)


def delete_upload(upload_id: str) -> Txn[Upload | None]:
    """Delete the row (the purge of old sessions and tombstones); the row it was, or None."""
    row = yield Q(f"DELETE FROM uploads WHERE id = ? RETURNING {_COLUMNS}", (upload_id,), "one")
    return _upload(row)


def stale_uploads(before: float) -> Txn[list[Upload]]:
    """Sessions in progress started before `before` (tombstones go with delete_tombstones)."""
    rows = yield Q(f"SELECT {_COLUMNS} FROM uploads WHERE created_at < ? AND size >= 0", (before,), "all")
    return [u for u in map(_upload, rows) if u is not None]


def delete_tombstones(before: float) -> Txn[int]:
    n = yield Q("DELETE FROM uploads WHERE created_at < ? AND size < 0", (before,))
    return int(n)


def upload_ids() -> Txn[set[str]]:
    """Sessions in progress (whose storage must be kept)."""
    rows = yield Q("SELECT id FROM uploads WHERE size >= 0", (), "all")
    return {r[0] for r in rows}
