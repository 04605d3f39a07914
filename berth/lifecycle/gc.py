"""Online garbage collection: frees what no image needs, while pushes and pulls go on.

What a collection removes:
- blobs that no manifest of any repository references and that no repository has linked (nor an
  upload pinned, nor a HEAD/GET read) within the grace period (default 1 h, BERTH_GC_GRACE_SECONDS);
- objects in storage that the metadata never recorded (a crash between the storage commit and the
  link): the first collection that finds one records it (blob_gc.unrecorded_size, first seen now),
  and it is collected like an unreferenced blob once the grace period has passed since;
- upload sessions abandoned longer than their maximum age, and upload storage no session owns
  (berth/registry/uploads.py `purge`).
With an archive store (berth/lifecycle/archive.py) a collection deletes from both stores, walks both for
unrecorded objects, and queues a placement for every blob in the archive store that an image not archived
uses (a push or re-push referenced it: it is read from the archive store until it is back).
Manifests are never collected: only a delete or a lifecycle policy removes one (their refs go with
them, and what they alone used becomes collectable).

No mark-and-sweep race. The sweep does not trust its mark: every digest it would delete is decided
again in one transaction per batch (berth/db/gc.py `condemn`) that
1. locks the digests' blob_gc rows FOR UPDATE: every writer that makes a digest live upserts that
   row first (link_blob and mount_blob via `linking`, a HEAD/GET via `refresh`, and an upload via
   `pin` before it writes the bytes to storage, which holds the digest for PIN_HOLD whatever the
   grace period, until its link), so it either committed before (and the row's fresh `linked_at`
   or `pinned_at` spares the digest; on PostgreSQL the locking read re-checks the condition on the
   row's newest version) or waits for this decision;
2. locks the digests' repository links FOR UPDATE: a manifest push holds the links it references FOR
   KEY SHARE until it commits, so a push in flight commits first;
3. reads manifest_refs in a new statement, which on PostgreSQL READ COMMITTED sees every push that
   committed while 1 and 2 waited; SQLite's single writer serialises the whole transaction anyway;
4. marks the survivors condemned and deletes their links.
After that commit nothing can revive a condemned digest: a push that waited finds the link gone
(MANIFEST_BLOB_UNKNOWN, as for any blob not uploaded), a link refuses it (BlobCondemned), a HEAD
answers 404 so the client uploads it again, and that upload's pin waits until the collection has
deleted the bytes and buried the rows; only then are the new bytes written. A referenced blob is
never condemned, so a pull never fails because of a collection. A collection that dies between
condemning and burying leaves condemned rows; the next one takes them over once they are older
than TAKE_OVER_AFTER (the stamp decides which collection may delete their bytes).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from berth.db import archive as qa
from berth.db import gc as qg
from berth.db import uploads as qu
from berth.db.jobs import Job
from berth.db.store import Backend
from berth.jobs.handlers import Handler
from berth.registry.uploads import Uploads
from berth.storage import BlobStore

log = logging.getLogger("berth.gc")

GC_JOB = "gc.collect"
GRACE = 3600.0
PIN_HOLD = 900.0  # seconds an upload's pin keeps its digest whatever the grace (BERTH_GC_PIN_HOLD_SECONDS): longer
# than any upload takes from its pin to its link (the storage commit: a rename, or an S3 multipart completion)
TAKE_OVER_AFTER = 600.0  # seconds: a condemnation this old was left by a collection that died
PAGE = 1000  # digests read per page (candidates, storage walk)
BATCH = qg.CHUNK  # digests decided per transaction
DELETE_PARALLEL, DELETE_CHUNK = 8, 32  # storage deletes of a batch: up to 8 calls at once, 32 digests or more each

UPLOADS = "uploads"
KINDS = (qg.UNREFERENCED, qg.UNRECORDED, UPLOADS)
Progress = Callable[[str, int, int | None], None]  # (phase, done, total or None)


@dataclass
class Freed:
    objects: int = 0
    bytes: int = 0

    def add(self, size: int) -> None:
        self.objects += 1
        self.bytes += size


@dataclass
class Report:
    dry_run: bool
    freed: dict[str, Freed] = field(default_factory=lambda: {k: Freed() for k in KINDS})
    newly_unrecorded: int = 0  # objects found in storage without a record, first seen by this run
    pins: int = 0  # records of pins no upload completed (no bytes)
    walked: int = 0  # objects in storage
    candidates: int = 0  # digests past their grace period at the mark
    spared: int = 0  # candidates a push, link or read made live again before they were condemned
    placements: int = 0  # blobs in the archive store that an image not archived uses: queued to come back
    seconds: float = 0.0

    @property
    def objects(self) -> int:
        return sum(f.objects for f in self.freed.values())

    @property
    def bytes(self) -> int:
        return sum(f.bytes for f in self.freed.values())


def _nothing(phase: str, done: int, total: int | None) -> None:
    pass


class Collector:
    def __init__(self, db: Backend, blobs: BlobStore, uploads: Uploads, grace: float = GRACE,
                 pin_hold: float = PIN_HOLD, clock: Callable[[], float] = time.time,
                 archive: BlobStore | None = None) -> None:
        self.db = db
        self.blobs = blobs  # with an archive store, the TieredBlobStore: its delete deletes from both
        self.archive = archive
        self.uploads = uploads
        self.grace = grace
        self.pin_hold = pin_hold
        self.clock = clock
        self._lock = asyncio.Lock()  # one collection at a time per process

    async def _io(self, fn: Callable[..., object], *args: object) -> object:
        return await asyncio.get_running_loop().run_in_executor(self.uploads.pool, fn, *args)

    async def collect(self, dry_run: bool = False, progress: Progress = _nothing) -> Report:
        async with self._lock:
            started = time.monotonic()
            report = Report(dry_run)
            if not dry_run:
                await self._take_over(report)
            await self._walk(report, dry_run, progress, self.blobs)
            if self.archive is not None:
                await self._walk(report, dry_run, progress, self.archive)
                if not dry_run:
                    report.placements = await self.db.write(qa.queue_bring_back, self.clock())
            await self._sweep(report, dry_run, progress)
            await self._purge_uploads(report, dry_run)
            report.seconds = time.monotonic() - started
            return report

    async def _delete(self, report: Report, doomed: list[qg.Candidate]) -> None:
        """Delete the bytes of condemned digests, then their records."""
        objects = [c.digest for c in doomed if c.kind != qg.PIN]
        if objects:  # in parallel: one unlink (or one S3 batch) at a time would leave the disk idle
            step = max(DELETE_CHUNK, -(-len(objects) // DELETE_PARALLEL))
            await asyncio.gather(*(self._io(self.blobs.delete, objects[i:i + step])
                                   for i in range(0, len(objects), step)))
        await self.db.write(qg.bury, [c.digest for c in doomed])
        for c in doomed:
            if c.kind == qg.PIN:
                report.pins += 1
            else:
                report.freed[c.kind].add(c.size)

    async def _take_over(self, report: Report) -> None:
        while True:
            now = self.clock()
            taken = await self.db.write(qg.take_over, now - TAKE_OVER_AFTER, now, BATCH)
            if not taken:
                return
            log.warning("gc: finishing %d deletions a stopped collection left", len(taken))
            await self._delete(report, taken)

    async def _walk(self, report: Report, dry_run: bool, progress: Progress, store: BlobStore) -> None:
        """Find objects in `store` (the main or the archive store) that no blobs row records, and record
        them (first seen now); an object a blobs row records is kept, whichever store the row says."""
        after = ""
        while True:
            page = await self._io(store.walk, after, PAGE)
            assert isinstance(page, list)
            if not page:
                return
            after = page[-1].digest
            report.walked += len(page)
            progress("walk", report.walked, None)
            found = await self.db.read(qg.unrecorded, [(b.digest, b.size) for b in page])
            if found and not dry_run:
                report.newly_unrecorded += await self._record(found)
            elif found:
                report.newly_unrecorded += len(found)

    async def _record(self, found: list[tuple[str, int]]) -> int:
        await self.db.write(qg.record_unrecorded, found, self.clock())
        return len(found)

    async def _sweep(self, report: Report, dry_run: bool, progress: Progress) -> None:
        now = self.clock()
        cutoff, pin_cutoff = now - self.grace, now - self.pin_hold
        used = await self.db.read(qg.referenced)  # the mark: only a hint, each batch is decided again
        totals = await self.db.read(qg.totals)
        after = ""
        seen = 0
        pending: list[str] = []
        while True:
            page = await self.db.read(qg.candidates, cutoff, pin_cutoff, after, PAGE)
            if page:
                after = page[-1].digest
                seen += len(page)
                progress("sweep", seen, max(seen, totals.blobs))
            unused = [c for c in page if c.digest not in used]
            report.candidates += len(unused)
            if dry_run:
                for c in unused:
                    if c.kind == qg.PIN:
                        report.pins += 1
                    else:
                        report.freed[c.kind].add(c.size)
            else:
                pending += [c.digest for c in unused]
            while len(pending) >= BATCH or (pending and not page):
                batch, pending = pending[:BATCH], pending[BATCH:]
                doomed = await self.db.write(qg.condemn, batch, cutoff, pin_cutoff, self.clock())
                report.spared += len(batch) - len(doomed)
                if doomed:
                    await self._delete(report, doomed)
            if not page:
                return

    async def _purge_uploads(self, report: Report, dry_run: bool) -> None:
        stale = await self.db.read(qu.stale_uploads, self.clock() - self.uploads.max_age)
        freed = report.freed[UPLOADS]
        if dry_run:
            for u in stale:
                freed.add(u.size)
            return
        sizes = sum(u.size for u in stale)
        n = await self.uploads.purge()  # sessions past their age, and upload storage that no session owns
        freed.objects += n
        freed.bytes += sizes


def collect_job(collector: Collector) -> Handler:
    """The periodic collection (berth/app.py registers it; one node runs each interval)."""
    async def run(job: Job) -> None:
        r = await collector.collect()
        if r.objects or r.newly_unrecorded:
            log.warning("gc: freed %d objects, %d bytes in %.1f s (%s); %d unrecorded objects found",
                        r.objects, r.bytes, r.seconds,
                        ", ".join(f"{k} {f.objects}/{f.bytes} B" for k, f in r.freed.items()), r.newly_unrecorded)
    return run
