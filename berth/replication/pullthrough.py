"""The pull-through cache: a pull that misses under a rule's prefix is answered from the upstream.

- The manifest is fetched, checked (its digest) and served at once; the repository is created from the
  PULL_THROUGH_CACHE creation template. An index brings its children's manifests at once.
- Every blob the image needs is fetched once per deployment process (one fill per digest, whoever asks:
  the client's GET or the import), all of an image's at once (IMPORT_CONCURRENCY at a time) when its
  manifest is fetched. Each byte is received, hashed and written once, into the BlobStore's file; clients
  read that file as it grows (growing.py; a store with no local file gets a spool copy beside it), so they
  wait for neither the blob nor the image. The last byte is held back until the digest is verified and a
  failed fill cuts its readers at once: no client gets a whole body that does not match. The blob row is
  written after the commit's fsync, the manifests (in the ordinary push transaction, children first) once
  all their blobs are stored and linked: a cached image is always whole.
- A tag is checked against the upstream at most once per `staleness` seconds (ECR: 24 h); when the
  upstream cannot be reached, what is cached is served.
- Referrers (the /v2 referrers API and ListImageReferrers of a cached repository): the upstream's list is
  read at most once per `staleness` per subject (its referrers API, or the `sha256-<hex>` tag-schema index
  where it has none), the referrers not stored yet are imported like pulls by digest, then the local list
  answers. An upstream that cannot be asked leaves the cached referrers as the answer (in-memory check
  times: a restart asks again).
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import os
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import cast

from berth.db import pullthrough as q
from berth.db import registry as qr
from berth.db.store import Q, Txn
from berth.registry.errors import BlobUnknown, ManifestUnknown, RegistryError, UpstreamImageUnavailable
from berth.registry.model import Repository
from berth.registry.names import is_digest
from berth.registry.service import Manifest, PreparedManifest, RegistryService
from berth.registry.templates import PULL_THROUGH_CACHE, Templates
from berth.replication.growing import follow
from berth.replication.pullthrough_client import UpstreamClient, UpstreamError
from berth.replication.pullthrough_rules import PullThroughRules, Rule, best_rule
from berth.storage import UploadWriter

log = logging.getLogger("berth.pullthrough")
CHUNK = 1 << 20
RETRY_FAILED_CHECK = 300.0  # an upstream that could not be asked is asked again after this, not `staleness`
IMPORT_CONCURRENCY = 4
RULES_RECHECK = 5.0
CLIENT_TTL = 300.0  # seconds an upstream client (with the credentials read from its secret) is reused


def stored_blob_size(digest: str) -> Txn[int | None]:
    row = yield Q("SELECT size FROM blobs WHERE digest = ?", (digest,), "one")
    return None if row is None else int(row[0])


def record_blob(digest: str, size: int, now: float) -> Txn[None]:
    yield Q("INSERT INTO blobs (digest, size, created_at) VALUES (?, ?, ?) ON CONFLICT (digest) DO NOTHING",
            (digest, size, now))


@dataclass(eq=False)
class Fill:
    """One blob on its way from the upstream into the BlobStore. Readers follow the file being stored (or,
    for a store with no local file, a spool copy beside it): `source` is a descriptor of it they dup."""

    digest: str
    size: int
    source: int
    spool: Path | None = None
    written: int = 0
    verified: bool = False  # every byte arrived and matches the digest (the commit may still be under way)
    finished: bool = False
    error: BaseException | None = None
    task: asyncio.Future[None] | None = None
    _event: asyncio.Event = field(default_factory=asyncio.Event)

    def notify(self) -> None:
        event, self._event = self._event, asyncio.Event()
        event.set()

    async def wait(self) -> None:
        assert self.task is not None
        await asyncio.shield(self.task)

    def readable(self) -> int:
        """How far readers may go: the last byte is held back until the digest is verified, so a client never
        gets a whole body of bytes that do not match (it gets a cut connection instead)."""
        if self.written < self.size or self.verified:
            return self.written
        return self.size - 1

    async def read(self, fd: int, start: int, end: int) -> AsyncIterator[bytes]:
        """Bytes [start, end) as they arrive (`fd`: our own descriptor of the file, dup'ed while the fill was
        live, closed here); stops at the first sign of a failed fill."""
        try:
            offset = start
            while offset < end:
                if self.error is not None:  # before the status line: a 404 the client may retry (a new fill)
                    raise BlobUnknown(f"blob unknown to registry: fetching it from the upstream failed: "
                                      f"{getattr(self.error, 'message', self.error)}", detail={"digest": self.digest})
                available = self.readable()
                if offset < available:
                    n = min(CHUNK, available - offset, end - offset)
                    # On the loop: bytes just written are in the page cache, and a copy of 1 MiB costs less
                    # than a hop to a worker thread and back (with the readinto change: 3.25 CPU-s per GiB
                    # relayed, was 4.11, bench/pullthrough.py --client http)
                    data = os.pread(fd, n, offset)
                    if not data:
                        raise OSError(f"the file of {self.digest} is shorter than written")
                    offset += len(data)
                    yield data
                    continue
                if self.finished:
                    raise OSError(f"the upstream's {self.digest} is shorter than its descriptor")
                await self._event.wait()
        finally:
            os.close(fd)


@dataclass
class Pending:
    """An image being imported: served from memory until it is stored."""

    manifest: Manifest
    blobs: dict[str, int]  # digest -> size: every blob of it (and of its children)


class PullThroughCache:
    def __init__(self, registry: RegistryService, rules: PullThroughRules, templates: Templates, spool_dir: Path,
                 staleness: float = 24 * 3600.0, clock: Callable[[], float] = time.time) -> None:
        self.registry = registry
        self.db = registry.db
        self.rules = rules
        self.templates = templates
        self.spool_dir = spool_dir
        self.staleness = staleness
        self.clock = clock
        self.pool = ThreadPoolExecutor(16, thread_name_prefix="pullthrough")
        self._rules: list[Rule] = []
        self._rules_version: int | None = -1
        self._rules_loading: asyncio.Task[list[Rule]] | None = None
        self._rules_loaded = -RULES_RECHECK
        self._clients: dict[tuple[str, str, str, float], tuple[UpstreamClient, float]] = {}
        self._pending: dict[tuple[str, str, str, str], Pending] = {}  # (account, region, name, ref)
        self._blob_sources: dict[tuple[int, str], tuple[Rule, str, int]] = {}  # (repo id, digest)
        self._fills: dict[str, Fill] = {}
        self._imports: dict[tuple[int, str], asyncio.Task[None]] = {}
        self._fetches: dict[tuple[str, str, str, str], asyncio.Task[Manifest | None]] = {}
        self._checked: dict[tuple[str, str, str, str], float] = {}
        self._referrer_checks: dict[tuple[str, str, str, str], asyncio.Task[None]] = {}
        self._swept = False

    def _sweep_spool(self) -> None:
        """Spool files of processes that are gone (a crash mid-fill): `<digest>.<pid>.part`."""
        try:
            names = os.listdir(self.spool_dir)
        except FileNotFoundError:
            return
        for name in names:
            parts = name.rsplit(".", 2)
            if len(parts) != 3 or parts[2] != "part" or not parts[1].isdigit():
                continue
            try:
                os.kill(int(parts[1]), 0)
            except ProcessLookupError:
                try:
                    os.unlink(self.spool_dir / name)
                except FileNotFoundError:
                    pass
            except PermissionError:  # alive, someone else's
                pass

    def close(self) -> None:
        for c, _ in self._clients.values():
            c.close()
        self.pool.shutdown(wait=False, cancel_futures=True)

    # rules, kept in memory and reloaded when anything was written

    async def _load_rules(self) -> list[Rule]:
        v = self.db.version()
        if v is None or v != self._rules_version:
            rows = await self.db.read(q.all_rules)
            self._rules = [Rule.from_row(a, r, row) for a, r, row in rows]
            self._rules_version = v
        return self._rules

    def _rules_now(self) -> list[Rule]:
        """The cached rules; a reload starts in the background when the database changed (or, where the
        backend cannot tell, PostgreSQL, at most every RULES_RECHECK seconds)."""
        v = self.db.version()
        due = v != self._rules_version if v is not None else time.monotonic() - self._rules_loaded >= RULES_RECHECK
        if due and (self._rules_loading is None or self._rules_loading.done()):
            self._rules_loaded = time.monotonic()
            self._rules_loading = asyncio.get_running_loop().create_task(self._load_rules())
        return self._rules

    def _match(self, rules: list[Rule], account: str, region: str, name: str) -> tuple[Rule, str] | None:
        return best_rule([r for r in rules if r.account == account and r.region == region], name)

    def covers(self, account: str, region: str, name: str) -> bool:
        return self._match(self._rules_now(), account, region, name) is not None

    def stale(self, account: str, region: str, name: str, reference: str) -> bool:
        """Whether a cached tag is due for a check against the upstream (a dict lookup on the pull path)."""
        if is_digest(reference) or not self.covers(account, region, name):
            return False
        checked = self._checked.get((account, region, name, reference))
        return checked is None or self.clock() - checked >= self.staleness

    async def _client(self, rule: Rule) -> UpstreamClient:
        """The rule's upstream client; made again after CLIENT_TTL so that a secret's new value (PutSecretValue)
        is used without a restart (the old one is left to the fills still using it)."""
        key = (rule.account, rule.region, rule.prefix, rule.updated_at)
        found = self._clients.get(key)
        if found is None or time.monotonic() - found[1] > CLIENT_TTL:
            found = self._clients[key] = (await self.rules.client(rule), time.monotonic())
        return found[0]

    # manifests

    async def manifest(self, account: str, region: str, name: str, reference: str,
                       may_import: Callable[[bool], Awaitable[None]] | None,
                       cached: Manifest | None) -> Manifest | None:
        """The manifest from the upstream (None when no rule covers `name`); `cached` is what the pull
        found locally for a tag due for a check, served when the upstream cannot say better."""
        key = (account, region, name, reference)
        pending = self._pending.get(key)
        if pending is not None:
            return pending.manifest
        found = self._match(await self._load_rules(), account, region, name)
        if found is None:
            return None
        if may_import is not None:
            try:
                await may_import(False)
            except RegistryError:  # may pull, may not import: the cached image is the answer
                if cached is not None:
                    return cached
                raise
        task = self._fetches.get(key)
        if task is None:  # concurrent misses of one reference ask the upstream once
            task = self._fetches[key] = asyncio.get_running_loop().create_task(
                self._fetch(found[0], found[1], account, region, name, reference, may_import, cached))
            task.add_done_callback(lambda _: self._fetches.pop(key, None))
        return await asyncio.shield(task)

    async def _fetch(self, rule: Rule, upstream: str, account: str, region: str, name: str, reference: str,
                     may_import: Callable[[bool], Awaitable[None]] | None, cached: Manifest | None) -> Manifest:
        loop = asyncio.get_running_loop()
        check_key = (account, region, name, reference)
        tagged = not is_digest(reference)
        if cached is not None:  # another process (or this one before a restart) may have checked it lately
            known = await self._repository(account, region, name, None)
            at = await self.db.read(q.tag_checked_at, known.id, reference)
            if at is not None and self.clock() - at < self.staleness:
                self._checked[check_key] = at
                return cached
        try:
            client = await self._client(rule)
            if cached is not None:  # a tag due for a check: has the upstream moved it?
                _, _, digest = await loop.run_in_executor(self.pool, lambda: client.manifest(upstream, reference,
                                                                                             head=True))
                if digest == cached.digest:
                    await self._mark_checked(check_key, known.id)
                    return cached
            body, media_type, _ = await loop.run_in_executor(self.pool, client.manifest, upstream, reference)
        except UpstreamError as e:
            if cached is not None:
                log.warning("upstream of %s unavailable, serving the cached %s: %s", name, reference, e.message)
                self._checked[check_key] = self.clock() - self.staleness + RETRY_FAILED_CHECK
                return cached
            if e.credentials:
                raise UpstreamImageUnavailable(f"the pull through cache rule '{rule.prefix}' cannot reach its "
                                               f"upstream: {e.message}", detail={"upstream": rule.upstream_url,
                                                                                 "reason": e.kind}) from None
            raise ManifestUnknown(f"manifest unknown: {e.message}", detail={"upstream": rule.upstream_url,
                                                                            "reason": e.kind}) from None
        prepared = self.registry.prepare_manifest(reference, body, media_type or None)
        repo = await self._repository(account, region, name, may_import)
        children: list[PreparedManifest] = []
        blobs: dict[str, int] = {d.digest: d.size for d in prepared.parsed.blobs}
        for child in prepared.parsed.children:
            try:
                cbody, ctype, _ = await loop.run_in_executor(self.pool, client.manifest, upstream, child.digest)
            except UpstreamError as e:
                raise ManifestUnknown(f"index child {child.digest} unknown: {e.message}",
                                      detail={"digest": child.digest}) from None
            cp = self.registry.prepare_manifest(child.digest, cbody, ctype or child.media_type)
            children.append(cp)
            blobs.update((d.digest, d.size) for d in cp.parsed.blobs)
        m = Manifest(prepared.digest, prepared.parsed.media_type, body,
                     prepared.parsed.subject.digest if prepared.parsed.subject else None)
        self._begin_import(rule, upstream, repo, prepared, children, blobs, reference)
        if tagged:
            await self._mark_checked(check_key, repo.id)
        return m

    async def _mark_checked(self, key: tuple[str, str, str, str], repo_id: int) -> None:
        """The upstream was asked about a tag now: in memory for the pull path, in the database for the other
        processes and the next start."""
        now = self.clock()
        self._checked[key] = now
        await self.db.write(q.mark_tag_checked, repo_id, key[3], now)

    async def _repository(self, account: str, region: str, name: str,
                          may_import: Callable[[bool], Awaitable[None]] | None) -> Repository:
        row = await self.db.read(qr.get_repository, account, region, name)
        if row is not None:
            return Repository.from_row(row)

        async def may_create() -> None:
            if may_import is not None:
                await may_import(True)

        repo, _ = await self.templates.create_repository_from_template(
            account, region, name, PULL_THROUGH_CACHE, may_create, fallback_defaults=True)
        return repo

    def _begin_import(self, rule: Rule, upstream: str, repo: Repository, top: PreparedManifest,
                      children: list[PreparedManifest], blobs: dict[str, int], reference: str) -> None:
        key = (repo.id, top.digest)
        if key in self._imports:
            return
        refs = [top.digest] + ([reference] if top.tag is not None else [])
        pending_keys = [(repo.account_id, repo.region, repo.name, r) for r in refs]
        pending_keys += [(repo.account_id, repo.region, repo.name, c.digest) for c in children]
        served = {top.digest: top, **{c.digest: c for c in children}}
        for k in pending_keys:
            p = served[k[3]] if k[3] in served else top
            self._pending[k] = Pending(Manifest(p.digest, p.parsed.media_type, p.body,
                                                p.parsed.subject.digest if p.parsed.subject else None), blobs)
        for digest, size in blobs.items():
            self._blob_sources[(repo.id, digest)] = (rule, upstream, size)

        async def run() -> None:
            try:
                await self._import(rule, upstream, repo, top, children, blobs)
            except Exception:
                log.exception("importing %s@%s from %s failed", repo.name, top.digest, rule.upstream_url)
            finally:
                for k in pending_keys:
                    self._pending.pop(k, None)
                for digest in blobs:
                    self._blob_sources.pop((repo.id, digest), None)
                self._imports.pop(key, None)

        self._imports[key] = asyncio.get_running_loop().create_task(run())

    async def _import(self, rule: Rule, upstream: str, repo: Repository, top: PreparedManifest,
                      children: list[PreparedManifest], blobs: dict[str, int]) -> None:
        gate = asyncio.Semaphore(IMPORT_CONCURRENCY)

        async def one(digest: str, size: int) -> None:
            async with gate:
                await self._ensure_blob(rule, upstream, repo, digest, size)

        await asyncio.gather(*(one(d, s) for d, s in blobs.items()))
        for child in children:
            await self.registry.put_manifest(repo, child)
        await self.registry.put_manifest(repo, top)
        log.info("cached %s@%s from %s", repo.name, top.digest, rule.upstream_url)

    # referrers

    async def refresh_referrers(self, repo: Repository, subject: str,
                                may_import: Callable[[bool], Awaitable[None]] | None) -> None:
        """Bring the upstream's referrers of `subject` that are not stored here yet, at most once per `staleness`
        for a subject, and wait until they are stored (referrers are small: signatures, SBOMs, attestations),
        so that the local list answers. An upstream that cannot be asked leaves what is cached as the answer."""
        key = (repo.account_id, repo.region, repo.name, "referrers " + subject)
        checked = self._checked.get(key)
        if checked is not None and self.clock() - checked < self.staleness:
            return
        found = self._match(await self._load_rules(), repo.account_id, repo.region, repo.name)
        if found is None:
            return
        task = self._referrer_checks.get(key)
        if task is None:
            task = self._referrer_checks[key] = asyncio.get_running_loop().create_task(
                self._refresh_referrers(found[0], found[1], repo, subject, may_import, key))
            task.add_done_callback(lambda _: self._referrer_checks.pop(key, None))
        await asyncio.shield(task)

    async def _refresh_referrers(self, rule: Rule, upstream: str, repo: Repository, subject: str,
                                 may_import: Callable[[bool], Awaitable[None]] | None,
                                 key: tuple[str, str, str, str]) -> None:
        try:
            client = await self._client(rule)
            entries = await asyncio.get_running_loop().run_in_executor(self.pool, client.referrers, upstream,
                                                                       subject)
        except UpstreamError as e:
            log.warning("the upstream of %s cannot list the referrers of %s, serving the cached ones: %s",
                        repo.name, subject, e.message)
            self._checked[key] = self.clock() - self.staleness + RETRY_FAILED_CHECK
            return
        for entry in entries:
            digest = entry.get("digest")
            if not isinstance(digest, str) or not is_digest(digest):
                continue
            try:
                await self.registry.get_manifest(repo, digest)
                continue  # stored already
            except ManifestUnknown:
                pass
            try:
                m = await self.manifest(repo.account_id, repo.region, repo.name, digest, may_import, None)
            except RegistryError as e:
                if e.code == "DENIED":  # may list, may not import: what is cached is the answer
                    return
                log.warning("referrer %s of %s from %s not imported: %s", digest, subject, rule.upstream_url,
                            e.message)
                continue
            if m is not None:
                importing = self._imports.get((repo.id, m.digest))
                if importing is not None:
                    await asyncio.shield(importing)
        self._checked[key] = self.clock()

    # blobs

    async def _ensure_blob(self, rule: Rule, upstream: str, repo: Repository, digest: str, size: int) -> None:
        """The blob stored and linked to the repository (fetched once, whoever else wants it)."""
        if await self.db.read(stored_blob_size, digest) is None:
            await self._fill(rule, upstream, digest, size).wait()
        await self.db.write(qr.link_blob, repo.id, digest, size, self.clock())

    def _fill(self, rule: Rule, upstream: str, digest: str, size: int) -> Fill:
        fill = self._fills.get(digest)
        if fill is not None:
            return fill
        if not self._swept:  # spool files of a crashed process (that spooled: a store without local files)
            self._swept = True
            self._sweep_spool()
        writer = self.registry.blobs.create(digest)
        spool_fd: int | None = None

        def abandon() -> None:  # the writer and the spool, when _download (which ends both) will not run
            writer.abort()
            if spool_fd is not None:
                os.close(spool_fd)

        try:
            source = follow(writer)
            if source is None:  # no local file to follow (object storage): a spool copy for the readers
                spool = self._spool_path(digest)
                spool_fd = os.open(spool, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
                source = os.open(spool, os.O_RDONLY)
                fill = Fill(digest, size, source, spool)
            else:
                fill = Fill(digest, size, source)
        except BaseException:
            abandon()
            raise
        self._fills[digest] = fill
        loop = asyncio.get_running_loop()

        async def run() -> None:
            try:
                try:
                    client = await self._client(rule)
                except BaseException:
                    abandon()
                    raise
                await loop.run_in_executor(self.pool, self._download, client, upstream, fill, writer, spool_fd,
                                           loop)
                await self.db.write(record_blob, digest, fill.written, self.clock())
            except BaseException as e:
                if fill.error is None:
                    fill.error = e
                raise
            finally:
                fill.finished = True
                fill.notify()
                self._fills.pop(digest, None)
                os.close(fill.source)  # readers have their own (dup'ed in reader())
                if fill.spool is not None:
                    try:
                        fill.spool.unlink()
                    except FileNotFoundError:
                        pass

        fill.task = loop.create_task(run())
        fill.task.add_done_callback(lambda t: t.cancelled() or t.exception())  # retrieved: logged by the waiter
        return fill

    def _spool_path(self, digest: str) -> Path:
        self.spool_dir.mkdir(parents=True, exist_ok=True)
        return self.spool_dir / f"{digest.replace(':', '-')}.{os.getpid()}.part"

    def _download(self, client: UpstreamClient, upstream: str, fill: Fill, writer: UploadWriter,
                  spool_fd: int | None, loop: asyncio.AbstractEventLoop) -> None:
        """On a worker thread: each chunk read, hashed and written once (the spool too, without a local file);
        readers are told of every chunk, and of the verdict on the digest before the commit's fsync."""
        algorithm, _, want = fill.digest.partition(":")
        hasher = hashlib.new(algorithm)
        try:
            with client.blob(upstream, fill.digest) as chunks:
                for chunk in chunks:
                    if fill.written + len(chunk) > fill.size:
                        raise UpstreamError("UpstreamUnavailable", f"{fill.digest} is longer than its descriptor")
                    hasher.update(chunk)
                    if spool_fd is None:  # the filesystem writer (followed) copies it at once, with os.write
                        writer.write(cast(bytes, chunk))
                    else:  # a driver may keep what it is given (an S3 part): its own copy
                        writer.write(chunk.tobytes())
                        view = chunk
                        while view:
                            view = view[os.write(spool_fd, view):]
                    fill.written += len(chunk)
                    loop.call_soon_threadsafe(fill.notify)
            if fill.written != fill.size or hasher.hexdigest() != want:
                raise UpstreamError("UpstreamUnavailable", f"the upstream's {fill.digest} does not match its digest")
            fill.verified = True
            loop.call_soon_threadsafe(fill.notify)
            writer.commit(fill.digest)
        except BaseException as e:
            fill.error = e  # readers stop at once, before the abort
            loop.call_soon_threadsafe(fill.notify)
            writer.abort()
            raise
        finally:
            if spool_fd is not None:
                os.close(spool_fd)

    async def blob_size(self, repo: Repository, digest: str) -> int | None:
        """The size of a blob an image being imported into `repo` needs (its fill started), else None."""
        source = self._blob_sources.get((repo.id, digest))
        if source is None:  # another process or node serves the import: ask the upstream for this blob
            found = self._match(await self._load_rules(), repo.account_id, repo.region, repo.name)
            if found is None:
                return None
            client = await self._client(found[0])
            try:
                size = await asyncio.get_running_loop().run_in_executor(self.pool, client.blob_size, found[1],
                                                                        digest)
            except UpstreamError:
                return None
            source = (found[0], found[1], size)
        rule, upstream, size = source
        if await self.db.read(stored_blob_size, digest) is not None:
            await self.db.write(qr.link_blob, repo.id, digest, size, self.clock())
            return size
        self._fill(rule, upstream, digest, size)
        return size

    def reader(self, digest: str, start: int, end: int) -> AsyncIterator[bytes] | None:
        """The bytes of a blob still arriving from the upstream, as they arrive; None once it is stored."""
        fill = self._fills.get(digest)
        if fill is None:
            return None
        return fill.read(os.dup(fill.source), start, end)
