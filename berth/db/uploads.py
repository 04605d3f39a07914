"""Upload sessions, as Txn generators: the committed size, the driver's state, and writer claims.

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
from berth.db.store import Q, Txn


@dataclass(frozen=True, slots=True)
class Upload:
    id: str
    repository_id: int
    size: int  # committed: bytes acknowledged to the client
    state: str  # the BlobStore driver's opaque state for resuming at `size`
    created_at: float


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
    return None if row is None else Upload(row[0], int(row[1]), int(row[2]), row[3] or "", float(row[4]))


def create_upload(upload_id: str, repo_id: int, state: str, now: float) -> Txn[None]:
    yield Q("INSERT INTO uploads (id, repository_id, created_at, size, state) VALUES (?, ?, ?, 0, ?)",
            (upload_id, repo_id, now, state))


def get_upload(upload_id: str, repo_id: int) -> Txn[Upload | None]:
    row = yield Q(f"SELECT {_COLUMNS} FROM uploads WHERE id = ? AND repository_id = ?", (upload_id, repo_id), "one")
    return _upload(row)


def claim_upload(upload_id: str, repo_id: int, size: int | None, token: str, now: float,
                 expires: float) -> Txn[Claim]:
    """Claim the upload for one writer at committed size `size` (None: at whatever size it has)."""
    at = "" if size is None else " AND size = ?"
    row = yield Q(f"UPDATE uploads SET claim = ?, claim_expires = ? WHERE id = ? AND repository_id = ?{at} "
                  f"AND (claim IS NULL OR claim_expires < ?) RETURNING {_COLUMNS}",
                  (token, expires, upload_id, repo_id, *(() if size is None else (size,)), now), "one")
    if row is not None:
        return Claim(ClaimOutcome.CLAIMED, _upload(row))
    current = yield from get_upload(upload_id, repo_id)
    if current is None:
        return Claim(ClaimOutcome.UNKNOWN, None)
    return Claim(ClaimOutcome.MOVED if size is not None and current.size != size else ClaimOutcome.BUSY, current)


def renew_claim(upload_id: str, token: str, expires: float) -> Txn[bool]:
    n = yield Q("UPDATE uploads SET claim_expires = ? WHERE id = ? AND claim = ?", (expires, upload_id, token))
    return bool(n)


def release_claim(upload_id: str, token: str) -> Txn[None]:
    yield Q("UPDATE uploads SET claim = NULL, claim_expires = NULL WHERE id = ? AND claim = ?", (upload_id, token))


def advance_upload(upload_id: str, token: str, size: int, state: str) -> Txn[bool]:
    """Commit the claim holder's bytes: the new committed size and driver state; releases the claim.
    False (nothing written) when the claim was lost: taken over after expiry, or the upload dropped."""
    n = yield Q("UPDATE uploads SET size = ?, state = ?, claim = NULL, claim_expires = NULL "
                "WHERE id = ? AND claim = ?", (size, state, upload_id, token))
    return bool(n)


def finish_upload(upload_id: str, token: str, repo_id: int, digest: str, size: int, now: float) -> Txn[bool]:
    """Drop the claimed session and link its blob, or nothing (False) when the claim was lost."""
    n = yield Q("DELETE FROM uploads WHERE id = ? AND claim = ?", (upload_id, token))
    if not n:
        return False
    yield from link_blob(repo_id, digest, size, now)
    return True


def finish_unclaimed(upload_id: str, repo_id: int, at: int, digest: str, size: int, now: float) -> Txn[bool]:
    """Finish a session whose committed size is `at` and which no writer holds, linking the blob
    (`size` bytes), in one statement: the claim and the finish together, for a PUT that brought
    the rest of the bytes itself (POST then PUT of a whole blob)."""
    n = yield Q("DELETE FROM uploads WHERE id = ? AND repository_id = ? AND size = ? "
                "AND (claim IS NULL OR claim_expires < ?)", (upload_id, repo_id, at, now))
    if not n:
        return False
    yield from link_blob(repo_id, digest, size, now)
    return True


def delete_upload(upload_id: str, repo_id: int | None = None) -> Txn[Upload | None]:
    """Delete the session (of `repo_id` when given); the row it was, None when there was none."""
    mine = "" if repo_id is None else " AND repository_id = ?"
    row = yield Q(f"DELETE FROM uploads WHERE id = ?{mine} RETURNING {_COLUMNS}",
                  (upload_id, *(() if repo_id is None else (repo_id,))), "one")
    return _upload(row)


def stale_uploads(before: float) -> Txn[list[Upload]]:
    rows = yield Q(f"SELECT {_COLUMNS} FROM uploads WHERE created_at < ?", (before,), "all")
    return [u for u in map(_upload, rows) if u is not None]


def upload_ids() -> Txn[set[str]]:
    rows = yield Q("SELECT id FROM uploads", (), "all")
    return {r[0] for r in rows}
