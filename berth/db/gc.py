"""Garbage-collection metadata (table blob_gc), as Txn generators; the protocol is berth/lifecycle/gc.py's.

Each digest's blob_gc row says when a repository last linked it or a read refreshed it (`linked_at`),
when an upload pinned it before writing its bytes to storage (`pinned_at`), and whether a collection
is deleting it (`condemned_at`). Everything that makes a digest live again writes that row first, with an upsert
that waits for the row's lock; a collection locks the rows it decides on FOR UPDATE. So on
PostgreSQL (READ COMMITTED) either the writer commits first and the collection sees its fresh
`linked_at` (or its manifest_refs, read in a later statement), or the writer waits and then finds
the digest condemned, and refuses (a link) or waits until the deletion is over (a pin). SQLite's
single writer serialises the same transactions and ignores Q.lock.

Lock order, to keep PostgreSQL free of deadlocks: blob_gc row, then repository_blobs rows.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from enum import Enum

from berth.db.archive import MOVE_STALE
from berth.db.store import Q, Txn, lease

UNREFERENCED = "unreferenced"  # a recorded blob that no manifest references
UNRECORDED = "unrecorded"  # an object in storage that no blobs row records (a crash left it)
PIN = "pin"  # a row with neither: an upload that pinned a digest and never linked it (no bytes)

CHUNK = 500


class BlobCondemned(Exception):
    """A link was asked for a digest a collection is deleting (its bytes may be gone): nothing written."""

    def __init__(self, digest: str) -> None:
        super().__init__(f"blob {digest} is being garbage-collected")
        self.digest = digest


def _marks(n: int) -> str:
    return ", ".join("?" * n)


def _chunks(items: Sequence[str]) -> list[Sequence[str]]:
    return [items[i:i + CHUNK] for i in range(0, len(items), CHUNK)]


# the writers' side: every path that makes a digest live

def linking(digest: str, now: float) -> Txn[bool]:
    """The first statement of every link (link_blob, mount_blob): record the link time; False (nothing
    changed) when a collection has condemned the digest. Locks the row until the transaction ends."""
    row = yield Q("INSERT INTO blob_gc (digest, linked_at) VALUES (?, ?) ON CONFLICT (digest) DO UPDATE "
                  "SET linked_at = excluded.linked_at WHERE blob_gc.condemned_at IS NULL RETURNING digest",
                  (digest, now), "one")
    return row is not None


@lease  # lost in a crash: the upload that pinned died with it (its bytes, if any, are unrecorded)
def pin(digest: str, now: float) -> Txn[bool]:
    """Before an upload writes `digest`'s bytes to storage: keep collections off it until it has linked them
    (for the collector's pin hold, whatever its grace period). False while a collection is deleting it:
    wait, and pin again (that collection's storage delete may still come)."""
    row = yield Q("INSERT INTO blob_gc (digest, linked_at, pinned_at) VALUES (?, ?, ?) ON CONFLICT (digest) "
                  "DO UPDATE SET pinned_at = excluded.pinned_at WHERE blob_gc.condemned_at IS NULL RETURNING digest",
                  (digest, now, now), "one")
    return row is not None


@lease  # lost in a crash: the grace period then counts from the previous link, as before
def refresh(repo_id: int, digest: str, now: float) -> Txn[bool]:
    """A HEAD or GET found the blob linked: restart its grace period (a client that saw it may reference
    it next), unless a collection condemned it meanwhile (False: answer that it is unknown)."""
    row = yield Q("INSERT INTO blob_gc (digest, linked_at) SELECT ?, ? WHERE EXISTS (SELECT 1 FROM "
                  "repository_blobs WHERE repository_id = ? AND digest = ?) ON CONFLICT (digest) DO UPDATE "
                  "SET linked_at = excluded.linked_at WHERE blob_gc.condemned_at IS NULL RETURNING digest",
                  (digest, now, repo_id, digest), "one")
    return row is not None


class Unlink(Enum):
    DONE = "done"
    UNKNOWN = "unknown"  # not linked to the repository
    REFERENCED = "referenced"  # manifests of the repository use it: nothing changed


@dataclass(frozen=True, slots=True)
class UnlinkResult:
    outcome: Unlink
    manifests: tuple[str, ...] = ()  # REFERENCED: (up to 10 of) the manifests that use it


def unlink_unreferenced(repo_id: int, digest: str) -> Txn[UnlinkResult]:
    """DELETE /v2/<name>/blobs/<digest>: unlink the blob unless a manifest of the repository uses it.

    The link row is locked FOR UPDATE before manifest_refs is read: a push that references the blob holds
    the link FOR KEY SHARE, so it either commits first (and its refs are seen) or waits and finds no link."""
    row = yield Q("SELECT digest FROM repository_blobs WHERE repository_id = ? AND digest = ?", (repo_id, digest),
                  "one", lock="UPDATE")
    if row is None:
        return UnlinkResult(Unlink.UNKNOWN)
    rows = yield Q("SELECT manifest_digest FROM manifest_refs WHERE repository_id = ? AND child_digest = ? "
                   "ORDER BY manifest_digest LIMIT 10", (repo_id, digest), "all")
    if rows:
        return UnlinkResult(Unlink.REFERENCED, tuple(r[0] for r in rows))
    yield Q("DELETE FROM repository_blobs WHERE repository_id = ? AND digest = ?", (repo_id, digest))
    return UnlinkResult(Unlink.DONE)


# the collection's side

def referenced() -> Txn[set[str]]:
    """Every digest some manifest of some repository references (the mark phase's snapshot)."""
    rows = yield Q("SELECT DISTINCT child_digest FROM manifest_refs", (), "all")
    return {r[0] for r in rows}


@dataclass(frozen=True, slots=True)
class Candidate:
    digest: str
    kind: str  # UNREFERENCED | UNRECORDED | PIN
    size: int


def _kind(blob_size: int | None, unrecorded_size: int | None) -> tuple[str, int]:
    if blob_size is not None:
        return UNREFERENCED, int(blob_size)
    if unrecorded_size is not None:
        return UNRECORDED, int(unrecorded_size)
    return PIN, 0


_INFO = "g.digest, b.size, g.unrecorded_size FROM blob_gc g LEFT JOIN blobs b ON b.digest = g.digest"
_COLLECTABLE = "g.linked_at < ? AND (g.pinned_at IS NULL OR g.pinned_at < ?) AND g.condemned_at IS NULL"


def candidates(cutoff: float, pin_cutoff: float, after: str, limit: int) -> Txn[list[Candidate]]:
    """Digests not linked or read since `cutoff`, not pinned since `pin_cutoff`, not condemned, in digest
    order after `after`."""
    rows = yield Q(f"SELECT {_INFO} WHERE g.digest > ? AND {_COLLECTABLE} ORDER BY g.digest LIMIT ?",
                   (after, cutoff, pin_cutoff, limit), "all")
    return [Candidate(r[0], *_kind(r[1], r[2])) for r in rows]


def condemn(digests: Sequence[str], cutoff: float, pin_cutoff: float, now: float) -> Txn[list[Candidate]]:
    """Condemn those of `digests` (at most CHUNK, sorted) that are still unreferenced and collectable (as for
    `candidates`), and drop their repository links: from the commit on, no link, pin or read refresh can
    revive them. What was condemned; its bytes are the caller's to delete, then `bury` the rows."""
    marks = _marks(len(digests))
    rows = yield Q(f"SELECT g.digest FROM blob_gc g WHERE g.digest IN ({marks}) AND {_COLLECTABLE} "
                   "ORDER BY g.digest", (*digests, cutoff, pin_cutoff), "all", lock="UPDATE")
    # A digest an archive placement holds is spared (it locked the blob_gc row to take the hold: berth/db/archive.py)
    held = yield Q(f"SELECT digest FROM archived_blobs WHERE digest IN ({marks}) AND moving_since >= ?",
                   (*digests, now - MOVE_STALE), "all")
    eligible = [r[0] for r in rows if r[0] not in {h[0] for h in held}]
    if not eligible:
        return []
    marks = _marks(len(eligible))
    # A push holding one of these links FOR KEY SHARE commits before this returns; a later one waits.
    yield Q(f"SELECT repository_id, digest FROM repository_blobs WHERE digest IN ({marks}) "
            "ORDER BY repository_id, digest", tuple(eligible), "all", lock="UPDATE")
    # A new statement: on READ COMMITTED it sees the refs of every push that committed while we waited.
    used = yield Q(f"SELECT DISTINCT child_digest FROM manifest_refs WHERE child_digest IN ({marks})",
                   tuple(eligible), "all")
    doomed = [d for d in eligible if d not in {r[0] for r in used}]
    if not doomed:
        return []
    marks = _marks(len(doomed))
    info = yield Q(f"SELECT {_INFO} WHERE g.digest IN ({marks}) ORDER BY g.digest", tuple(doomed), "all")
    yield Q(f"UPDATE blob_gc SET condemned_at = ? WHERE digest IN ({marks})", (now, *doomed))
    yield Q(f"DELETE FROM repository_blobs WHERE digest IN ({marks})", tuple(doomed))
    return [Candidate(r[0], *_kind(r[1], r[2])) for r in info]


def take_over(stale_before: float, now: float, limit: int) -> Txn[list[Candidate]]:
    """Condemnations older than `stale_before` (a collection that died between condemning and burying):
    re-stamped `now`, so exactly one collection takes each over; it deletes their bytes, then buries them.
    Only the collection whose stamp a row carries deletes its bytes: a live one finishes in seconds."""
    rows = yield Q(f"SELECT {_INFO} WHERE g.condemned_at IS NOT NULL AND g.condemned_at < ? ORDER BY g.digest LIMIT ?",
                   (stale_before, limit), "all")
    if not rows:
        return []
    marks = _marks(len(rows))
    taken = yield Q(f"SELECT digest FROM blob_gc WHERE digest IN ({marks}) AND condemned_at < ?",
                    (*(r[0] for r in rows), stale_before), "all", lock="UPDATE")
    mine = {r[0] for r in taken}
    if mine:
        yield Q(f"UPDATE blob_gc SET condemned_at = ? WHERE digest IN ({_marks(len(mine))})", (now, *sorted(mine)))
    return [Candidate(r[0], *_kind(r[1], r[2])) for r in rows if r[0] in mine]


def bury(digests: Sequence[str]) -> Txn[int]:
    """Delete the records of condemned digests whose bytes are deleted."""
    n = 0
    for chunk in _chunks(digests):
        rows = yield Q(f"SELECT digest FROM blob_gc WHERE digest IN ({_marks(len(chunk))}) "
                       "AND condemned_at IS NOT NULL", tuple(chunk), "all", lock="UPDATE")
        doomed = tuple(r[0] for r in rows)
        if not doomed:
            continue
        marks = _marks(len(doomed))
        yield Q(f"DELETE FROM repository_blobs WHERE digest IN ({marks})", doomed)
        yield Q(f"DELETE FROM archived_blobs WHERE digest IN ({marks})", doomed)  # its bytes are gone from both stores
        yield Q(f"DELETE FROM blobs WHERE digest IN ({marks})", doomed)
        n += yield Q(f"DELETE FROM blob_gc WHERE digest IN ({marks})", doomed)
    return n


def unrecorded(found: Sequence[tuple[str, int]]) -> Txn[list[tuple[str, int]]]:
    """Of objects found in storage (digest, size), those that no blobs row records, not seen before."""
    out: list[tuple[str, int]] = []
    for i in range(0, len(found), CHUNK):
        chunk = found[i:i + CHUNK]
        marks = _marks(len(chunk))
        digests = tuple(d for d, _ in chunk)
        rows = yield Q(f"SELECT digest FROM blobs WHERE digest IN ({marks}) UNION SELECT digest FROM blob_gc "
                       f"WHERE digest IN ({marks}) AND unrecorded_size IS NOT NULL", (*digests, *digests), "all")
        known = {r[0] for r in rows}
        out += [(d, s) for d, s in chunk if d not in known]
    return out


def record_unrecorded(found: Sequence[tuple[str, int]], now: float) -> Txn[int]:
    """Give objects that no blobs row records a blob_gc row (first seen now, unless pinned or seen before),
    so that they are collected once unlinked for the grace period, like any unreferenced blob."""
    n = 0
    for d, size in found:
        n += yield Q("INSERT INTO blob_gc (digest, linked_at, unrecorded_size) VALUES (?, ?, ?) "
                     "ON CONFLICT (digest) DO UPDATE SET unrecorded_size = excluded.unrecorded_size",
                     (d, now, size))
    return n


@dataclass(frozen=True, slots=True)
class Totals:
    blobs: int
    blob_bytes: int
    linked: int  # blobs linked to at least one repository
    condemned: int


def totals() -> Txn[Totals]:
    row = yield Q("SELECT COUNT(*), COALESCE(SUM(size), 0) FROM blobs", (), "one")
    linked = yield Q("SELECT COUNT(DISTINCT digest) FROM repository_blobs", (), "one")
    cond = yield Q("SELECT COUNT(*) FROM blob_gc WHERE condemned_at IS NOT NULL", (), "one")
    return Totals(int(row[0]), int(row[1]), int(linked[0]), int(cond[0]))
