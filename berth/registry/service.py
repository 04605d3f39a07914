"""The registry's rules, shared by every face (OCI /v2 and the ECR API)."""

from __future__ import annotations

import asyncio
import hashlib
import logging
import os
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Protocol

from berth.db import archive as qa
from berth.db import gc as qg
from berth.db import images as qi
from berth.db import jobs as qj
from berth.db import registry as q
from berth.db.registry import DeleteOutcome, Deletion, ManifestRow, NewManifest, PutOutcome
from berth.db.store import Backend
from berth.registry import changes, manifests
from berth.registry.errors import (
    BlobReferenced,
    BlobUnknown,
    DigestInvalid,
    ImageAlreadyExists,
    ImageDigestMismatch,
    ManifestBlobUnknown,
    ManifestReferenced,
    ManifestUnknown,
    NameUnknown,
    TagImmutable,
)
from berth.registry.model import Referrer, Repository
from berth.registry.names import check_digest, check_name, check_tag, is_digest
from berth.registry.uploads import READ_CHUNK, Uploads
from berth.storage import BlobReader, BlobStore

ALL = 1 << 62  # "no limit" for listings
PULL_RECORD_INTERVAL = 3600.0  # write an image's last_pulled_at at most this often per process (ECR: daily)
REFRESH_AFTER = 1800.0  # seconds: a blob read restarts its gc grace period at most this often (half of 1 h)
PULL_TIME_JOB = "registry.pull_time"  # one job per image, coalesced by key; berth/jobs/tasks.py writes it

log = logging.getLogger("berth.registry")


@dataclass(frozen=True, slots=True)
class Manifest:
    digest: str
    media_type: str
    body: bytes
    subject: str | None


class TemplateCreator(Protocol):
    async def create_repository_from_template(
            self, account: str, region: str, name: str, applied_for: str,
            may_create: Callable[[], Awaitable[None]] | None = None,
            fallback_defaults: bool = False) -> tuple[Repository, bool]: ...


class PullThrough(Protocol):
    """The pull-through cache, asked only when a pull misses (berth/replication/pullthrough.py)."""

    def covers(self, account: str, region: str, name: str) -> bool: ...

    def stale(self, account: str, region: str, name: str, reference: str) -> bool: ...

    async def manifest(self, account: str, region: str, name: str, reference: str,
                       may_import: Callable[[bool], Awaitable[None]] | None,
                       cached: Manifest | None) -> Manifest | None: ...

    async def blob_size(self, repo: Repository, digest: str) -> int | None: ...

    def reader(self, digest: str, start: int, end: int) -> AsyncIterator[bytes] | None: ...

    async def refresh_referrers(self, repo: Repository, subject: str,
                                may_import: Callable[[bool], Awaitable[None]] | None) -> None: ...


@dataclass(frozen=True, slots=True)
class PreparedManifest:
    tag: str | None
    digest: str
    body: bytes
    parsed: manifests.ParsedManifest


class RegistryService:
    def __init__(self, db: Backend, blobs: BlobStore, uploads: Uploads, create_on_push: bool = False,
                 clock: Callable[[], float] = time.time, refresh_after: float = REFRESH_AFTER) -> None:
        self.db = db
        self.blobs = blobs
        self.uploads = uploads
        self.create_on_push = create_on_push
        self.clock = clock
        self.refresh_after = refresh_after  # half the garbage-collection grace period (app.py)
        # set by app.py: creation templates (CREATE_ON_PUSH) and the pull-through cache (a pull that misses)
        self.templates: TemplateCreator | None = None
        self.pull_through: PullThrough | None = None
        self.archive_store = False  # set by app.py: a push brings back its blobs in the archive store
        # Read caches for the hot paths, dropped whenever any writer commits (db.version(): SQLite's
        # data_version; on PostgreSQL the changes every node hears by LISTEN/NOTIFY). An entry is kept only
        # if no commit was heard while it was read, so a read racing a write never caches the old value.
        self._version: int | None = None
        self._repos: dict[tuple[str, str, str], Repository] = {}
        self._pulls: dict[tuple[str, str, str, str], Manifest] = {}
        # Pull times: (account, region, name, digest) -> when last queued for writing; written off the request path.
        self._pull_marks: dict[tuple[str, str, str, str], float] = {}
        self._pull_queue: dict[tuple[str, str, str, str], tuple[float, str | None]] = {}
        self._pull_writer: asyncio.Task[None] | None = None

    def _fresh(self) -> int | None:
        """The version the caches hold now, or None (caches off: the backend cannot tell changes)."""
        v = self.db.version()
        if v is None:
            return None
        if v != self._version:
            self._version = v
            self._repos.clear()
            self._pulls.clear()
        return v

    async def _confirmed(self) -> int | None:
        """Before answering from a cache: hear of every commit made before now, on any node (db.sync())."""
        await self.db.sync()
        return self._fresh()

    def _unchanged(self, v: int | None) -> bool:
        return v is not None and self.db.version() == v

    # repositories

    async def repository(self, account: str, region: str, name: str, for_push: bool = False,
                         may_create: Callable[[], Awaitable[None]] | None = None) -> Repository:
        """The repository, or NAME_UNKNOWN. A push to a missing one creates it when create-on-push is on,
        after `may_create` (the caller's authorization of ecr:CreateRepository) has not raised."""
        check_name(name)
        key = (account, region, name)
        v = self._fresh()
        if v is not None and key in self._repos:
            v = await self._confirmed()
            if v is not None and (repo := self._repos.get(key)) is not None:
                return repo
        row = await self.db.read(q.get_repository, account, region, name)
        if row is None and for_push and self.templates is not None:  # a CREATE_ON_PUSH template, or the switch
            repo, _ = await self.templates.create_repository_from_template(
                account, region, name, "CREATE_ON_PUSH", may_create, fallback_defaults=self.create_on_push)
            return repo
        if row is None and for_push and self.create_on_push:
            if may_create is not None:
                await may_create()
            row, _ = await self.db.write(changes.create_repository, account, region, name, self.clock())
        if row is None:
            raise NameUnknown(f"repository {name!r} not found", detail={"name": name})
        repo = Repository.from_row(row)
        if self._unchanged(v):
            self._repos[key] = repo
        return repo

    async def create_repository(self, account: str, region: str, name: str) -> tuple[Repository, bool]:
        check_name(name)
        row, created = await self.db.write(changes.create_repository, account, region, name, self.clock())
        return Repository.from_row(row), created

    async def resource_tags(self, account: str, region: str, name: str) -> dict[str, str]:
        return await self.db.read(q.repository_tags, account, region, name)

    async def catalog(self, account: str, region: str, last: str, n: int | None) -> list[str]:
        return await self.db.read(q.list_repository_names, account, region, last, ALL if n is None else n)

    # blobs

    async def blob_size(self, repo: Repository, digest: str) -> int:
        """The size of a blob linked to the repository. A HEAD or GET also restarts the blob's garbage-collection
        grace period when more than `refresh_after` has passed (a client that found it may reference it next:
        HEAD, then a manifest PUT); a blob a collection is deleting is unknown (the client uploads it again)."""
        check_digest(digest)
        found = await self.db.read(qi.pullable_blob, repo.id, digest)  # not the layers of archived images
        if found is None:
            arriving = None if self.pull_through is None else await self.pull_through.blob_size(repo, digest)
            if arriving is None:  # else a blob of an image being pulled through
                raise BlobUnknown("blob unknown to registry", detail={"digest": digest})
            return arriving
        size, linked_at = found
        now = self.clock()
        if (linked_at is None or now - linked_at > self.refresh_after) \
                and not await self.db.write(qg.refresh, repo.id, digest, now):
            raise BlobUnknown("blob unknown to registry", detail={"digest": digest})
        return size

    async def blob_file(self, digest: str, size: int) -> str | None:
        """A local file holding the whole stored blob, for the edge to hand to a server that sends files
        itself; None when it must be streamed (object storage, or a pull-through blob still arriving:
        its file appears only once it is whole)."""
        return await asyncio.get_running_loop().run_in_executor(self.uploads.pool, self.blobs.local_path, digest,
                                                                size)

    async def read_blob(self, digest: str, start: int, end: int) -> AsyncIterator[bytes]:
        """Bytes [start, end) of a blob: one ranged reader, 1 MiB per read on a worker thread."""
        loop = asyncio.get_running_loop()
        pool = self.uploads.pool

        def first() -> tuple[BlobReader, bytes]:
            reader = self.blobs.open(digest, start, end)
            return reader, reader.read(min(READ_CHUNK, end - start))

        if end <= start:
            return
        arriving = self.pull_through.reader(digest, start, end) if self.pull_through is not None else None
        if arriving is not None:  # still coming from a pull-through upstream: follow it
            async for chunk in arriving:
                yield chunk
            return
        reader, data = await loop.run_in_executor(pool, first)
        try:
            offset = start
            while True:
                if not data:
                    raise OSError(f"blob {digest} is shorter than recorded")
                offset += len(data)
                yield data
                if offset >= end:
                    return
                data = await loop.run_in_executor(pool, reader.read, min(READ_CHUNK, end - offset))
        finally:
            reader.close()

    async def read_file(self, path: str, start: int, end: int) -> AsyncIterator[bytearray]:
        """Bytes [start, end) of a local blob file (from `blob_file`), read into one reused buffer.

        Each chunk is that buffer, valid until the next one is asked for: the ASGI server copies a
        body when it is sent, so a pull allocates nothing per chunk (flat memory however many pulls
        run) and costs one executor hop and one send per READ_CHUNK. A bytearray, not a memoryview:
        granian takes a memoryview element by element (25x slower)."""
        loop = asyncio.get_running_loop()
        pool = self.uploads.pool
        fd = await loop.run_in_executor(pool, os.open, path, os.O_RDONLY)
        try:
            buf = bytearray(min(READ_CHUNK, max(end - start, 0)))
            offset = start
            while offset < end:
                if end - offset < len(buf):  # the last, shorter chunk
                    buf = bytearray(end - offset)
                n = await loop.run_in_executor(pool, os.preadv, fd, [buf], offset)
                if n < len(buf):  # regular files read whole up to their end
                    raise OSError(f"blob file {path} is shorter than recorded")
                offset += n
                yield buf
        finally:
            os.close(fd)

    async def delete_blob(self, repo: Repository, digest: str) -> None:
        """Unlink a blob from the repository (garbage collection frees its bytes once nothing links it);
        refused (BlobReferenced) while a manifest of the repository uses it, which would stop pulling."""
        check_digest(digest)
        result = await self.db.write(qg.unlink_unreferenced, repo.id, digest)
        if result.outcome is qg.Unlink.UNKNOWN:
            raise BlobUnknown("blob unknown to registry", detail={"digest": digest})
        if result.outcome is qg.Unlink.REFERENCED:
            raise BlobReferenced(f"blob {digest} is used by manifests of repository {repo.name!r}; delete them "
                                 "first", detail={"digest": digest, "manifests": list(result.manifests)})

    async def mount_blob(self, repo: Repository, source: Repository, digest: str) -> int | None:
        """Link a blob readable from `source` into `repo`; its size, or None when `source` lacks it."""
        check_digest(digest)
        return await self.db.write(q.mount_blob, repo.id, source.id, digest, self.clock())

    # manifests

    @staticmethod
    def _manifest(row: ManifestRow) -> Manifest:
        return Manifest(row.digest, row.media_type, row.body, row.subject_digest)

    async def get_manifest(self, repo: Repository, reference: str) -> Manifest:
        if is_digest(reference):
            check_digest(reference)
            row = await self.db.read(q.manifest_by_digest, repo.id, reference)
            if row is None:
                raise ManifestUnknown("manifest unknown", detail={"digest": reference})
            return self._manifest(row)
        check_tag(reference)
        row = await self.db.read(q.manifest_by_tag, repo.id, reference)
        if row is None:
            raise ManifestUnknown("manifest unknown", detail={"tag": reference})
        return self._manifest(row)

    async def pull_manifest(self, account: str, region: str, name: str, reference: str,
                            record: bool = True, principal: str | None = None,
                            may_import: Callable[[bool], Awaitable[None]] | None = None) -> Manifest:
        """The hot path of every pull: one freshness check, then memory while nothing was written.

        `record` notes the pull for the image's last pull time (a dict check; the write happens later).
        A miss under a pull-through cache rule is asked of the upstream, after `may_import(creating)` (the
        caller's authorization of ecr:BatchImportUpstreamImage, and of ecr:CreateRepository if creating)."""
        key = (account, region, name, reference)
        pt = self.pull_through
        v = self._fresh()
        if v is not None and key in self._pulls:
            v = await self._confirmed()
        if v is not None and (hit := self._pulls.get(key)) is not None and \
                (pt is None or not pt.stale(account, region, name, reference)):
            if record:
                self.note_pull(account, region, name, hit.digest, principal)
            return hit
        try:
            m = await self.get_manifest(await self.repository(account, region, name), reference)
        except (NameUnknown, ManifestUnknown):
            fetched = None if pt is None else await pt.manifest(account, region, name, reference, may_import, None)
            if fetched is None:
                raise
            return fetched  # not stored yet (its blobs are arriving): not cached here, no pull time
        if pt is not None and pt.stale(account, region, name, reference):
            m = await pt.manifest(account, region, name, reference, may_import, m) or m
        if len(self._pulls) < 10_000 and self._unchanged(v):
            self._pulls[key] = m
        if record:
            self.note_pull(account, region, name, m.digest, principal)
        return m

    def note_pull(self, account: str, region: str, name: str, digest: str, principal: str | None = None) -> None:
        """Remember that an image was pulled now. At most once per PULL_RECORD_INTERVAL per image, hand the
        time to a background task that enqueues one pull-time job per image (never a write in the request).
        The job skips a `principal` excluded from pull-time updates (RegisterPullTimeUpdateExclusion)."""
        key = (account, region, name, digest)
        now = self.clock()
        last = self._pull_marks.get(key)
        if last is not None and now - last < PULL_RECORD_INTERVAL:
            return
        if len(self._pull_marks) >= 100_000:
            self._pull_marks.clear()
        self._pull_marks[key] = now
        self._pull_queue[key] = (now, principal)
        if self._pull_writer is None or self._pull_writer.done():
            self._pull_writer = asyncio.get_running_loop().create_task(self._write_pulls())

    async def _write_pulls(self) -> None:
        while self._pull_queue:
            batch = list(self._pull_queue.items())
            self._pull_queue.clear()
            jobs = [qj.NewJob(PULL_TIME_JOB, {"account": a, "region": r, "repository": n, "digest": d, "at": when,
                                              **({"principal": who} if who else {})},
                              key=f"{a}/{r}/{n}@{d}") for (a, r, n, d), (when, who) in batch]
            try:
                await self.db.write(qj.enqueue_many, jobs, self.clock())
            except Exception:  # best effort: forget the marks so that the next pull tries again
                log.exception("queueing %d image pull times failed", len(batch))
                for key, _ in batch:
                    self._pull_marks.pop(key, None)
                return

    @staticmethod
    def prepare_manifest(reference: str, body: bytes, content_type: str | None) -> PreparedManifest:
        """Everything about a pushed manifest that needs no repository: grammar, JSON shape, digest."""
        tag = None
        if is_digest(reference):
            check_digest(reference)
        else:
            tag = check_tag(reference)
        parsed = manifests.parse(body, content_type)
        algorithm = reference.split(":", 1)[0] if tag is None else "sha256"
        digest = f"{algorithm}:" + hashlib.new(algorithm, body).hexdigest()
        if tag is None and digest != reference:
            raise DigestInvalid("manifest digest does not match its content", detail={"digest": reference})
        return PreparedManifest(tag, digest, body, parsed)

    async def put_manifest(self, repo: Repository, reference: str | PreparedManifest, body: bytes = b"",
                           content_type: str | None = None, only_new: bool = False,
                           replicate: bool = True) -> Manifest:
        """Store a manifest (and its tag). Everything it references is checked in the transaction that writes
        it. `only_new` (ECR's PutImage) refuses, with ImageAlreadyExists, a push that would change nothing."""
        prepared = reference if isinstance(reference, PreparedManifest) else \
            self.prepare_manifest(reference, body, content_type)
        tag, digest, body, parsed = prepared.tag, prepared.digest, prepared.body, prepared.parsed
        locked = tag is not None and repo.mutability.is_immutable(tag)
        row = NewManifest(digest, parsed.media_type, parsed.artifact_type,
                          parsed.subject.digest if parsed.subject else None, parsed.annotations or None,
                          body, parsed.image_size, parsed.refs())
        result = await self.db.write(changes.push, repo, row, tag, locked, self.clock(), only_new, replicate)
        if result.outcome is PutOutcome.TAG_LOCKED:
            raise TagImmutable(f"tag {tag!r} is immutable in repository {repo.name!r}", detail={"tag": tag})
        if result.outcome is PutOutcome.BLOB_UNKNOWN:
            raise ManifestBlobUnknown("manifest references a blob unknown to the repository",
                                      detail={"digest": result.missing})
        if result.outcome is PutOutcome.CHILD_UNKNOWN:
            raise ManifestUnknown("index references a manifest unknown to the repository",
                                  detail={"digest": result.missing})
        if result.outcome is PutOutcome.REPOSITORY_UNKNOWN:
            raise NameUnknown(f"repository {repo.name!r} not found", detail={"name": repo.name})
        if result.outcome is PutOutcome.ALREADY_EXISTS:
            what = f"digest '{digest}' and tag '{tag}'" if tag is not None else f"digest '{digest}'"
            raise ImageAlreadyExists(f"Image with {what} already exists in the repository with name "
                                     f"'{repo.name}' in registry with id '{repo.account_id}'")
        self._pull_marks.pop((repo.account_id, repo.region, repo.name, digest), None)  # a re-push: record anew
        if self.archive_store:  # its blobs in the archive store are read from there until a placement brings them back
            blobs = [d for d, kind in row.refs if kind != "manifest"]
            if blobs and (archived := await self.db.read(qa.in_archive, blobs)):
                await self.db.write(qa.queue_places, sorted(archived), self.clock())
        return Manifest(digest, parsed.media_type, body, row.subject_digest)

    # deletion: one method per meaning, for both faces

    async def delete_image(self, repo: Repository, digest: str, replicate: bool = True) -> Deletion:
        """Delete an image (a manifest) and all its tags: ManifestUnknown, or ManifestReferenced (nothing
        deleted) while an index in the repository lists it."""
        check_digest(digest)
        return self._deleted(await self.db.write(changes.delete_image, repo, digest, self.clock(), replicate),
                             digest=digest)

    async def remove_tag(self, repo: Repository, tag: str, expected: str | None = None,
                         last_takes_image: bool = False, replicate: bool = True) -> Deletion:
        """Remove a tag (ManifestUnknown if there is none; ImageDigestMismatch if it names another digest
        than `expected`). With `last_takes_image` (ECR's rule) an image's last tag takes the image with it,
        or nothing changes (ManifestReferenced) while an index lists the image."""
        check_tag(tag)
        if expected is not None:
            check_digest(expected)
        d = await self.db.write(changes.remove_tag, repo, tag, expected, last_takes_image, self.clock(), replicate)
        return self._deleted(d, tag=tag)

    @staticmethod
    def _deleted(d: Deletion, **what: str) -> Deletion:
        if d.outcome is DeleteOutcome.UNKNOWN:
            raise ManifestUnknown("tag unknown" if "tag" in what else "manifest unknown", detail=what)
        if d.outcome is DeleteOutcome.MISMATCH:
            raise ImageDigestMismatch("the tag names another digest", detail={**what, "digest": d.digest})
        if d.outcome is DeleteOutcome.REFERENCED:
            raise ManifestReferenced("manifest is referenced by an index; delete the index first",
                                     detail={"digest": d.digest}, parents=list(d.parents))
        return d

    async def delete_manifest(self, repo: Repository, reference: str) -> None:
        """`DELETE /v2/<name>/manifests/<reference>`: a digest deletes the image, a tag only the tag."""
        if is_digest(reference):
            await self.delete_image(repo, reference)
        else:
            await self.remove_tag(repo, reference)

    async def list_tags(self, repo: Repository, last: str, n: int | None) -> list[str]:
        return await self.db.read(q.list_tags, repo.id, last, ALL if n is None else n)

    async def referrers(self, repo: Repository, subject: str,
                        artifact_types: Sequence[str] | None = None,
                        may_import: Callable[[bool], Awaitable[None]] | None = None) -> list[Referrer]:
        """The manifests whose subject is `subject`, in digest order; only these artifact types if given.
        Under a pull-through cache rule, the upstream's referrers are brought first (when due; `may_import`
        as for a pull)."""
        check_digest(subject)
        if self.pull_through is not None:
            await self.pull_through.refresh_referrers(repo, subject, may_import)
        return [Referrer(r.digest, r.media_type, r.artifact_type, r.size, r.annotations)
                for r in await self.db.read(q.referrers, repo.id, subject)
                if not artifact_types or r.artifact_type in artifact_types]
