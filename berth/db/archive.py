"""Metadata of the archive storage location (table archived_blobs), as Txn generators; the protocol is
berth/lifecycle/archive.py's.

A digest with no archived_blobs row lives in the main store. A row with in_archive = 1 lives in the archive
store; moving_since set means a placement holds the digest (copying it, or deleting the copy it left):
exactly one placement at a time per digest, taken over when older than the caller's stale limit.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from berth.db.jobs import enqueue
from berth.db.store import Q, Txn

PLACE_JOB = "archive.place"  # berth/lifecycle/archive.py: one blob moved to the store where it belongs
MOVE_STALE = 6 * 3600.0  # a placement's hold this old was left by one that died: taken over (and collectable)


@dataclass(frozen=True, slots=True)
class Claim:
    in_archive: bool  # where the bytes live now
    size: int | None  # the blobs row's size; None: no such blob (or a collection is deleting it)


def claim(digest: str, now: float, stale_before: float) -> Txn[Claim | None]:
    """Hold `digest` for one placement (stamped `now`); None when another placement holds it. The blob_gc row
    is locked first (gc's lock order): a collection that condemned the digest has committed, and then nothing
    is held (size None: nothing to move); one that has not yet waits, and then spares a held digest (`condemn`)."""
    gc = yield Q("SELECT condemned_at FROM blob_gc WHERE digest = ?", (digest,), "one", lock="UPDATE")
    if gc is None or gc[0] is not None:
        return Claim(False, None)
    row = yield Q("INSERT INTO archived_blobs (digest, in_archive, moving_since) VALUES (?, 0, ?) "
                  "ON CONFLICT (digest) DO UPDATE SET moving_since = excluded.moving_since "
                  "WHERE archived_blobs.moving_since IS NULL OR archived_blobs.moving_since < ? "
                  "RETURNING in_archive", (digest, now, stale_before), "one")
    if row is None:
        return None
    return Claim(bool(row[0]), (yield from _size(digest)))


def _size(digest: str) -> Txn[int | None]:
    row = yield Q("SELECT size FROM blobs WHERE digest = ?", (digest,), "one")
    return None if row is None else int(row[0])


def home(digest: str) -> Txn[bool | None]:
    """Whether the blob belongs in the archive store: only archived images use it (every manifest that references
    it is ARCHIVED, and every repository that links it has such a manifest: a link alone is pullable, a push may
    reference it next). None when nothing references or links it (garbage collection's, wherever it is)."""
    refs = yield Q("SELECT DISTINCT r.repository_id, m.image_status FROM manifest_refs r JOIN manifests m "
                   "ON m.repository_id = r.repository_id AND m.digest = r.manifest_digest "
                   "WHERE r.child_digest = ? AND r.kind IN ('config', 'layer')", (digest,), "all")
    links = yield Q("SELECT repository_id FROM repository_blobs WHERE digest = ?", (digest,), "all")
    if not refs:
        return None if not links else False
    if any(status != "ARCHIVED" for _, status in refs):
        return False
    return {int(r[0]) for r in links} <= {int(r[0]) for r in refs}


def archivable(digest: str) -> Txn[bool]:
    return (yield from home(digest)) is True


def settle(digest: str, stamp: float, in_archive: bool, now: float, archive: bool) -> Txn[str]:
    """The commit of a placement that holds `digest` with `stamp`: record its new home, in one transaction
    with the decision. Moving to the archive (`in_archive`) is decided again here: refused ('refused') when
    an image that is not archived uses the blob now, or a collection condemned it. 'lost': the placement's
    hold was taken over (it must delete nothing). 'done' otherwise. `archive` False: the location is
    recorded without re-checking (bringing a blob back to the main store is never wrong)."""
    # gc's lock order: the blob_gc row, then the rest (bury deletes archived_blobs rows under it)
    gc = yield Q("SELECT condemned_at FROM blob_gc WHERE digest = ?", (digest,), "one", lock="UPDATE")
    row = yield Q("SELECT moving_since FROM archived_blobs WHERE digest = ?", (digest,), "one", lock="UPDATE")
    if row is None or row[0] is None or float(row[0]) != stamp:
        return "lost"
    if in_archive and archive:
        if gc is None or gc[0] is not None:
            return "refused"
        # a push holding a link FOR KEY SHARE commits first; its refs are read in the next statement
        yield Q("SELECT repository_id FROM repository_blobs WHERE digest = ? ORDER BY repository_id", (digest,), "all",
                lock="UPDATE")
        if not (yield from archivable(digest)):
            return "refused"
    yield Q("UPDATE archived_blobs SET in_archive = ?, moved_at = ? WHERE digest = ?", (int(in_archive), now, digest))
    return "done"


def release(digest: str, stamp: float) -> Txn[None]:
    """End the hold: the row goes when the blob lives in the main store."""
    yield Q("DELETE FROM archived_blobs WHERE digest = ? AND moving_since = ? AND in_archive = 0", (digest, stamp))
    yield Q("UPDATE archived_blobs SET moving_since = NULL WHERE digest = ? AND moving_since = ?", (digest, stamp))


def in_archive(digests: Sequence[str]) -> Txn[set[str]]:
    out: set[str] = set()
    for i in range(0, len(digests), 500):
        chunk = digests[i:i + 500]
        rows = yield Q(f"SELECT digest FROM archived_blobs WHERE in_archive = 1 AND digest IN "
                       f"({', '.join('?' * len(chunk))})", tuple(chunk), "all")
        out |= {r[0] for r in rows}
    return out


def image_blobs(repo_id: int, digest: str) -> Txn[list[str]]:
    """The config and layers of an image, and of the manifests an index lists."""
    rows = yield Q("SELECT DISTINCT r.child_digest FROM manifest_refs r WHERE r.repository_id = ? "
                   "AND r.kind IN ('config', 'layer') AND (r.manifest_digest = ? OR r.manifest_digest IN "
                   "(SELECT c.child_digest FROM manifest_refs c WHERE c.repository_id = ? AND c.manifest_digest = ? "
                   "AND c.kind = 'manifest')) ORDER BY r.child_digest", (repo_id, digest, repo_id, digest), "all")
    return [r[0] for r in rows]


def archived_total() -> Txn[tuple[int, int]]:
    """(blobs, bytes) whose home is the archive store."""
    row = yield Q("SELECT COUNT(*), COALESCE(SUM(b.size), 0) FROM archived_blobs a JOIN blobs b "
                  "ON b.digest = a.digest WHERE a.in_archive = 1", (), "one")
    return int(row[0]), int(row[1])


def queue_bring_back(now: float, limit: int = 10_000) -> Txn[int]:
    """A placement job for each blob in the archive store that an image not archived references (a push or
    a re-push used it since it moved): it belongs in the main store. How many were queued."""
    rows = yield Q("SELECT a.digest FROM archived_blobs a WHERE a.in_archive = 1 AND a.moving_since IS NULL "
                   "AND EXISTS (SELECT 1 FROM manifest_refs r JOIN manifests m ON m.repository_id = r.repository_id "
                   "AND m.digest = r.manifest_digest WHERE r.child_digest = a.digest AND m.image_status <> 'ARCHIVED') "
                   "ORDER BY a.digest LIMIT ?", (limit,), "all")
    yield from queue_places([r[0] for r in rows], now)
    return len(rows)


def queue_places(digests: Sequence[str], now: float) -> Txn[None]:
    """A placement job per digest (coalesced with one already queued for it)."""
    for d in digests:
        yield from enqueue(PLACE_JOB, {"digest": d}, now, key=f"archive-place/{d}")
