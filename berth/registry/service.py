"""The registry's rules, shared by every face (OCI /v2 and the ECR API)."""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass

from berth.db import images as qi
from berth.db import registry as q
from berth.db.registry import NewManifest, RepoRow
from berth.db.store import Backend
from berth.registry import manifests
from berth.registry.errors import (
    BlobUnknown,
    DigestInvalid,
    ManifestBlobUnknown,
    ManifestReferenced,
    ManifestUnknown,
    NameUnknown,
    TagImmutable,
)
from berth.registry.immutability import tag_is_immutable
from berth.registry.names import check_digest, check_name, check_tag, is_digest
from berth.registry.uploads import READ_CHUNK, Uploads
from berth.storage import BlobReader, BlobStore

ALL = 1 << 62  # "no limit" for listings
PULL_RECORD_INTERVAL = 3600.0  # write an image's last_pulled_at at most this often per process (ECR: daily)

log = logging.getLogger("berth.registry")


@dataclass(frozen=True, slots=True)
class Manifest:
    digest: str
    media_type: str
    body: bytes
    subject: str | None


@dataclass(frozen=True, slots=True)
class PreparedManifest:
    tag: str | None
    digest: str
    body: bytes
    parsed: manifests.ParsedManifest


class RegistryService:
    def __init__(self, db: Backend, blobs: BlobStore, uploads: Uploads, create_on_push: bool = False,
                 clock: Callable[[], float] = time.time) -> None:
        self.db = db
        self.blobs = blobs
        self.uploads = uploads
        self.create_on_push = create_on_push
        self.clock = clock
        # Read caches for the hot paths, dropped whenever any writer commits (db.version()).
        self._version: int | None = None
        self._repos: dict[tuple[str, str, str], RepoRow] = {}
        self._pulls: dict[tuple[str, str, str, str], Manifest] = {}
        # Pull times: (account, region, name, digest) -> when last queued for writing; written off the request path.
        self._pull_marks: dict[tuple[str, str, str, str], float] = {}
        self._pull_queue: dict[tuple[str, str, str, str], float] = {}
        self._pull_writer: asyncio.Task[None] | None = None

    def _fresh(self) -> bool:
        v = self.db.version()
        if v is None:
            return False
        if v != self._version:
            self._version = v
            self._repos.clear()
            self._pulls.clear()
        return True

    # repositories

    async def repository(self, account: str, region: str, name: str, for_push: bool = False,
                         may_create: Callable[[], Awaitable[None]] | None = None) -> RepoRow:
        """The repository, or NAME_UNKNOWN. A push to a missing one creates it when create-on-push is on,
        after `may_create` (the caller's authorization of ecr:CreateRepository) has not raised."""
        check_name(name)
        key = (account, region, name)
        cacheable = self._fresh()
        if cacheable and (repo := self._repos.get(key)) is not None:
            return repo
        repo = await self.db.read(q.get_repository, account, region, name)
        if repo is None and for_push and self.create_on_push:
            if may_create is not None:
                await may_create()
            repo, _ = await self.db.write(q.create_repository, account, region, name, self.clock())
        if repo is None:
            raise NameUnknown(f"repository {name!r} not found", detail={"name": name})
        if cacheable:
            self._repos[key] = repo
        return repo

    async def create_repository(self, account: str, region: str, name: str) -> tuple[RepoRow, bool]:
        check_name(name)
        return await self.db.write(q.create_repository, account, region, name, self.clock())

    async def resource_tags(self, account: str, region: str, name: str) -> dict[str, str]:
        return await self.db.read(q.repository_tags, account, region, name)

    async def catalog(self, account: str, region: str, last: str, n: int | None) -> list[str]:
        return await self.db.read(q.list_repository_names, account, region, last, ALL if n is None else n)

    # blobs

    async def blob_size(self, repo: RepoRow, digest: str) -> int:
        check_digest(digest)
        size = await self.db.read(q.repo_blob_size, repo.id, digest)
        if size is None:
            raise BlobUnknown("blob unknown to registry", detail={"digest": digest})
        return size

    async def read_blob(self, digest: str, start: int, end: int) -> AsyncIterator[bytes]:
        """Bytes [start, end) of a blob: one ranged reader, 1 MiB per read on a worker thread."""
        loop = asyncio.get_running_loop()
        pool = self.uploads.pool

        def first() -> tuple[BlobReader, bytes]:
            reader = self.blobs.open(digest, start, end)
            return reader, reader.read(min(READ_CHUNK, end - start))

        if end <= start:
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

    async def delete_blob(self, repo: RepoRow, digest: str) -> None:
        check_digest(digest)
        if not await self.db.write(q.unlink_blob, repo.id, digest):
            raise BlobUnknown("blob unknown to registry", detail={"digest": digest})

    async def mount_blob(self, repo: RepoRow, source: RepoRow, digest: str) -> int | None:
        """Link a blob readable from `source` into `repo`; its size, or None when `source` lacks it."""
        check_digest(digest)
        size = await self.db.read(q.repo_blob_size, source.id, digest)
        if size is None:
            return None
        await self.db.write(q.link_blob, repo.id, digest, size, self.clock())
        return size

    # manifests

    async def get_manifest(self, repo: RepoRow, reference: str) -> Manifest:
        if is_digest(reference):
            check_digest(reference)
            row = await self.db.read(q.manifest_by_digest, repo.id, reference)
            if row is None:
                raise ManifestUnknown("manifest unknown", detail={"digest": reference})
            return Manifest(*row)
        check_tag(reference)
        row = await self.db.read(q.manifest_by_tag, repo.id, reference)
        if row is None:
            raise ManifestUnknown("manifest unknown", detail={"tag": reference})
        return Manifest(*row)

    async def pull_manifest(self, account: str, region: str, name: str, reference: str,
                            record: bool = True) -> Manifest:
        """The hot path of every pull: one freshness check, then memory while nothing was written.

        `record` notes the pull for the image's last pull time (a dict check; the write happens later)."""
        key = (account, region, name, reference)
        cacheable = self._fresh()
        if cacheable and (hit := self._pulls.get(key)) is not None:
            if record:
                self.note_pull(account, region, name, hit.digest)
            return hit
        m = await self.get_manifest(await self.repository(account, region, name), reference)
        if cacheable and len(self._pulls) < 10_000:
            self._pulls[key] = m
        if record:
            self.note_pull(account, region, name, m.digest)
        return m

    def note_pull(self, account: str, region: str, name: str, digest: str) -> None:
        """Remember that an image was pulled now. At most once per PULL_RECORD_INTERVAL per image, queue
        last_pulled_at for a background task that writes everything queued in one transaction."""
        key = (account, region, name, digest)
        now = self.clock()
        last = self._pull_marks.get(key)
        if last is not None and now - last < PULL_RECORD_INTERVAL:
            return
        if len(self._pull_marks) >= 100_000:
            self._pull_marks.clear()
        self._pull_marks[key] = now
        self._pull_queue[key] = now
        if self._pull_writer is None or self._pull_writer.done():
            self._pull_writer = asyncio.get_running_loop().create_task(self._write_pulls())

    async def _write_pulls(self) -> None:
        while self._pull_queue:
            batch = [(*key, when) for key, when in self._pull_queue.items()]
            self._pull_queue.clear()
            try:
                await self.db.write(qi.record_pulls, batch)
            except Exception:  # best effort: forget the marks so that the next pull tries again
                log.exception("recording %d image pull times failed", len(batch))
                for account, region, name, digest, _ in batch:
                    self._pull_marks.pop((account, region, name, digest), None)
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

    async def put_manifest(self, repo: RepoRow, reference: str | PreparedManifest, body: bytes = b"",
                           content_type: str | None = None) -> Manifest:
        prepared = reference if isinstance(reference, PreparedManifest) else \
            self.prepare_manifest(reference, body, content_type)
        tag, digest, body, parsed = prepared.tag, prepared.digest, prepared.body, prepared.parsed
        await self._check_references(repo, parsed)
        locked = tag is not None and tag_is_immutable(repo.tag_mutability, repo.tag_mutability_filters, tag)
        row = NewManifest(digest, parsed.media_type, parsed.artifact_type,
                          parsed.subject.digest if parsed.subject else None,
                          json.dumps(parsed.annotations) if parsed.annotations else None,
                          body, parsed.image_size, parsed.refs())
        if await self.db.write(q.put_manifest, repo.id, row, tag, locked, self.clock()) == "tag_locked":
            raise TagImmutable(f"tag {tag!r} is immutable in repository {repo.name!r}", detail={"tag": tag})
        self._pull_marks.pop((repo.account_id, repo.region, repo.name, digest), None)  # a re-push: record anew
        return Manifest(digest, parsed.media_type, body, row.subject_digest)

    async def _check_references(self, repo: RepoRow, parsed: manifests.ParsedManifest) -> None:
        for refs, lookup, error in (
                (parsed.blobs, q.linked_blobs, ManifestBlobUnknown("manifest references a blob unknown to the "
                                                                   "repository")),
                (parsed.children, q.present_manifests, ManifestUnknown("index references a manifest unknown to "
                                                                       "the repository"))):
            wanted = list(dict.fromkeys(d.digest for d in refs))
            if not wanted:
                continue
            found = await self.db.read(lookup, repo.id, wanted)
            missing = [d for d in wanted if d not in found]
            if missing:
                error.detail = {"digest": missing[0]}
                raise error

    async def delete_manifest(self, repo: RepoRow, reference: str) -> None:
        if not is_digest(reference):
            check_tag(reference)
            if not await self.db.write(q.delete_tag, repo.id, reference):
                raise ManifestUnknown("tag unknown", detail={"tag": reference})
            return
        check_digest(reference)
        result = await self.db.write(q.delete_manifest, repo.id, reference)
        if result == "unknown":
            raise ManifestUnknown("manifest unknown", detail={"digest": reference})
        if result == "referenced":
            raise ManifestReferenced("manifest is referenced by an index; delete the index first",
                                     detail={"digest": reference})

    async def list_tags(self, repo: RepoRow, last: str, n: int | None) -> list[str]:
        return await self.db.read(q.list_tags, repo.id, last, ALL if n is None else n)

    async def referrers(self, repo: RepoRow, subject: str, artifact_type: str | None) -> bytes:
        """The OCI image index of manifests whose subject is `subject`, optionally filtered."""
        check_digest(subject)
        entries = []
        for digest, media_type, art_type, notes, size in await self.db.read(q.referrers, repo.id, subject):
            if artifact_type is not None and art_type != artifact_type:
                continue
            entry: dict[str, object] = {"mediaType": media_type, "digest": digest, "size": size}
            if art_type:
                entry["artifactType"] = art_type
            if notes:
                entry["annotations"] = json.loads(notes)
            entries.append(entry)
        index = {"schemaVersion": 2, "mediaType": manifests.OCI_INDEX, "manifests": entries}
        return json.dumps(index, separators=(",", ":")).encode()
