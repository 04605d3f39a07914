"""Registry metadata operations (repositories, blobs, manifests, tags), as Txn generators (uploads: db/uploads.py).

Rules (naming, immutability, what must exist) are decided by berth.registry; these store, and make each
decision atomic with its write. How, per operation (PostgreSQL is READ COMMITTED; SQLite's single
writer already serialises every write, and ignores Q.lock):

- put_manifest: the repository row is locked FOR KEY SHARE (a concurrent repository delete waits, or
  wins and the push sees no repository); every referenced blob link and child manifest is re-read
  FOR KEY SHARE inside the transaction (a concurrent unlink or delete waits for the push to commit, or
  wins and the push fails with the missing digest); the tag is claimed with SELECT ... FOR UPDATE, or
  INSERT ... ON CONFLICT DO NOTHING when absent (re-read when another writer inserted it first), so
  exactly one digest wins an immutable tag; the manifest row is upserted with ON CONFLICT DO UPDATE,
  which locks it against a concurrent delete.
- delete_image: the image's tags and then its manifest row are locked FOR UPDATE before the "is it
  referenced by an index?" check, so an index push (which locks its children FOR KEY SHARE) either
  commits first and is seen, or waits and then finds the child gone. Its referrers (manifests whose
  subject it is) go with it, each locked FOR UPDATE before its own index check (one an index lists stays).
- remove_tag: the tag row, then its manifest row, FOR UPDATE; then the "is it the last tag?" count
  (ECR's rule), so two concurrent removals of an image's last two tags delete the image once.
- mount_blob: the source link is read FOR KEY SHARE in the transaction that links.
- link_blob, mount_blob: first upsert the digest's blob_gc row (berth/db/gc.py), which waits for a
  collection deciding on it and refuses a digest it condemned.
Operations without a decision (unlink_blob, list reads) are single statements. The /v2 blob DELETE is
berth/db/gc.py's unlink_unreferenced (refused while a manifest of the repository uses the blob).
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from enum import Enum
from typing import Any, NamedTuple

from berth.db import gc
from berth.db.store import Lock, Q, Txn

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
    encryption: str  # JSON text, as stored; decoded: encryption_configuration

    @property
    def exclusion_filters(self) -> list[dict[str, str]]:
        """The tag mutability exclusion filters ([{"filterType": ..., "filter": ...}]), decoded."""
        decoded: list[dict[str, str]] = json.loads(self.tag_mutability_filters or "[]")
        return decoded

    @property
    def encryption_configuration(self) -> dict[str, str]:
        decoded: dict[str, str] = json.loads(self.encryption)
        return decoded


class Created(NamedTuple):
    repo: RepoRow
    created: bool  # False: it existed already (and is returned unchanged)


def _repo(row: Any) -> RepoRow | None:
    return None if row is None else RepoRow(*row)


# repositories

def get_repository(account: str, region: str, name: str) -> Txn[RepoRow | None]:
    row = yield Q(f"SELECT {REPO_COLUMNS} FROM repositories WHERE account_id = ? AND region = ? AND name = ?",
                  (account, region, name), "one")
    return _repo(row)


def create_repository(account: str, region: str, name: str, now: float, tag_mutability: str = "MUTABLE",
                      exclusion_filters: Sequence[Mapping[str, str]] = (), scan_on_push: bool = False,
                      encryption: Mapping[str, str] | None = None) -> Txn[Created]:
    """Create if absent. The filters and the encryption configuration are stored as JSON text."""
    filters_json = json.dumps([dict(f) for f in exclusion_filters])
    encryption_json = json.dumps(dict(encryption) if encryption else {"encryptionType": "AES256"})
    row = yield Q(
        "INSERT INTO repositories (account_id, region, name, created_at, tag_mutability, "
        "tag_mutability_filters, scan_on_push, encryption) VALUES (?, ?, ?, ?, ?, ?, ?, ?) "
        f"ON CONFLICT (account_id, region, name) DO NOTHING RETURNING {REPO_COLUMNS}",
        (account, region, name, now, tag_mutability, filters_json, int(scan_on_push), encryption_json), "one")
    if row is not None:
        return Created(RepoRow(*row), True)
    existing = yield from get_repository(account, region, name)
    assert existing is not None
    return Created(existing, False)


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
    """Record the blob and link it; BlobCondemned (nothing written) while a collection deletes it."""
    if not (yield from gc.linking(digest, now)):
        raise gc.BlobCondemned(digest)
    yield Q("INSERT INTO blobs (digest, size, created_at) VALUES (?, ?, ?) ON CONFLICT (digest) DO NOTHING",
            (digest, size, now))
    yield Q("INSERT INTO repository_blobs (repository_id, digest, created_at) VALUES (?, ?, ?) "
            "ON CONFLICT (repository_id, digest) DO NOTHING", (repo_id, digest, now))


def unlink_blob(repo_id: int, digest: str) -> Txn[bool]:
    n = yield Q("DELETE FROM repository_blobs WHERE repository_id = ? AND digest = ?", (repo_id, digest))
    return bool(n)


def mount_blob(repo_id: int, source_id: int, digest: str, now: float) -> Txn[int | None]:
    """Link a blob linked to `source` into `repo`; its size, or None (nothing written) when `source` lacks it."""
    if not (yield from gc.linking(digest, now)):  # first: the lock order of berth/db/gc.py
        return None
    row = yield Q("SELECT b.size FROM repository_blobs rb JOIN blobs b ON b.digest = rb.digest "
                  "WHERE rb.repository_id = ? AND rb.digest = ?", (source_id, digest), "one", lock="KEY SHARE")
    if row is None:
        return None
    yield from link_blob(repo_id, digest, int(row[0]), now)
    return int(row[0])


def linked_blobs(repo_id: int, digests: Sequence[str]) -> Txn[set[str]]:
    return (yield from _present("repository_blobs", repo_id, digests))


def _present(table: str, repo_id: int, digests: Sequence[str], lock: Lock | None = None) -> Txn[set[str]]:
    """Which of `digests` have a row in `table` (repository_blobs or manifests) for the repository;
    with `lock`, those rows stay locked until the transaction ends."""
    found: set[str] = set()
    for chunk in _chunks(digests, 500):
        marks = ", ".join("?" * len(chunk))
        rows = yield Q(f"SELECT digest FROM {table} WHERE repository_id = ? AND digest IN ({marks})",
                       (repo_id, *chunk), "all", lock=lock)
        found.update(r[0] for r in rows)
    return found


# manifests and tags

MANIFEST_COLUMNS = "digest, media_type, body, subject_digest"


@dataclass(frozen=True, slots=True)
class ManifestRow:
    digest: str
    media_type: str
    body: bytes
    subject_digest: str | None


def _manifest(row: Any) -> ManifestRow | None:
    return None if row is None else ManifestRow(row[0], row[1], bytes(row[2]), row[3])


def manifest_by_digest(repo_id: int, digest: str) -> Txn[ManifestRow | None]:
    row = yield Q(f"SELECT {MANIFEST_COLUMNS} FROM manifests WHERE repository_id = ? AND digest = ? "
                  "AND image_status = 'ACTIVE'", (repo_id, digest), "one")  # archived: not pullable
    return _manifest(row)


def manifest_by_tag(repo_id: int, tag: str) -> Txn[ManifestRow | None]:
    row = yield Q("SELECT m.digest, m.media_type, m.body, m.subject_digest FROM tags t "
                  "JOIN manifests m ON m.repository_id = t.repository_id AND m.digest = t.digest "
                  "WHERE t.repository_id = ? AND t.name = ? AND m.image_status = 'ACTIVE'", (repo_id, tag), "one")
    return _manifest(row)


def present_manifests(repo_id: int, digests: Sequence[str]) -> Txn[set[str]]:
    return (yield from _present("manifests", repo_id, digests))


@dataclass(frozen=True, slots=True)
class NewManifest:
    digest: str
    media_type: str
    artifact_type: str | None
    subject_digest: str | None
    annotations: dict[str, str] | None  # stored as JSON text
    body: bytes
    image_size: int
    refs: tuple[tuple[str, str], ...]  # (child digest, kind): kind config | layer (blobs) | manifest (children)


def tag_digest(repo_id: int, tag: str) -> Txn[str | None]:
    row = yield Q("SELECT digest FROM tags WHERE repository_id = ? AND name = ?", (repo_id, tag), "one")
    return None if row is None else row[0]


class PutOutcome(Enum):
    STORED = "stored"
    TAG_LOCKED = "tag_locked"  # the tag is immutable and names another digest
    ALREADY_EXISTS = "already_exists"  # only_new: the tag (or, untagged, the repository) has it already
    REPOSITORY_UNKNOWN = "repository_unknown"
    BLOB_UNKNOWN = "blob_unknown"  # `missing`: a config or layer not linked to the repository
    CHILD_UNKNOWN = "child_unknown"  # `missing`: an index entry not in the repository


@dataclass(frozen=True, slots=True)
class PutResult:
    outcome: PutOutcome
    missing: str | None = None
    previous: str | None = None  # the digest the tag named before, if it named another one
    changed: bool = False  # STORED and something is new: the manifest, or where the tag points


_CLAIM_ATTEMPTS = 5


def put_manifest(repo_id: int, m: NewManifest, tag: str | None, tag_locked: bool, now: float,
                 only_new: bool = False) -> Txn[PutResult]:
    """Store a manifest and point `tag` at it, checking everything it references in the same transaction.
    Nothing is written unless the outcome is STORED. `only_new` refuses a push that changes nothing (ECR)."""
    repo = yield Q("SELECT id FROM repositories WHERE id = ?", (repo_id,), "one", lock="KEY SHARE")
    if repo is None:
        return PutResult(PutOutcome.REPOSITORY_UNKNOWN)
    if only_new and tag is None and (yield from _present("manifests", repo_id, [m.digest])):
        return PutResult(PutOutcome.ALREADY_EXISTS)
    for kinds, table, outcome in ((("config", "layer"), "repository_blobs", PutOutcome.BLOB_UNKNOWN),
                                  (("manifest",), "manifests", PutOutcome.CHILD_UNKNOWN)):
        wanted = list(dict.fromkeys(d for d, kind in m.refs if kind in kinds))
        if wanted:
            found = yield from _present(table, repo_id, wanted, lock="KEY SHARE")
            missing = [d for d in wanted if d not in found]
            if missing:
                return PutResult(outcome, missing=missing[0])
    previous = None
    tag_changed = False
    if tag is not None:
        for _ in range(_CLAIM_ATTEMPTS):
            row = yield Q("SELECT digest FROM tags WHERE repository_id = ? AND name = ?", (repo_id, tag), "one",
                          lock="UPDATE")
            if row is None:
                n = yield Q("INSERT INTO tags (repository_id, name, digest, updated_at) VALUES (?, ?, ?, ?) "
                            "ON CONFLICT (repository_id, name) DO NOTHING", (repo_id, tag, m.digest, now))
                if n:
                    tag_changed = True
                    break
                continue  # another writer inserted it first: read it again, now locked
            if row[0] == m.digest:
                if only_new:
                    return PutResult(PutOutcome.ALREADY_EXISTS)
                break
            if tag_locked:
                return PutResult(PutOutcome.TAG_LOCKED, previous=row[0])
            previous, tag_changed = row[0], True
            yield Q("UPDATE tags SET digest = ?, updated_at = ? WHERE repository_id = ? AND name = ?",
                    (m.digest, now, repo_id, tag))
            break
        else:
            raise RuntimeError(f"tag {tag!r} could not be claimed in {_CLAIM_ATTEMPTS} attempts")
    # An upsert that keeps the first push time, and locks an existing row against a concurrent delete.
    row = yield Q(
        "INSERT INTO manifests (repository_id, digest, media_type, artifact_type, subject_digest, annotations, "
        "body, image_size, pushed_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?) "
        "ON CONFLICT (repository_id, digest) DO UPDATE SET pushed_at = manifests.pushed_at, image_status = 'ACTIVE' "
        "RETURNING pushed_at",  # a re-push restores an archived image
        (repo_id, m.digest, m.media_type, m.artifact_type, m.subject_digest,
         None if m.annotations is None else json.dumps(m.annotations), m.body, m.image_size, now), "one")
    inserted = float(row[0]) == now  # inserted now (or pushed at this very instant before: the refs are there)
    if inserted:
        for child, kind in m.refs:
            yield Q("INSERT INTO manifest_refs (repository_id, manifest_digest, child_digest, kind) "
                    "VALUES (?, ?, ?, ?) ON CONFLICT DO NOTHING", (repo_id, m.digest, child, kind))
    return PutResult(PutOutcome.STORED, previous=previous, changed=inserted or tag_changed)


def manifest_parents(repo_id: int, digest: str) -> Txn[list[str]]:
    """Indexes in the repository that list `digest` as a child."""
    rows = yield Q("SELECT manifest_digest FROM manifest_refs WHERE repository_id = ? AND child_digest = ? "
                   "AND kind = 'manifest' ORDER BY manifest_digest", (repo_id, digest), "all")
    return [r[0] for r in rows]


class DeleteOutcome(Enum):
    DELETED = "deleted"  # the image (manifest and every tag) is gone
    UNTAGGED = "untagged"  # only the tag is gone
    UNKNOWN = "unknown"  # no such image, or no such tag
    MISMATCH = "mismatch"  # the tag names another digest than the one given
    REFERENCED = "referenced"  # nothing deleted: indexes (`parents`) list the image


@dataclass(frozen=True, slots=True)
class Deletion:
    outcome: DeleteOutcome
    digest: str | None = None
    tags: tuple[str, ...] = ()  # the tags removed
    parents: tuple[str, ...] = ()
    referrers: tuple[str, ...] = ()  # DELETED: the referrers deleted with it (their referrers too)


def delete_image(repo_id: int, digest: str) -> Txn[Deletion]:
    """Delete an image (a manifest) with all its tags, unless an index in the repository lists it."""
    rows = yield Q("SELECT name FROM tags WHERE repository_id = ? AND digest = ? ORDER BY name",
                   (repo_id, digest), "all", lock="UPDATE")
    row = yield Q("SELECT digest FROM manifests WHERE repository_id = ? AND digest = ?", (repo_id, digest), "one",
                  lock="UPDATE")
    if row is None:
        return Deletion(DeleteOutcome.UNKNOWN, digest)
    return (yield from _delete_locked(repo_id, digest, tuple(r[0] for r in rows)))


def _delete_locked(repo_id: int, digest: str, tags: tuple[str, ...]) -> Txn[Deletion]:
    """The rest of a delete, once the manifest row is locked: refuse if referenced, else delete."""
    parents = yield from manifest_parents(repo_id, digest)
    if parents:
        return Deletion(DeleteOutcome.REFERENCED, digest, parents=tuple(parents))
    rows = yield Q("SELECT name FROM tags WHERE repository_id = ? AND digest = ? ORDER BY name",
                   (repo_id, digest), "all")
    yield from _drop_manifest(repo_id, digest)
    referrers = yield from _drop_referrers(repo_id, digest)
    return Deletion(DeleteOutcome.DELETED, digest, tuple(sorted({*tags, *(r[0] for r in rows)})),
                    referrers=referrers)


def _drop_manifest(repo_id: int, digest: str) -> Txn[None]:
    """Its refs go with it: what it alone used is left for garbage collection (berth/lifecycle/gc.py)."""
    yield Q("DELETE FROM manifest_refs WHERE repository_id = ? AND manifest_digest = ?", (repo_id, digest))
    yield Q("DELETE FROM tags WHERE repository_id = ? AND digest = ?", (repo_id, digest))
    yield Q("DELETE FROM manifests WHERE repository_id = ? AND digest = ?", (repo_id, digest))


def _drop_referrers(repo_id: int, subject: str) -> Txn[tuple[str, ...]]:
    """Delete the referrers (signatures, SBOMs, attestations) of a deleted subject, and theirs in turn,
    so that no referrers list names what was deleted with it. A referrer an index lists stays (the
    index keeps it pullable). Each is locked FOR UPDATE before its parents are checked, as in delete_image."""
    gone: list[str] = []
    todo = [subject]
    while todo:
        rows = yield Q("SELECT digest FROM manifests WHERE repository_id = ? AND subject_digest = ? ORDER BY digest",
                       (repo_id, todo.pop()), "all", lock="UPDATE")
        for (digest,) in rows:
            if digest in gone or (yield from manifest_parents(repo_id, digest)):
                continue
            yield from _drop_manifest(repo_id, digest)
            gone.append(digest)
            todo.append(digest)
    return tuple(gone)


def remove_tag(repo_id: int, tag: str, expected: str | None = None, last_takes_image: bool = False) -> Txn[Deletion]:
    """Remove `tag` (if it names `expected`, when given). With `last_takes_image` (ECR's BatchDeleteImage),
    an image's last tag takes the image with it, unless an index lists the image (then nothing changes)."""
    row = yield Q("SELECT digest FROM tags WHERE repository_id = ? AND name = ?", (repo_id, tag), "one",
                  lock="UPDATE")
    if row is None:
        return Deletion(DeleteOutcome.UNKNOWN)
    digest: str = row[0]
    if expected is not None and digest != expected:
        return Deletion(DeleteOutcome.MISMATCH, digest)
    if last_takes_image:
        image = yield Q("SELECT digest FROM manifests WHERE repository_id = ? AND digest = ?", (repo_id, digest),
                        "one", lock="UPDATE")
        others = yield Q("SELECT COUNT(*) FROM tags WHERE repository_id = ? AND digest = ? AND name <> ?",
                         (repo_id, digest, tag), "one")
        if image is not None and int(others[0]) == 0:
            return (yield from _delete_locked(repo_id, digest, (tag,)))
    yield Q("DELETE FROM tags WHERE repository_id = ? AND name = ?", (repo_id, tag))
    return Deletion(DeleteOutcome.UNTAGGED, digest, (tag,))


def list_tags(repo_id: int, after: str, limit: int) -> Txn[list[str]]:
    rows = yield Q("SELECT name FROM tags WHERE repository_id = ? AND name > ? ORDER BY name LIMIT ?",
                   (repo_id, after, limit), "all")
    return [r[0] for r in rows]


@dataclass(frozen=True, slots=True)
class Referrer:
    digest: str
    media_type: str
    artifact_type: str | None
    annotations: dict[str, str] | None
    size: int  # of the manifest's bytes


def referrers(repo_id: int, subject: str) -> Txn[list[Referrer]]:
    """The manifests naming `subject`, in digest order."""
    rows = yield Q("SELECT digest, media_type, artifact_type, annotations, LENGTH(body) FROM manifests "
                   "WHERE repository_id = ? AND subject_digest = ? ORDER BY digest", (repo_id, subject), "all")
    return [Referrer(r[0], r[1], r[2], None if r[3] is None else json.loads(r[3]), int(r[4])) for r in rows]


def _chunks(items: Sequence[str], size: int) -> Iterable[Sequence[str]]:
    for i in range(0, len(items), size):
        yield items[i:i + size]


# resource tags (TagResource / condition keys aws:ResourceTag/…)

def repository_tags(account: str, region: str, name: str) -> Txn[dict[str, str]]:
    rows = yield Q("SELECT t.key, t.value FROM repositories r JOIN repository_tags t ON t.repository_id = r.id "
                   "WHERE r.account_id = ? AND r.region = ? AND r.name = ? ORDER BY t.key",
                   (account, region, name), "all")
    return {r[0]: r[1] for r in rows}
