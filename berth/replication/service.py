"""Replication: the configuration and status the ECR operations read and write (ReplicationService), and
the jobs that copy images to their destinations (Replicator).

A destination (region, registryId) is served by a configured peer deployment when one lists it, else by
this deployment when it serves the region; anything else fails with UNKNOWN_DESTINATION. A copy walks the
image's graph: index children first, then blobs, then the manifest, then its tags (an immutable tag that
names another image at the destination is left out, as ECR does), then its referrers (which follow their
subject). Every step is idempotent: a job run twice, or after a crash, finishes the same copy.
"""

from __future__ import annotations

import fnmatch
import logging
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from berth.db import jobs as qj
from berth.db import replication as q
from berth.db.jobs import Job
from berth.db.store import Backend
from berth.registry import manifests
from berth.registry.errors import ManifestUnknown, NameUnknown, TagImmutable
from berth.registry.images import Images
from berth.registry.model import ImageId, Repository
from berth.registry.service import Manifest, RegistryService
from berth.replication import access, outbox
from berth.replication.creation import create_repository_for_replication
from berth.replication.rules import Configuration, Destination, check, parse

log = logging.getLogger("berth.replication")

# failureCode values (ECR's ReplicationError is free text)
ACCESS_DENIED = "ACCESS_DENIED"
IMAGE_NOT_FOUND = "IMAGE_NOT_FOUND"
UNKNOWN_DESTINATION = "UNKNOWN_DESTINATION"
DESTINATION_UNAVAILABLE = "DESTINATION_UNAVAILABLE"
REPLICATION_ERROR = "REPLICATION_ERROR"


class Permanent(Exception):
    """A failure another attempt cannot mend: recorded as FAILED with its code, not retried."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code


class Retryable(Exception):
    """A failure worth another attempt (the destination is down, answered 5xx …), with its code."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code


# the ECR operations' side

class ReplicationService:
    def __init__(self, db: Backend, clock: Callable[[], float] = time.time) -> None:
        self.db = db
        self.clock = clock

    async def configuration(self, account: str, region: str) -> Configuration:
        return Configuration.from_json(await self.db.read(q.get_config, account, region))

    async def put_configuration(self, account: str, region: str, document: dict[str, Any]) -> Configuration:
        """Validate (ConfigurationInvalid with ECR's wording) and store; images pushed from now on follow it."""
        config = check(parse(document), account, region)
        await self.db.write(q.put_config, account, region, config.to_json(), self.clock())
        return config

    async def statuses(self, repo: Repository, digest: str) -> list[q.StatusRow]:
        return await self.db.read(q.statuses, repo.account_id, repo.region, repo.name, digest)

    async def start_backfill(self, account: str, region: str, dest: Destination) -> tuple[str | None, q.BackfillRow]:
        """(None, the new back-fill), or (the id of the one already running to `dest`, it)."""
        backfill_id = str(uuid.uuid4())
        now = self.clock()

        def txn() -> Any:
            running = yield from q.start_backfill(backfill_id, account, region, dest.registry_id, dest.region, now)
            if running is None:
                yield from qj.enqueue(outbox.BACKFILL_JOB, {"id": backfill_id}, now, key=backfill_id)
            row = yield from q.get_backfill(account, region, running or backfill_id)
            return running, row

        return await self.db.write(txn)  # type: ignore[no-any-return]

    async def backfill(self, account: str, region: str, backfill_id: str) -> q.BackfillRow | None:
        return await self.db.read(q.get_backfill, account, region, backfill_id)

    async def stop_backfill(self, account: str, region: str, backfill_id: str) -> q.BackfillRow | None:
        """PREPARING -> STOPPED; IN_PROGRESS -> STOPPING (the copies queued finish, then STOPPED)."""
        now = self.clock()

        def txn() -> Any:
            yield from q.set_backfill_status(backfill_id, "STOPPED", now, when=("PREPARING",))
            yield from q.set_backfill_status(backfill_id, "STOPPING", None, when=("IN_PROGRESS",))
            yield from q.finish_backfill_if_done(backfill_id, now)
            return (yield from q.get_backfill(account, region, backfill_id))

        return await self.db.write(txn)  # type: ignore[no-any-return]

    async def backfills(self, account: str, region: str, after: tuple[float, str] | None,
                        limit: int) -> list[q.BackfillRow]:
        return await self.db.read(q.list_backfills, account, region, after, limit)

    async def backfill_items(self, backfill_id: str, status: str | None, after: tuple[str, str],
                             limit: int) -> list[q.BackfillItem]:
        return await self.db.read(q.backfill_items, backfill_id, status, after, limit)


# the jobs' side

class Target(Protocol):
    """One destination registry, as the copy walk needs it."""

    async def prepare(self, name: str) -> Any:
        """The destination repository (created when missing); Permanent(ACCESS_DENIED) when refused."""

    async def has_manifest(self, handle: Any, digest: str) -> bool: ...

    async def put_blob(self, handle: Any, source: Repository, digest: str, size: int) -> str:
        """How: "present" (there already), "linked" (shared storage), "mounted" or "sent"."""

    async def put_manifest(self, handle: Any, reference: str, body: bytes, media_type: str) -> bool:
        """Store a manifest by digest or tag; False when the tag is immutable there and names another image."""

    async def delete(self, handle: Any, digest: str, tags: Sequence[str], image: bool) -> None: ...


class LocalTarget:
    """A registry (another account or region) of this deployment: blobs are linked, never copied."""

    def __init__(self, replicator: Replicator, source_account: str, dest: Destination) -> None:
        self.r = replicator
        self.source_account = source_account
        self.dest = dest

    async def _allowed(self, name: str, action: str) -> None:
        decision = await access.replication_allowed(self.r.db, self.source_account, self.dest.registry_id,
                                                    self.dest.region, name, action)
        if not decision.allowed:
            raise Permanent(ACCESS_DENIED, f"{action} on {name} in {self.dest.key()}: {decision.reason}")

    async def prepare(self, name: str) -> Repository:
        await self._allowed(name, access.REPLICATE)
        registry = self.r.registry
        try:
            return await registry.repository(self.dest.registry_id, self.dest.region, name)
        except NameUnknown:
            await self._allowed(name, access.CREATE)
            return await create_repository_for_replication(registry, self.dest.registry_id, self.dest.region, name)

    async def has_manifest(self, handle: Repository, digest: str) -> bool:
        try:
            await self.r.registry.get_manifest(handle, digest)
        except ManifestUnknown:
            return False
        return True

    async def put_blob(self, handle: Repository, source: Repository, digest: str, size: int) -> str:
        if await self.r.registry.mount_blob(handle, source, digest) is None:
            raise Retryable(REPLICATION_ERROR, f"blob {digest} is not linked to the source repository")
        return "linked"

    async def put_manifest(self, handle: Repository, reference: str, body: bytes, media_type: str) -> bool:
        try:
            await self.r.registry.put_manifest(handle, reference, body, media_type, replicate=False)
        except TagImmutable:
            return False
        return True

    async def delete(self, handle: Repository, digest: str, tags: Sequence[str], image: bool) -> None:
        registry = self.r.registry
        try:
            if image:
                await registry.delete_image(handle, digest, replicate=False)
            else:
                for tag in tags:
                    await registry.remove_tag(handle, tag, digest, replicate=False)
        except ManifestUnknown:
            pass  # already gone (or moved on): nothing to do


PeerLookup = Callable[[Destination], Any]  # the peer Target serving a destination, or None


@dataclass
class CopyReport:
    manifests: int = 0
    skipped_tags: tuple[str, ...] = ()
    blobs: dict[str, int] = field(default_factory=dict)  # how -> count (see Target.put_blob)
    bytes_sent: int = 0

    def line(self) -> str:
        hows = ", ".join(f"{n} {how}" for how, n in sorted(self.blobs.items())) or "none"
        return f"{self.manifests} manifests, blobs: {hows}, {self.bytes_sent} bytes sent"


class Replicator:
    def __init__(self, db: Backend, registry: RegistryService, served_regions: Sequence[str],
                 peers: Callable[[str, Destination], Any] | None = None,
                 clock: Callable[[], float] = time.time) -> None:
        self.db = db
        self.registry = registry
        self.images = Images(registry)
        self.served_regions = tuple(served_regions)
        self.peers = peers  # (source account, destination) -> an awaitable of a peer Target, or of None
        self.clock = clock

    async def target(self, source_account: str, dest: Destination) -> Target:
        if self.peers is not None:
            peer = await self.peers(source_account, dest)
            if peer is not None:
                return peer  # type: ignore[no-any-return]
        if dest.region in self.served_regions:
            return LocalTarget(self, source_account, dest)
        raise Permanent(UNKNOWN_DESTINATION, f"no peer serves {dest.key()} and this deployment does not serve "
                                             f"region {dest.region}")

    # the copy job

    async def run_copy(self, job: Job) -> None:
        p = job.payload
        dest = Destination(p["destRegion"], p["destAccount"])
        key = (p["account"], p["region"], p["repository"], p["digest"], dest.registry_id, dest.region)
        backfill = p.get("backfill")
        try:
            report = await self.copy(p["account"], p["region"], p["repository"], p["digest"], dest)
        except Permanent as e:
            log.warning("replication of %s@%s to %s failed: %s", p["repository"], p["digest"], dest.key(), e)
            await self._record(key, q.FAILED, e.code, backfill, detail=str(e))
            return
        except Exception as e:
            code = e.code if isinstance(e, Retryable) else REPLICATION_ERROR
            last = job.attempts >= outbox.MAX_ATTEMPTS  # the job dies now: its back-fill item is FAILED for good
            await self._record(key, q.FAILED, code, backfill, final=last, detail=f"{type(e).__name__}: {e}")
            raise
        if report.skipped_tags:
            log.warning("replicated %s@%s to %s without the immutable tags %s", p["repository"], p["digest"],
                        dest.key(), ", ".join(report.skipped_tags))
        log.info("replicated %s/%s/%s@%s to %s: %s", p["account"], p["region"], p["repository"], p["digest"],
                 dest.key(), report.line())
        await self._record(key, q.COMPLETE, None, backfill, detail=report.line())

    async def _record(self, key: tuple[str, str, str, str, str, str], status: str, code: str | None,
                      backfill: str | None, final: bool = True, detail: str | None = None) -> None:
        now = self.clock()

        def txn() -> Any:
            a, r, name, digest, dest_account, dest_region = key
            yield from q.set_status(a, r, name, digest, dest_account, dest_region, status, code, now, attempt=True,
                                    detail=None if detail is None else detail[:2000])
            if backfill is not None and final:
                yield from q.set_backfill_item(backfill, key[2], key[3], status, code)
                yield from q.finish_backfill_if_done(backfill, now)

        await self.db.write(txn)

    async def copy(self, account: str, region: str, repository: str, digest: str, dest: Destination) -> CopyReport:
        try:
            source = await self.registry.repository(account, region, repository)
            root = await self.registry.get_manifest(source, digest)
        except (NameUnknown, ManifestUnknown):
            raise Permanent(IMAGE_NOT_FOUND, f"{repository}@{digest} is no longer in the source registry") from None
        config = Configuration.from_json(await self.db.read(q.get_config, account, region))
        target = await self.target(account, dest)
        handle = await target.prepare(repository)
        try:
            return await self._walk(source, target, handle, root, config.tags_for(repository, dest))
        except (NameUnknown, ManifestUnknown):  # deleted at the source while being copied
            raise Permanent(IMAGE_NOT_FOUND, f"{repository}@{digest} changed at the source while being copied; "
                                             "it is no longer complete there") from None

    async def _walk(self, source: Repository, target: Target, handle: Any, root: Manifest,
                    tag_filters: tuple[str, ...] | None) -> CopyReport:
        report = CopyReport()
        seen: set[str] = set()
        skipped: list[str] = []
        await self._tree(source, target, handle, root, seen, report)
        skipped += await self._tags(source, target, handle, root, tag_filters)
        # referrers follow their subject (and theirs, in turn)
        pending = [root.digest]
        while pending:
            subject = pending.pop()
            for ref in await self.registry.referrers(source, subject):
                if ref.digest in seen:
                    continue
                m = await self.registry.get_manifest(source, ref.digest)
                await self._tree(source, target, handle, m, seen, report)
                skipped += await self._tags(source, target, handle, m, tag_filters)
                pending.append(ref.digest)
        report.skipped_tags = tuple(skipped)
        return report

    async def _tree(self, source: Repository, target: Target, handle: Any, m: Manifest, seen: set[str],
                    report: CopyReport) -> None:
        if m.digest in seen:
            return
        seen.add(m.digest)
        if await target.has_manifest(handle, m.digest):
            return
        parsed = manifests.parse(m.body, m.media_type)
        for child in parsed.children:
            await self._tree(source, target, handle, await self.registry.get_manifest(source, child.digest), seen,
                             report)
        for blob in dict.fromkeys(parsed.blobs):
            how = await target.put_blob(handle, source, blob.digest, blob.size)
            report.blobs[how] = report.blobs.get(how, 0) + 1
            if how == "sent":
                report.bytes_sent += blob.size
        await target.put_manifest(handle, m.digest, m.body, m.media_type)
        report.manifests += 1

    async def _tags(self, source: Repository, target: Target, handle: Any, m: Manifest,
                    tag_filters: tuple[str, ...] | None) -> list[str]:
        """Every tag that names the image at the source now (a re-run adds, never removes) and that the rule's
        tag filters (extension) let through; the tags refused at the destination."""
        views = await self.images.describe(source, [ImageId(m.digest)])
        skipped = []
        for tag in views[0].tags if views else []:
            if tag_filters is not None and not any(fnmatch.fnmatchcase(tag, f) for f in tag_filters):
                continue
            if not await target.put_manifest(handle, tag, m.body, m.media_type):
                skipped.append(tag)
        return skipped

    # the delete job (deleteReplication)

    async def run_delete(self, job: Job) -> None:
        p = job.payload
        dest = Destination(p["destRegion"], p["destAccount"])
        try:
            target = await self.target(p["account"], dest)
            handle = await target.prepare(p["repository"])
        except Permanent as e:
            log.warning("delete replication of %s@%s to %s refused: %s", p["repository"], p["digest"], dest.key(), e)
            return
        await target.delete(handle, p["digest"], p.get("tags") or [], bool(p.get("image")))

    # the back-fill job

    async def run_backfill(self, job: Job) -> None:
        backfill_id = job.payload["id"]
        now = self.clock()

        def prepare() -> Any:
            from berth.db.store import Q
            row = yield Q("SELECT account_id, region, dest_account, dest_region, status FROM replication_backfills "
                          "WHERE id = ?", (backfill_id,), "one")
            if row is None or row[4] != "PREPARING":
                return 0
            account, region, dest = row[0], row[1], Destination(row[3], row[2])
            config = Configuration.from_json((yield from q.get_config(account, region)))
            queued = 0
            for name in (yield from q.repository_names(account, region)):
                if dest not in config.destinations_for(name, referrer=True):
                    continue
                bound = config.tags_for(name, dest)
                for digest, tags in (yield from q.image_digests(account, region, name)):
                    if bound is not None and not any(fnmatch.fnmatchcase(t, f) for t in tags for f in bound):
                        continue  # the extension's tag filters: only images with a matching tag
                    tag = tags[0] if tags else None
                    if (yield from q.add_backfill_item(backfill_id, name, digest, tag)):
                        queued += yield from outbox.enqueue_copies(account, region, name, digest, tag, [dest], now,
                                                                   backfill=backfill_id)
            yield from q.set_backfill_status(backfill_id, "IN_PROGRESS", None, when=("PREPARING",))
            yield from q.finish_backfill_if_done(backfill_id, now)
            return queued

        queued = await self.db.write(prepare)
        log.info("back-fill %s: %d images queued", backfill_id, queued)
