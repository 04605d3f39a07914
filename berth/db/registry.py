"""Registry metadata operations (repositories, blobs, manifests, tags), as Txn generators (uploads: db/uploads.py).

Rules (naming, immutability, what must exist) are decided by berth.registry; these only store.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from berth.db.store import Q, Txn

REPO_COLUMNS = "id, account_id, region, name, created_at, tag_mutability, tag_mutability_filters, " \
               "scan_on_push, encryption"


@dataclass(frozen=True, slots=True)
class RepoRow:
    id: int
    account_id: str
    region: str
    name: str
    created_at: float
    tag_mutability: str
    tag_mutability_filters: str
    scan_on_push: int
    encryption: str


def _repo(row: Any) -> RepoRow | None:
    return None if row is None else RepoRow(*row)


# repositories

def get_repository(account: str, region: str, name: str) -> Txn[RepoRow | None]:
    row = yield Q(f"SELECT {REPO_COLUMNS} FROM repositories WHERE account_id = ? AND region = ? AND name = ?",
                  (account, region, name), "one")
    return _repo(row)


def create_repository(account: str, region: str, name: str, now: float, tag_mutability: str = "MUTABLE",
                      tag_mutability_filters: str = "[]", scan_on_push: int = 0,
                      encryption: str = '{"encryptionType": "AES256"}') -> Txn[tuple[RepoRow, bool]]:
    """Create if absent; returns (repository, created)."""
    row = yield Q(
        "INSERT INTO repositories (account_id, region, name, created_at, tag_mutability, "
        "tag_mutability_filters, scan_on_push, encryption) VALUES (?, ?, ?, ?, ?, ?, ?, ?) "
        f"ON CONFLICT (account_id, region, name) DO NOTHING RETURNING {REPO_COLUMNS}",
        (account, region, name, now, tag_mutability, tag_mutability_filters, scan_on_push, encryption), "one")
    if row is not None:
        return RepoRow(*row), True
    existing = yield from get_repository(account, region, name)
    assert existing is not None
    return existing, False


def list_repository_names(account: str, region: str, after: str, limit: int) -> Txn[list[str]]:
    rows = yield Q("SELECT name FROM repositories WHERE account_id = ? AND region = ? AND name > ? "
                   "ORDER BY name LIMIT ?", (account, region, after, limit), "all")
    return [r[0] for r in rows]


# blobs

def repo_blob_size(repo_id: int, digest: str) -> Txn[int | None]:
    row = yield Q("SELECT b.size FROM repository_blobs rb JOIN blobs b ON b.digest = rb.digest "
                  "WHERE rb.repository_id = ? AND rb.digest = ?", (repo_id, digest), "one")
    return None if row is None else int(row[0])


def link_blob(repo_id: int, digest: str, size: int, now: float) -> Txn[None]:
    yield Q("INSERT INTO blobs (digest, size, created_at) VALUES (?, ?, ?) ON CONFLICT (digest) DO NOTHING",
            (digest, size, now))
    yield Q("INSERT INTO repository_blobs (repository_id, digest, created_at) VALUES (?, ?, ?) "
            "ON CONFLICT (repository_id, digest) DO NOTHING", (repo_id, digest, now))


def unlink_blob(repo_id: int, digest: str) -> Txn[bool]:
    n = yield Q("DELETE FROM repository_blobs WHERE repository_id = ? AND digest = ?", (repo_id, digest))
    return bool(n)


def linked_blobs(repo_id: int, digests: Sequence[str]) -> Txn[set[str]]:
    return (yield from _present("repository_blobs", repo_id, digests))


def _present(table: str, repo_id: int, digests: Sequence[str]) -> Txn[set[str]]:
    """Which of `digests` have a row in `table` (repository_blobs or manifests) for the repository."""
    found: set[str] = set()
    for chunk in _chunks(digests, 500):
        marks = ", ".join("?" * len(chunk))
        rows = yield Q(f"SELECT digest FROM {table} WHERE repository_id = ? AND digest IN ({marks})",
                       (repo_id, *chunk), "all")
        found.update(r[0] for r in rows)
    return found


# manifests and tags

MANIFEST_COLUMNS = "digest, media_type, body, subject_digest"


def manifest_by_digest(repo_id: int, digest: str) -> Txn[tuple[str, str, bytes, str | None] | None]:
    row = yield Q(f"SELECT {MANIFEST_COLUMNS} FROM manifests WHERE repository_id = ? AND digest = ?",
                  (repo_id, digest), "one")
    return None if row is None else (row[0], row[1], bytes(row[2]), row[3])


def manifest_by_tag(repo_id: int, tag: str) -> Txn[tuple[str, str, bytes, str | None] | None]:
    row = yield Q("SELECT m.digest, m.media_type, m.body, m.subject_digest FROM tags t "
                  "JOIN manifests m ON m.repository_id = t.repository_id AND m.digest = t.digest "
                  "WHERE t.repository_id = ? AND t.name = ?", (repo_id, tag), "one")
    return None if row is None else (row[0], row[1], bytes(row[2]), row[3])


def present_manifests(repo_id: int, digests: Sequence[str]) -> Txn[set[str]]:
    return (yield from _present("manifests", repo_id, digests))


@dataclass(frozen=True, slots=True)
class NewManifest:
    digest: str
    media_type: str
    artifact_type: str | None
    subject_digest: str | None
    annotations: str | None
    body: bytes
    image_size: int
    refs: tuple[tuple[str, str], ...]  # (child digest, kind)


def tag_digest(repo_id: int, tag: str) -> Txn[str | None]:
    row = yield Q("SELECT digest FROM tags WHERE repository_id = ? AND name = ?", (repo_id, tag), "one")
    return None if row is None else row[0]


def put_manifest(repo_id: int, m: NewManifest, tag: str | None, tag_locked: bool, now: float) -> Txn[str]:
    """Store a manifest and point `tag` at it. Returns "ok", or "tag_locked" (nothing written)
    when the tag is immutable and already names another digest."""
    if tag is not None:
        current = yield from tag_digest(repo_id, tag)
        if tag_locked and current is not None and current != m.digest:
            return "tag_locked"
    inserted = yield Q(
        "INSERT INTO manifests (repository_id, digest, media_type, artifact_type, subject_digest, annotations, "
        "body, image_size, pushed_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?) "
        "ON CONFLICT (repository_id, digest) DO NOTHING",
        (repo_id, m.digest, m.media_type, m.artifact_type, m.subject_digest, m.annotations, m.body,
         m.image_size, now))
    if inserted:
        for child, kind in m.refs:
            yield Q("INSERT INTO manifest_refs (repository_id, manifest_digest, child_digest, kind) "
                    "VALUES (?, ?, ?, ?) ON CONFLICT DO NOTHING", (repo_id, m.digest, child, kind))
    if tag is not None:
        yield Q("INSERT INTO tags (repository_id, name, digest, updated_at) VALUES (?, ?, ?, ?) "
                "ON CONFLICT (repository_id, name) DO UPDATE SET digest = excluded.digest, "
                "updated_at = excluded.updated_at", (repo_id, tag, m.digest, now))
    return "ok"


def manifest_parents(repo_id: int, digest: str) -> Txn[list[str]]:
    """Indexes in the repository that list `digest` as a child."""
    rows = yield Q("SELECT manifest_digest FROM manifest_refs WHERE repository_id = ? AND child_digest = ? "
                   "AND kind = 'manifest'", (repo_id, digest), "all")
    return [r[0] for r in rows]


def delete_manifest(repo_id: int, digest: str) -> Txn[str]:
    """Delete a manifest and its tags. Returns "ok", "unknown", or "referenced" (nothing deleted)."""
    parents = yield from manifest_parents(repo_id, digest)
    if parents:
        return "referenced"
    n = yield Q("DELETE FROM manifests WHERE repository_id = ? AND digest = ?", (repo_id, digest))
    if not n:
        return "unknown"
    yield Q("DELETE FROM manifest_refs WHERE repository_id = ? AND manifest_digest = ?", (repo_id, digest))
    yield Q("DELETE FROM tags WHERE repository_id = ? AND digest = ?", (repo_id, digest))
    return "ok"


def delete_tag(repo_id: int, tag: str) -> Txn[bool]:
    n = yield Q("DELETE FROM tags WHERE repository_id = ? AND name = ?", (repo_id, tag))
    return bool(n)


def list_tags(repo_id: int, after: str, limit: int) -> Txn[list[str]]:
    rows = yield Q("SELECT name FROM tags WHERE repository_id = ? AND name > ? ORDER BY name LIMIT ?",
                   (repo_id, after, limit), "all")
    return [r[0] for r in rows]


def referrers(repo_id: int, subject: str) -> Txn[list[tuple[str, str, str | None, str | None, int]]]:
    """(digest, media type, artifact type, annotations json, manifest size) of manifests naming `subject`."""
    rows = yield Q("SELECT digest, media_type, artifact_type, annotations, LENGTH(body) FROM manifests "
                   "WHERE repository_id = ? AND subject_digest = ? ORDER BY digest", (repo_id, subject), "all")
    return [(r[0], r[1], r[2], r[3], int(r[4])) for r in rows]


def _chunks(items: Sequence[str], size: int) -> Iterable[Sequence[str]]:
    for i in range(0, len(items), size):
        yield items[i:i + size]


# resource tags (TagResource / condition keys aws:ResourceTag/…)

def repository_tags(account: str, region: str, name: str) -> Txn[dict[str, str]]:
    rows = yield Q("SELECT t.key, t.value FROM repositories r JOIN repository_tags t ON t.repository_id = r.id "
                   "WHERE r.account_id = ? AND r.region = ? AND r.name = ? ORDER BY t.key",
                   (account, region, name), "all")
    return {r[0]: r[1] for r in rows}
