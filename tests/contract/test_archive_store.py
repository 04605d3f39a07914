"""The archive storage location, through the services, on SQLite and PostgreSQL, with two filesystem stores
(and once with the archive on S3, a real radosgw): archiving moves what only archived images use, restoring
brings it back before the image is ACTIVE, a push that references a blob being moved or in the archive is
pullable at once, and garbage collection frees (and spares) what is in the archive store.

The placement and activation jobs are run here by calling their handlers, as a worker would.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

from berth.db import archive as qa
from berth.db import jobs as qj
from berth.db.store import Backend
from berth.lifecycle import jobs as lifecycle_jobs
from berth.lifecycle.archive import PLACE_JOB, Archiver, PlacementBusy, TieredBlobStore, place_job
from berth.lifecycle.service import ACTIVATE_JOB, BlobsInArchive, LifecycleService
from berth.registry.images import ImageId
from berth.registry.model import Repository
from berth.storage import BlobStore
from berth.storage.filesystem import FilesystemBlobStore
from tests.contract import test_metadata as metadata_contract
from tests.contract.test_concurrency import at_once, unexpected
from tests.contract.test_gc import HOUR, OCI_MANIFEST, World, _s3_store, manifest, sha
from tests.contract.test_metadata import ACCOUNT, REGION, Harness

db = metadata_contract.db
postgres_url = metadata_contract.postgres_url
sqlite_template = metadata_contract.sqlite_template


class Archive:
    """One process's services over a main and an archive store, and the handlers its worker would run."""

    def __init__(self, w: World, store: TieredBlobStore) -> None:
        self.w, self.store, self.db = w, store, w.db
        w.registry.archive_store = True  # as app.py sets it
        self.life = LifecycleService(w.db, archive_store=True)
        self.archiver = Archiver(w.db, store)
        self.place = place_job(self.archiver)
        self.activate = lifecycle_jobs.activate(w.db, self.life, self.archiver)

    async def run_jobs(self) -> int:
        """Claim and run every queued placement and activation job; how many ran."""
        n, now = 0, self.w.registry.clock() + 100 * 86400  # also those queued by a clock days ahead
        while jobs := await self.db.write(qj.claim, "test", now, 60, 50, [PLACE_JOB, ACTIVATE_JOB]):
            for job in jobs:
                await (self.place if job.kind == PLACE_JOB else self.activate)(job)
                await self.db.write(qj.complete, "test", [job.id], now)
                n += 1
        return n

    def later(self, offset: float) -> World:
        """This process's services `offset` seconds ahead (a collection hours later), with the archive store."""
        w = World(self.db, self.store, offset=offset)  # type: ignore[arg-type]
        w.gc.archive = self.store.archive
        return w

    def where(self, data: bytes) -> tuple[bool, bool]:
        """(in the main store, in the archive store)."""
        return self.store.main.stat(sha(data)) is not None, self.store.archive.stat(sha(data)) is not None


def run(h: Harness, main: Callable[[], BlobStore], archive: Callable[[], BlobStore],
        body: Callable[..., Any], n: int = 1) -> Any:
    async def go() -> Any:
        backends: list[Backend] = [await h.open() for _ in range(n)]
        try:
            out = []
            for b in backends:
                store = TieredBlobStore(main(), archive())
                w = World(b, store)  # type: ignore[arg-type]
                w.gc.archive = store.archive
                out.append(Archive(w, store))
            return await body(*out)
        finally:
            for b in backends:
                await b.close()

    return asyncio.run(go())


def two_dirs(tmp_path: Path) -> tuple[Callable[[], BlobStore], Callable[[], BlobStore]]:
    return lambda: FilesystemBlobStore(tmp_path / "main"), lambda: FilesystemBlobStore(tmp_path / "archive")


CONFIG_A, LAYER_A, SHARED = b'{"c": "a"}', b"a-layer" * 50, b"shared-layer" * 80


async def archived_image(a: Archive, repo: Repository) -> str:
    """Image A (its own config and layer, and a layer image B shares) pushed and archived, its jobs run."""
    digest = await a.w.push(repo, "a", [CONFIG_A, LAYER_A, SHARED])
    await a.w.push(repo, "b", [b'{"c": "b"}', b"b-layer", SHARED])
    assert await a.life.update_storage_class(repo, digest, "ARCHIVE") == "ARCHIVED"
    assert await a.run_jobs() == 3  # a placement per blob of the image
    return digest


def test_archive_moves_unshared_blobs_and_restore_brings_them_back(db: Harness, tmp_path: Path) -> None:
    async def body(a: Archive) -> None:
        repo = await a.w.repo("app")
        digest = await archived_image(a, repo)
        assert a.where(CONFIG_A) == a.where(LAYER_A) == (False, True)  # moved
        assert a.where(SHARED) == (True, False)  # an active image shares it: stays
        assert await a.db.read(qa.in_archive, [sha(CONFIG_A), sha(LAYER_A), sha(SHARED)]) == {sha(CONFIG_A),
                                                                                             sha(LAYER_A)}
        assert a.w.stored(sha(LAYER_A)) == LAYER_A  # readable through the tiered store
        assert await a.db.read(qa.archived_total) == (2, len(CONFIG_A) + len(LAYER_A))

        assert await a.life.update_storage_class(repo, digest, "STANDARD") == "ACTIVATING"
        assert a.where(LAYER_A) == (False, True)  # not yet
        assert await a.run_jobs() == 1
        assert (await a.life.statuses(repo, [digest]))[digest][0] == "ACTIVE"
        assert a.where(CONFIG_A) == a.where(LAYER_A) == (True, False)  # back before it was ACTIVE
        assert await a.db.read(qa.in_archive, [sha(CONFIG_A), sha(LAYER_A)]) == set()
        assert await a.w.assert_pullable() == 6

    run(db, *two_dirs(tmp_path), body)


def test_a_lifecycle_transition_moves_the_blobs_too(db: Harness, tmp_path: Path) -> None:
    async def body(a: Archive) -> None:
        repo = await a.w.repo("cold")
        old = await a.w.push(repo, "v1", [CONFIG_A, LAYER_A])
        life = LifecycleService(a.db, lambda: a.w.registry.clock() + 10 * 86400, archive_store=True)
        await life.put_policy(repo, json.dumps({"rules": [
            {"rulePriority": 1, "selection": {"tagStatus": "any", "countType": "sinceImagePushed",
                                              "countUnit": "days", "countNumber": 5},
             "action": {"type": "transition", "targetStorageClass": "archive"}}]}).ljust(100))
        assert [(o.action.digest, o.result) for o in await life.run(repo)] == [(old, "transitioned")]
        assert await a.run_jobs() == 2
        assert a.where(CONFIG_A) == a.where(LAYER_A) == (False, True)

    run(db, *two_dirs(tmp_path), body)


def test_a_push_referencing_an_archived_blob_is_pullable_at_once(db: Harness, tmp_path: Path) -> None:
    """A new image that references a blob in the archive store (no upload: the link is there) is pullable
    as soon as it is stored (read from the archive store), and its push queues the blob's way back. A re-upload
    of an archived blob to another repository lands in the main store and is pullable too. A push by a process
    that does not know the archive store (an older node) is caught by the next collection."""
    async def body(a: Archive) -> None:
        repo = await a.w.repo("app")
        await archived_image(a, repo)
        await a.w.upload(repo, b'{"c": "new"}')
        await a.w.registry.put_manifest(repo, "new", manifest([b'{"c": "new"}', LAYER_A], seed="new"), OCI_MANIFEST)
        assert a.where(LAYER_A) == (False, True)
        assert await a.w.assert_pullable() == 8  # before any job ran
        assert [c async for c in a.w.registry.read_blob(sha(LAYER_A), 0, len(LAYER_A))] == [LAYER_A]
        assert await a.run_jobs() == 1  # the placement the push queued
        assert a.where(LAYER_A) == (True, False)

        other = await a.w.repo("other")
        a.w.registry.archive_store = False
        await a.w.push(other, "copy", [b'{"c": "other"}', CONFIG_A])  # uploaded again: into the main store
        assert a.where(CONFIG_A) == (True, True)
        assert await a.w.assert_pullable() == 10
        assert await a.run_jobs() == 0
        report = await a.w.gc.collect()
        assert report.placements == 1 and report.objects == 0
        assert await a.run_jobs() == 1
        assert a.where(LAYER_A) == a.where(CONFIG_A) == (True, False)
        assert await a.db.read(qa.in_archive, [sha(LAYER_A), sha(CONFIG_A)]) == set()
        assert await a.w.assert_pullable() == 10

    run(db, *two_dirs(tmp_path), body)


def test_a_push_racing_a_move_keeps_its_blob(db: Harness, tmp_path: Path) -> None:
    """Placements of an archived image's layer and pushes of new images using it, at once, over several
    processes: whichever settles first, every stored image is pullable, and a layer an active image uses
    is left in the main store (the move is refused) unless the move settled first."""
    rounds = 6

    async def body(*ps: Archive) -> None:
        repo = await ps[0].w.repo("race")
        await ps[0].w.upload(repo, CONFIG_A)
        for r in range(rounds):
            layer = f"race-layer-{r}".encode() * 40
            digest = await ps[0].w.push(repo, f"old{r}", [CONFIG_A, layer])
            await ps[0].life.update_storage_class(repo, digest, "ARCHIVE")
            new = manifest([CONFIG_A, layer], seed=f"new{r}")
            async def put(p: Archive, tag: str, body: bytes, delay: float) -> str:
                await asyncio.sleep(delay)  # later and later: the pushes win early rounds, the moves late ones
                return (await p.w.registry.put_manifest(repo, tag, body, OCI_MANIFEST)).digest

            results = await at_once([ps[0].archiver.place(sha(layer)), ps[1].archiver.place(sha(layer)),
                                     *(put(p, f"new{r}-{i}", new, r * r * 0.004) for i, p in enumerate(ps[2:]))])
            assert not unexpected(results, PlacementBusy), results
            await ps[0].w.assert_pullable()
            main, archive = ps[0].where(layer)
            in_archive = sha(layer) in await ps[0].db.read(qa.in_archive, [sha(layer)])
            assert (main, archive) == ((False, True) if in_archive else (True, False)), (r, results)
            await ps[0].archiver.place(sha(layer))  # a later placement brings it back: an active image uses it
            assert ps[0].where(layer) == (True, False)

    run(db, *two_dirs(tmp_path), body, n=4)


def test_gc_frees_the_archive_store_and_spares_what_it_records(db: Harness, tmp_path: Path) -> None:
    async def body(a: Archive) -> None:
        repo = await a.w.repo("app")
        digest = await archived_image(a, repo)
        stray = b"an archive object nothing records"
        w = a.store.archive.create(sha(stray))
        w.write(stray)
        w.commit(sha(stray))
        later = a.later(2 * HOUR)
        first = await later.gc.collect()
        assert first.objects == 0 and first.newly_unrecorded == 1
        assert a.where(LAYER_A) == (False, True)  # recorded: spared
        await a.w.images.delete(repo, [ImageId(digest=digest)])
        gone = await a.later(4 * HOUR).gc.collect()
        assert gone.freed["unreferenced"].objects == 2 and gone.freed["unrecorded"].objects == 1
        assert a.where(CONFIG_A) == a.where(LAYER_A) == a.where(stray) == (False, False)
        assert await a.db.read(qa.archived_total) == (0, 0)
        # a force-deleted repository with an archived image: its archived blobs are found too
        two = await a.w.repo("two")
        await archived_image(a, two)
        assert a.where(LAYER_A) == (False, True)
        assert (await a.w.repos.delete(ACCOUNT, REGION, "two", force=True)) is not None
        freed = await a.later(6 * HOUR).gc.collect()
        assert freed.freed["unreferenced"].objects == 2
        assert a.where(CONFIG_A) == a.where(LAYER_A) == (False, False)
        assert a.where(SHARED) == (True, False)  # image b of the first repository uses it
        assert a.store.archive.walk() == []
        assert await a.w.assert_pullable() == 3

    run(db, *two_dirs(tmp_path), body)


def test_an_archive_on_s3(db: Harness, tmp_path: Path) -> None:
    """The archive store on a real radosgw bucket: moved there, read through, brought back, collected."""
    async def body(a: Archive) -> None:
        repo = await a.w.repo("app")
        digest = await archived_image(a, repo)
        assert a.where(LAYER_A) == (False, True)
        assert a.w.stored(sha(LAYER_A)) == LAYER_A
        await a.life.update_storage_class(repo, digest, "STANDARD")
        await a.run_jobs()
        assert a.where(LAYER_A) == (True, False)
        await a.life.update_storage_class(repo, digest, "ARCHIVE")
        await a.run_jobs()
        await a.w.images.delete(repo, [ImageId(digest=digest)])
        await a.later(2 * HOUR).gc.collect()
        assert a.where(LAYER_A) == (False, False)

    run(db, lambda: FilesystemBlobStore(tmp_path / "main"), lambda: _s3_store(tmp_path), body)


def test_collections_and_placements_exclude_each_other(db: Harness, tmp_path: Path) -> None:
    """A collection spares a digest a placement holds (the hold is taken under the blob_gc row's lock); a
    placement takes no hold on a condemned digest. Then, at once over processes, placements and collections of
    images archived and deleted: nothing is lost from images that remain, and nothing is left behind."""
    async def body(*ps: Archive) -> None:
        a = ps[0]
        repo = await a.w.repo("gcrace")
        digest = await a.w.push(repo, "held", [b'{"c": "held"}', b"held-layer"])
        await a.w.images.delete(repo, [ImageId(digest=digest)])
        stamp = a.w.registry.clock()
        claim = await a.db.write(qa.claim, sha(b"held-layer"), stamp, stamp - qa.MOVE_STALE)
        assert claim is not None and claim.size == len(b"held-layer")
        spared = await a.later(2 * HOUR).gc.collect()
        assert spared.freed["unreferenced"].objects == 1 and a.where(b"held-layer") == (True, False)  # the config
        await a.db.write(qa.release, sha(b"held-layer"), stamp)
        freed = await a.later(2 * HOUR).gc.collect()
        assert freed.freed["unreferenced"].objects == 1 and a.where(b"held-layer") == (False, False)

        for r in range(4):
            kept_blobs = [f'{{"c": "k{r}"}}'.encode(), f"kept-{r}".encode() * 30]
            gone_blobs = [f'{{"c": "g{r}"}}'.encode(), f"gone-{r}".encode() * 30]
            kept = await a.w.push(repo, f"k{r}", kept_blobs)
            gone = await a.w.push(repo, f"g{r}", gone_blobs)
            for d in (kept, gone):
                await a.life.update_storage_class(repo, d, "ARCHIVE")
            await a.w.images.delete(repo, [ImageId(digest=gone)])
            results = await at_once([*(p.archiver.place(sha(b)) for p, b in zip(ps, [*kept_blobs, *gone_blobs],
                                                                              strict=False)),
                                     ps[-1].later(2 * HOUR).gc.collect()])
            assert not unexpected(results, PlacementBusy), results
            await a.w.assert_pullable()
        await a.run_jobs()  # the placements the archiving queued
        await a.later(4 * HOUR).gc.collect()
        for r in range(4):
            assert a.where(f"gone-{r}".encode() * 30) == (False, False)
            assert a.where(f"kept-{r}".encode() * 30) == (False, True)
        assert await a.db.read(qa.archived_total) == (8, sum(len(f'{{"c": "k{r}"}}') + len(f"kept-{r}") * 30
                                                               for r in range(4)))
        assert await a.w.assert_pullable() == 8

    run(db, *two_dirs(tmp_path), body, n=4)


def test_a_restore_racing_the_move_ends_active_with_its_blobs_in_the_main_store(db: Harness, tmp_path: Path) -> None:
    """Restore an image while its placements still run, over processes: it becomes ACTIVE only with none of
    its blobs in the archive store (the activation is retried while a placement holds one)."""
    async def body(*ps: Archive) -> None:
        a = ps[0]
        repo = await a.w.repo("flip")
        for r in range(5):
            blobs = [f'{{"c": "f{r}"}}'.encode(), f"flip-{r}".encode() * 40]
            digest = await a.w.push(repo, f"f{r}", blobs)
            await a.life.update_storage_class(repo, digest, "ARCHIVE")

            async def restore(p: Archive, image: str, delay: float) -> str:
                await asyncio.sleep(delay)
                return await p.life.update_storage_class(repo, image, "STANDARD")

            results = await at_once([*(p.archiver.place(sha(b)) for p, b in zip(ps[:2], blobs, strict=True)),
                                     restore(ps[2], digest, r * 0.003)])
            assert not unexpected(results, PlacementBusy), results
            for _ in range(20):  # a worker retries an activation that found a blob held or still archived
                try:
                    await a.run_jobs()
                    break
                except (PlacementBusy, BlobsInArchive):  # the job's retry
                    await a.db.write(qj.release, "test", a.w.registry.clock())
            assert (await a.life.statuses(repo, [digest]))[digest][0] == "ACTIVE"
            assert [a.where(b) for b in blobs] == [(True, False)] * 2, r
            assert await a.db.read(qa.in_archive, [sha(b) for b in blobs]) == set()
        await a.w.assert_pullable()

    run(db, *two_dirs(tmp_path), body, n=3)
