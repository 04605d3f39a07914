"""The archive storage location: blobs that only archived images use move to a second BlobStore
(BERTH_ARCHIVE_STORAGE_URL, e.g. a cheaper bucket), and come back before their image is ACTIVE again.

Off unless an archive store is configured: then berth/app.py wraps the main store in a TieredBlobStore and
registers PLACE_JOB. Archiving an image (a lifecycle `transition`, UpdateImageStorageClass ARCHIVE) queues
one placement job per blob of the image; restoring it (ACTIVATING) brings its blobs back in the activation
job, which makes the image ACTIVE only when none of them is in the archive store any more.

A placement of one digest (`Archiver.place`):
1. holds the digest (berth/db/archive.py `claim`: one placement at a time per digest, a stale hold is
   taken over after MOVE_STALE; a busy digest is retried by its job). The hold is taken under the digest's
   blob_gc row lock and refused on a condemned digest, and a collection spares a held digest (berth/db/gc.py
   `condemn`): a placement and a collection never work on one digest at once;
2. decides where it belongs: the archive store when only ARCHIVED images reference it and every repository
   linking it has such an image (`home`), else the main store (a blob nothing uses stays where it is, for
   a collection to free);
3. copies it there (unless already there), reads the copy back and verifies its digest and size;
4. records the new home in one transaction (`settle`) that decides a move to the archive again, under
   gc's lock order: the blob_gc row, then the blob's links FOR UPDATE (a manifest push holding a link FOR
   KEY SHARE commits first), then the references in a new statement. Refused when an image that is not
   archived uses the blob now, or a collection condemned it: then the archive copy is deleted, and the
   blob stays where it was;
5. only then deletes the copy it came from, and releases the digest.

Why a push never finds a blob it cannot pull. The bytes are in at least one store at every moment while
the metadata records the blob: the source copy is deleted only after the verified destination copy is
recorded, by the one placement holding the digest (no collection deletes it meanwhile); a refused move
deletes only its archive copy (nothing else writes the archive store); a lost hold deletes nothing; a copy
in the store the blob does not live in is a leftover, deleted under the hold (a re-upload's copy in the main
store is one: the recorded archive copy stays readable). And every read goes through TieredBlobStore, which
opens the main store and, when the blob is not there, the archive store. So a push that references a blob being
moved or already in the archive is pullable as soon as it is acknowledged: a move not yet settled is
refused (the push's link and reference are seen under the locks of step 4), a settled one is read from
the archive store until the placement its push queued brings the blob back (RegistryService.put_manifest;
a periodic collection also queues one for every archived blob an image not archived uses, for pushes of a
node without the archive setting, or a job that died).

Garbage collection frees blobs in both stores: TieredBlobStore.delete deletes from both, a collection
walks the archive store too for objects the metadata never recorded (an archive object whose digest has
a blobs row is recorded, whichever store the row says), and `bury` drops the archived_blobs row with the
blob's other rows. A deleted repository or image leaves its blobs unreferenced: collected from whichever
store holds them.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import time
from collections.abc import Callable, Container, Iterable
from concurrent.futures import Executor

from berth.db import archive as qa
from berth.db.jobs import Job
from berth.db.store import Backend
from berth.jobs.handlers import Handler
from berth.lifecycle.service import PLACE_JOB
from berth.storage import BlobStore
from berth.storage.base import BlobInfo, BlobReader, UploadWriter

log = logging.getLogger("berth.archive")

__all__ = ["PLACE_JOB", "Archiver", "PlacementBusy", "TieredBlobStore", "place_job"]

MOVE_STALE = qa.MOVE_STALE  # a hold this old was left by a placement that died
CHUNK = 1 << 20


class PlacementBusy(Exception):
    """Another placement holds the digest: the job is retried later."""


class TieredBlobStore:
    """The main store, read-through to the archive store. Writes and uploads go to the main store;
    `delete` deletes from both; `walk` walks the main store (a collection walks the archive on its own)."""

    def __init__(self, main: BlobStore, archive: BlobStore) -> None:
        self.main = main
        self.archive = archive

    # uploads: the main store's
    def begin(self, upload_id: str) -> str:
        return self.main.begin(upload_id)

    def resume(self, upload_id: str, state: str, size: int) -> UploadWriter:
        return self.main.resume(upload_id, state, size)

    def create(self, digest: str) -> UploadWriter:
        return self.main.create(digest)

    def cancel(self, upload_id: str, state: str) -> None:
        self.main.cancel(upload_id, state)

    def purge_uploads(self, before: float, live: Container[str]) -> int:
        return self.main.purge_uploads(before, live)

    # blobs: the main store, else the archive store
    def open(self, digest: str, start: int = 0, end: int | None = None) -> BlobReader:
        try:
            return self.main.open(digest, start, end)
        except FileNotFoundError:
            return self.archive.open(digest, start, end)

    def stat(self, digest: str) -> int | None:
        size = self.main.stat(digest)
        return self.archive.stat(digest) if size is None else size

    def delete(self, digests: Iterable[str]) -> None:
        digests = list(digests)
        self.main.delete(digests)
        self.archive.delete(digests)

    def walk(self, after: str = "", limit: int = 1000) -> list[BlobInfo]:
        return self.main.walk(after, limit)

    def local_path(self, digest: str, size: int) -> str | None:
        # a blob only in the archive store is streamed (open above), never sent as a file
        return self.main.local_path(digest, size)

    def url_for(self, digest: str, expires: int) -> str | None:
        if self.main.stat(digest) is None and self.archive.stat(digest) is not None:
            return self.archive.url_for(digest, expires)
        return self.main.url_for(digest, expires)

    def check(self) -> None:
        for store in (self.main, self.archive):
            check = getattr(store, "check", None)
            if check is not None:
                check()

    def close(self) -> None:
        for store in (self.main, self.archive):
            close = getattr(store, "close", None)
            if close is not None:
                close()


def _copy(src: BlobStore, dst: BlobStore, digest: str, size: int) -> None:
    """Copy one blob and verify the stored copy (read back: digest and size); the copy is gone on failure."""
    if dst.stat(digest) != size or not _verified(dst, digest, size):
        reader = src.open(digest)
        writer = dst.create(digest)
        try:
            while data := reader.read(CHUNK):
                writer.write(data)
            writer.commit(digest)
        finally:
            writer.abort()
            reader.close()
        if not _verified(dst, digest, size):
            dst.delete([digest])
            raise OSError(f"blob {digest}: the copy does not match its digest")


def _verified(store: BlobStore, digest: str, size: int) -> bool:
    algorithm, _, hexdigest = digest.partition(":")
    h = hashlib.new(algorithm)
    n = 0
    try:
        reader = store.open(digest)
    except FileNotFoundError:
        return False
    try:
        while data := reader.read(CHUNK):
            h.update(data)
            n += len(data)
    finally:
        reader.close()
    return n == size and h.hexdigest() == hexdigest


class Archiver:
    def __init__(self, db: Backend, store: TieredBlobStore, pool: Executor | None = None,
                 clock: Callable[[], float] = time.time) -> None:
        self.db = db
        self.store = store
        self.pool = pool
        self.clock = clock

    async def _io(self, fn: Callable[..., object], *args: object) -> object:
        return await asyncio.get_running_loop().run_in_executor(self.pool, fn, *args)

    async def place(self, digest: str, to_main: bool = False) -> str:
        """Move one blob to the store where it belongs (`to_main`: the main store, whatever the references
        say: an image being restored). What happened: archived | restored | stays | refused | gone | lost.
        PlacementBusy when another placement holds it."""
        stamp = self.clock()
        held = await self.db.write(qa.claim, digest, stamp, stamp - MOVE_STALE)
        if held is None:
            raise PlacementBusy(f"blob {digest} is being moved")
        try:
            if held.size is None:  # gone, or a collection is deleting it: nothing to move
                return "gone"
            belongs = False if to_main else await self.db.read(qa.home, digest)
            archive = held.in_archive if belongs is None else belongs  # unused: left for a collection, where it is
            if archive == held.in_archive:  # where it belongs; drop a copy a placement that died left behind
                other = self.store.main if archive else self.store.archive
                if await self._io(other.stat, digest) is not None:
                    await self._io(other.delete, [digest])
                return "stays"
            src, dst = (self.store.main, self.store.archive) if archive else (self.store.archive, self.store.main)
            try:
                await self._io(_copy, src, dst, digest, held.size)
            except FileNotFoundError:  # its source copy went (a collection): nothing to move
                return "gone"
            outcome = await self.db.write(qa.settle, digest, stamp, archive, self.clock(), archive)
            if outcome == "done":
                await self._io(src.delete, [digest])
                return "archived" if archive else "restored"
            if outcome == "refused":
                await self._io(self.store.archive.delete, [digest])  # only placements write the archive store
            return outcome
        finally:
            await self.db.write(qa.release, digest, stamp)

    async def restore(self, digests: list[str]) -> bool:
        """Bring blobs back to the main store (an image being restored); False while one is busy."""
        busy = False
        for d in await self.db.read(qa.in_archive, digests):
            try:
                await self.place(d, to_main=True)
            except PlacementBusy:
                busy = True
        return not busy and not await self.db.read(qa.in_archive, digests)


def place_job(archiver: Archiver) -> Handler:
    async def run(job: Job) -> None:
        digest = str(job.payload["digest"])
        outcome = await archiver.place(digest)
        log.info("archive: %s %s", digest, outcome)
    return run
