"""Metadata operations for the ECR image view (an image = a manifest digest in a repository, with its
tags, push and pull times, size), as Txn generators.

Rules (what an image id means, what may be deleted) are decided by berth.registry.images; these only
read and store (deleting an image or a tag is berth.db.registry's delete_image and remove_tag, for both
faces). Every operation here is one statement per chunk: nothing to make atomic. Listings are
keyset-paginated in digest order (then tag order), so a page costs one indexed range scan however deep
it is.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, NamedTuple

from berth.db.store import Q, Txn

# An index's size is the largest of its children's (ECR: "the max size of all manifests in the list").
IMAGE_COLUMNS = (
    "m.digest, m.media_type, m.artifact_type, m.subject_digest, m.image_size, m.pushed_at, m.last_pulled_at, "
    "m.body, (SELECT MAX(c.image_size) FROM manifest_refs r JOIN manifests c "
    "ON c.repository_id = r.repository_id AND c.digest = r.child_digest "
    "WHERE r.repository_id = m.repository_id AND r.manifest_digest = m.digest AND r.kind = 'manifest'), "
    "m.image_status, m.archived_at, m.activated_at"
)
_TAGGED = "EXISTS (SELECT 1 FROM tags t WHERE t.repository_id = m.repository_id AND t.digest = m.digest)"
_STATUS_CLAUSE = {"TAGGED": f" AND {_TAGGED}", "UNTAGGED": f" AND NOT {_TAGGED}", "ANY": ""}


def _image_status(column: str, image_status: str) -> tuple[str, tuple[str, ...]]:
    """The clause of an imageStatus filter (ACTIVE, ARCHIVED, ACTIVATING; ANY: none) on `column`."""
    return ("", ()) if image_status == "ANY" else (f" AND {column} = ?", (image_status,))


@dataclass(frozen=True, slots=True)
class ImageRow:
    digest: str
    media_type: str
    artifact_type: str | None
    subject_digest: str | None
    image_size: int
    pushed_at: float
    last_pulled_at: float | None
    body: bytes
    children_max_size: int | None
    status: str = "ACTIVE"  # the archive storage class (berth/lifecycle): ACTIVE | ARCHIVED | ACTIVATING
    archived_at: float | None = None
    activated_at: float | None = None


def _image(row: Any) -> ImageRow:
    return ImageRow(row[0], row[1], row[2], row[3], int(row[4]), float(row[5]),
                    None if row[6] is None else float(row[6]), bytes(row[7]),
                    None if row[8] is None else int(row[8]), row[9],
                    None if row[10] is None else float(row[10]), None if row[11] is None else float(row[11]))


class ImageKey(NamedTuple):
    digest: str
    tag: str | None  # None: an untagged image


def _marks(n: int) -> str:
    return ", ".join("?" * n)


# listings

def list_image_ids(repo_id: int, tag_status: str, after: tuple[str, str],
                   limit: int, image_status: str = "ACTIVE") -> Txn[list[ImageKey]]:
    """(digest, tag) pairs in (digest, tag) order after `after`: one per tag, (digest, None) if untagged.

    `after` is the last pair of the previous page, with "" for an untagged image's tag."""
    digest, tag = after
    status_sql, status_args = _image_status("m.image_status", image_status)
    if tag_status == "TAGGED":
        rows = yield Q("SELECT t.digest, t.name FROM tags t JOIN manifests m ON m.repository_id = t.repository_id "
                       "AND m.digest = t.digest WHERE t.repository_id = ? AND t.digest >= ? "
                       f"AND (t.digest > ? OR t.name > ?){status_sql} ORDER BY t.digest, t.name LIMIT ?",
                       (repo_id, digest, digest, tag, *status_args, limit), "all")
    elif tag_status == "UNTAGGED":
        rows = yield Q(f"SELECT m.digest, NULL FROM manifests m WHERE m.repository_id = ? AND m.digest > ? "
                       f"AND NOT {_TAGGED}{status_sql} ORDER BY m.digest LIMIT ?",
                       (repo_id, digest, *status_args, limit), "all")
    else:
        rows = yield Q("SELECT m.digest, t.name FROM manifests m LEFT JOIN tags t "
                       "ON t.repository_id = m.repository_id AND t.digest = m.digest "
                       "WHERE m.repository_id = ? AND m.digest >= ? AND (m.digest > ? OR COALESCE(t.name, '') > ?)"
                       f"{status_sql} ORDER BY m.digest, t.name LIMIT ?",
                       (repo_id, digest, digest, tag, *status_args, limit), "all")
    return [ImageKey(r[0], r[1]) for r in rows]


def list_images(repo_id: int, tag_status: str, after: str, limit: int,
                image_status: str = "ACTIVE") -> Txn[list[ImageRow]]:
    """Images in digest order after `after`, filtered by TAGGED / UNTAGGED / ANY and by image status."""
    status_sql, status_args = _image_status("m.image_status", image_status)
    rows = yield Q(f"SELECT {IMAGE_COLUMNS} FROM manifests m WHERE m.repository_id = ? AND m.digest > ?"
                   f"{_STATUS_CLAUSE[tag_status]}{status_sql} ORDER BY m.digest LIMIT ?",
                   (repo_id, after, *status_args, limit), "all")
    return [_image(r) for r in rows]


def images_by_digest(repo_id: int, digests: Sequence[str]) -> Txn[dict[str, ImageRow]]:
    found: dict[str, ImageRow] = {}
    for i in range(0, len(digests), 500):
        chunk = digests[i:i + 500]
        rows = yield Q(f"SELECT {IMAGE_COLUMNS} FROM manifests m WHERE m.repository_id = ? "
                       f"AND m.digest IN ({_marks(len(chunk))})", (repo_id, *chunk), "all")
        for r in rows:
            found[r[0]] = _image(r)
    return found


def tags_of(repo_id: int, digests: Sequence[str]) -> Txn[dict[str, list[str]]]:
    """digest -> its tags in name order (digests without tags are absent)."""
    out: dict[str, list[str]] = {}
    for i in range(0, len(digests), 500):
        chunk = digests[i:i + 500]
        rows = yield Q(f"SELECT digest, name FROM tags WHERE repository_id = ? AND digest IN ({_marks(len(chunk))}) "
                       "ORDER BY digest, name", (repo_id, *chunk), "all")
        for d, name in rows:
            out.setdefault(d, []).append(name)
    return out


def tag_targets(repo_id: int, tags: Sequence[str]) -> Txn[dict[str, str]]:
    """tag -> digest for the tags that exist."""
    out: dict[str, str] = {}
    for i in range(0, len(tags), 500):
        chunk = tags[i:i + 500]
        rows = yield Q(f"SELECT name, digest FROM tags WHERE repository_id = ? AND name IN ({_marks(len(chunk))})",
                       (repo_id, *chunk), "all")
        out.update((r[0], r[1]) for r in rows)
    return out


def unavailable(repo_id: int, reference: str) -> Txn[str | None]:
    """The status of the image a digest or tag names when it cannot be pulled (ARCHIVED, ACTIVATING); None
    when it can or there is none (the archive storage class: berth/lifecycle)."""
    row = yield Q("SELECT m.image_status FROM manifests m WHERE m.repository_id = ? AND m.image_status <> 'ACTIVE' "
                  "AND (m.digest = ? OR m.digest = (SELECT t.digest FROM tags t WHERE t.repository_id = ? "
                  "AND t.name = ?))", (repo_id, reference, repo_id, reference), "one")
    return None if row is None else str(row[0])


_REFERENCED_BY = ("SELECT 1 FROM manifest_refs r JOIN manifests m ON m.repository_id = r.repository_id "
                  "AND m.digest = r.manifest_digest WHERE r.repository_id = rb.repository_id "
                  "AND r.child_digest = rb.digest AND r.kind IN ('config', 'layer') AND m.image_status ")


def pullable_blob(repo_id: int, digest: str) -> Txn[tuple[int, float | None] | None]:
    """(size, when garbage collection last saw it linked) of a linked blob, unless only archived images use
    it (their layers are not pullable either)."""
    row = yield Q("SELECT b.size, g.linked_at FROM repository_blobs rb JOIN blobs b ON b.digest = rb.digest "
                  "LEFT JOIN blob_gc g ON g.digest = rb.digest WHERE rb.repository_id = ? AND rb.digest = ? "
                  f"AND (NOT EXISTS ({_REFERENCED_BY}<> 'ACTIVE') OR EXISTS ({_REFERENCED_BY}= 'ACTIVE'))",
                  (repo_id, digest), "one")
    return None if row is None else (int(row[0]), None if row[1] is None else float(row[1]))


# pull times

PULL_TIME_REFRESH = 24 * 3600.0  # ECR refreshes lastRecordedPullTime at most once a day


def record_pulls(pulls: Sequence[tuple[str, str, str, str, float]]) -> Txn[int]:
    """Set last_pulled_at for (account, region, repository, digest, when): the first pull, then at most once
    per PULL_TIME_REFRESH (never moving it backwards)."""
    n = 0
    for account, region, name, digest, when in pulls:
        n += yield Q("UPDATE manifests SET last_pulled_at = ? WHERE repository_id = "
                     "(SELECT id FROM repositories WHERE account_id = ? AND region = ? AND name = ?) "
                     "AND digest = ? AND (last_pulled_at IS NULL OR last_pulled_at <= ?)",
                     (when, account, region, name, digest, when - PULL_TIME_REFRESH))
    return n


# layers

def blob_sizes(repo_id: int, digests: Sequence[str]) -> Txn[dict[str, int]]:
    """digest -> size for the blobs linked to the repository."""
    out: dict[str, int] = {}
    for i in range(0, len(digests), 500):
        chunk = digests[i:i + 500]
        rows = yield Q("SELECT rb.digest, b.size FROM repository_blobs rb JOIN blobs b ON b.digest = rb.digest "
                       f"WHERE rb.repository_id = ? AND rb.digest IN ({_marks(len(chunk))})",
                       (repo_id, *chunk), "all")
        out.update((r[0], int(r[1])) for r in rows)
    return out


def blob_referrer_body(repo_id: int, digest: str) -> Txn[bytes | None]:
    """The bytes of one image manifest in the repository that uses the blob as its config or a layer."""
    row = yield Q("SELECT m.body FROM manifest_refs r JOIN manifests m "
                  "ON m.repository_id = r.repository_id AND m.digest = r.manifest_digest "
                  "WHERE r.repository_id = ? AND r.child_digest = ? AND r.kind IN ('config', 'layer') LIMIT 1",
                  (repo_id, digest), "one")
    return None if row is None else bytes(row[0])
