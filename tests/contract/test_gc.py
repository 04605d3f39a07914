"""Garbage collection and the deletion rules, through the services, on SQLite and PostgreSQL (the metadata
contract's backends) and, where storage matters, on the filesystem and on S3 (a real radosgw).

The invariant every test checks in the end: every manifest stored references only blobs that are linked
to its repository and readable in storage, byte for byte (`assert_pullable`).
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import random
import time
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from berth.db import gc as qg
from berth.db import registry as q
from berth.db.store import Backend, Q
from berth.lifecycle.gc import Collector
from berth.registry import uploads as uploads_module
from berth.registry.errors import BlobReferenced, BlobStoreUnavailable, BlobUnknown, ManifestBlobUnknown
from berth.registry.images import ImageId, Images
from berth.registry.model import Repository
from berth.registry.repositories import RepositoryAdmin
from berth.registry.service import RegistryService
from berth.registry.uploads import Uploads
from berth.storage import BlobStore
from berth.storage.filesystem import FilesystemBlobStore
from tests.contract import test_metadata as metadata_contract
from tests.contract.test_concurrency import RawWriter, at_once, unexpected
from tests.contract.test_metadata import ACCOUNT, REGION, Harness

db = metadata_contract.db
postgres_url = metadata_contract.postgres_url
sqlite_template = metadata_contract.sqlite_template

OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_CONFIG = "application/vnd.oci.image.config.v1+json"
OCI_LAYER = "application/vnd.oci.image.layer.v1.tar"
HOUR = 3600.0
ROUNDS = 12


def sha(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def manifest(blobs: list[bytes], subject: tuple[str, int] | None = None, seed: str = "") -> bytes:
    config, *layers = blobs
    doc: dict[str, Any] = {
        "schemaVersion": 2, "mediaType": OCI_MANIFEST,
        "config": {"mediaType": OCI_CONFIG, "digest": sha(config), "size": len(config)},
        "layers": [{"mediaType": OCI_LAYER, "digest": sha(b), "size": len(b)} for b in layers],
        "annotations": {"seed": seed or "x"}}
    if subject is not None:
        doc["subject"] = {"mediaType": OCI_MANIFEST, "digest": subject[0], "size": subject[1]}
    return json.dumps(doc).encode()


async def _one(data: bytes) -> AsyncIterator[bytes]:
    yield data


class World:
    """The services of one process over one backend and one blob store, its clock `offset` seconds off the
    real time (ahead: a collection hours later; behind: links made hours ago)."""

    def __init__(self, db: Backend, blobs: BlobStore, offset: float = 0.0, grace: float = HOUR,
                 pin_hold: float = 900.0) -> None:
        def clock() -> float:
            return time.time() + offset

        self.db = db
        self.blobs = blobs
        self.uploads = Uploads(db, blobs, clock=clock)
        self.registry = RegistryService(db, blobs, self.uploads, clock=clock)
        self.images = Images(self.registry)
        self.repos = RepositoryAdmin(db)
        self.gc = Collector(db, blobs, self.uploads, grace=grace, pin_hold=pin_hold, clock=clock)

    async def repo(self, name: str) -> Repository:
        try:
            return await self.registry.repository(ACCOUNT, REGION, name)
        except Exception:
            return await self.repos.create(ACCOUNT, REGION, name)

    async def upload(self, repo: Repository, data: bytes) -> str:
        async def repo_id() -> int:
            return repo.id

        await self.uploads.put(repo_id, sha(data), _one(data), len(data))
        return sha(data)

    async def push(self, repo: Repository, tag: str, blobs: list[bytes], **kw: Any) -> str:
        for b in blobs:
            await self.upload(repo, b)
        body = manifest(blobs, **kw)
        return (await self.registry.put_manifest(repo, tag, body, OCI_MANIFEST)).digest

    def stored(self, digest: str) -> bytes | None:
        try:
            reader = self.blobs.open(digest)
        except FileNotFoundError:
            return None
        try:
            out = b""
            while chunk := reader.read(1 << 20):
                out += chunk
            return out
        finally:
            reader.close()

    async def assert_pullable(self) -> int:
        """Every manifest of every repository: each blob it references linked, in storage, with its digest."""
        rows = await self.db.read(_all_refs)
        for repo_id, manifest_digest, blob in rows:
            assert await self.db.read(q.repo_blob_size, repo_id, blob) is not None, \
                f"{manifest_digest} references {blob}, no longer linked to its repository"
            data = self.stored(blob)
            assert data is not None, f"{manifest_digest} references {blob}, gone from storage"
            assert sha(data) == blob, f"{blob} holds other bytes"
        return len(rows)


def _all_refs() -> Any:
    rows = yield Q("SELECT repository_id, manifest_digest, child_digest FROM manifest_refs "
                     "WHERE kind IN ('config', 'layer')", (), "all")
    return [(int(r[0]), r[1], r[2]) for r in rows]


def _s3_store(tmp_path: Path) -> BlobStore:
    from berth.storage.s3 import S3BlobStore
    from tests.support.ceph import shared_cluster

    ceph = shared_cluster()
    return S3BlobStore(ceph.shared_bucket(), f"gc/{tmp_path.name}", endpoint=ceph.endpoint, region=ceph.region,
                       addressing="path", access_key=ceph.access_key, secret_key=ceph.secret_key)


@pytest.fixture(params=["filesystem", "s3"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Callable[[], BlobStore]]:
    """A factory of blob stores over one place (each World gets its own, as each process would)."""
    if request.param == "s3":
        yield lambda: _s3_store(tmp_path)
    else:
        yield lambda: FilesystemBlobStore(tmp_path / "blobs")


def run(h: Harness, make_store: Callable[[], BlobStore], body: Callable[..., Any], n: int = 1, **kw: Any) -> Any:
    async def main() -> Any:
        backends = [await h.open() for _ in range(n)]
        try:
            return await body(*[World(b, make_store(), **kw) for b in backends])
        finally:
            for b in backends:
                await b.close()

    return asyncio.run(main())


def fs(tmp_path: Path) -> Callable[[], BlobStore]:
    return lambda: FilesystemBlobStore(tmp_path / "blobs")


# deletion rules

def test_a_blob_a_manifest_uses_cannot_be_deleted(db: Harness, tmp_path: Path) -> None:
    async def body(w: World) -> None:
        repo = await w.repo("app")
        config, layer = b'{"c": 1}', b"layer-bytes"
        await w.push(repo, "v1", [config, layer])
        with pytest.raises(BlobReferenced) as e:
            await w.registry.delete_blob(repo, sha(layer))
        assert e.value.detail["manifests"] == [sha(manifest([config, layer]))]
        assert await w.registry.blob_size(repo, sha(layer)) == len(layer)
        await w.assert_pullable()
        await w.registry.delete_manifest(repo, sha(manifest([config, layer])))
        await w.registry.delete_blob(repo, sha(layer))  # nothing uses it now
        with pytest.raises(BlobUnknown):
            await w.registry.blob_size(repo, sha(layer))
        with pytest.raises(BlobUnknown):
            await w.registry.delete_blob(repo, sha(layer))

    run(db, fs(tmp_path), body)


def test_a_blob_delete_never_strands_a_concurrent_push(db: Harness, tmp_path: Path) -> None:
    """Deletes of a layer and pushes of manifests using it, at once: whatever wins, every stored manifest's
    layer stays linked (the delete locks the link before it reads the refs; a push holds it FOR KEY SHARE)."""

    async def body(*ws: World) -> None:
        repo = await ws[0].repo("race")
        config = b'{"c": "race"}'
        await ws[0].upload(repo, config)
        for r in range(ROUNDS):
            layer = f"layer-{r}".encode()
            await ws[0].upload(repo, layer)
            bodies = [manifest([config, layer], seed=f"{r}-{i}") for i in range(len(ws) - 2)]
            results = await at_once([ws[0].registry.delete_blob(repo, sha(layer)),
                                     ws[1].registry.delete_blob(repo, sha(layer)),
                                     *(w.registry.put_manifest(repo, f"t{r}-{i}", b, OCI_MANIFEST)
                                       for i, (w, b) in enumerate(zip(ws[2:], bodies, strict=True)))])
            assert not unexpected(results, BlobReferenced, BlobUnknown, ManifestBlobUnknown), results
            await ws[0].assert_pullable()

    run(db, fs(tmp_path), body, n=6)


def test_deleting_a_subject_deletes_its_referrers(db: Harness, tmp_path: Path) -> None:
    async def body(w: World) -> None:
        repo = await w.repo("signed")
        image = [b'{"c": "img"}', b"img-layer"]
        subject = await w.push(repo, "v1", image)
        size = len(manifest(image))
        sig = await w.push(repo, "sig", [b'{"c": "sig"}', b"signature"], subject=(subject, size))
        sbom = await w.push(repo, "sbom", [b'{"c": "sbom"}', b"sbom"], subject=(subject, size))
        sig_body = manifest([b'{"c": "sig"}', b"signature"], subject=(subject, size))
        sig_of_sig = await w.push(repo, "sigsig", [b'{"c": "ss"}', b"ss"], subject=(sig, len(sig_body)))
        assert {r.digest for r in await w.registry.referrers(repo, subject)} == {sig, sbom}
        d = await w.registry.delete_image(repo, subject)
        assert set(d.referrers) == {sig, sbom, sig_of_sig}
        assert await w.registry.referrers(repo, subject) == []
        assert await w.registry.referrers(repo, sig) == []
        assert await w.db.read(q.present_manifests, repo.id, [subject, sig, sbom, sig_of_sig]) == set()
        assert await w.registry.list_tags(repo, "", None) == []
        # and what they used is garbage now
        report = await World(w.db, w.blobs, offset=2 * HOUR).gc.collect()
        assert report.freed["unreferenced"].objects == 8
        assert await w.assert_pullable() == 0

    run(db, fs(tmp_path), body)


def test_an_index_keeps_a_referrer_of_a_deleted_subject(db: Harness, tmp_path: Path) -> None:
    async def body(w: World) -> None:
        repo = await w.repo("kept")
        subject = await w.push(repo, "v1", [b'{"c": 1}', b"l1"])
        sig_blobs = [b'{"c": "sig"}', b"sig"]
        sig = await w.push(repo, "sig", sig_blobs, subject=(subject, len(manifest([b'{"c": 1}', b"l1"]))))
        sig_body = manifest(sig_blobs, subject=(subject, len(manifest([b'{"c": 1}', b"l1"]))))
        index = json.dumps({"schemaVersion": 2, "mediaType": "application/vnd.oci.image.index.v1+json",
                            "manifests": [{"mediaType": OCI_MANIFEST, "digest": sig, "size": len(sig_body)}]})
        await w.registry.put_manifest(repo, "idx", index.encode(), "application/vnd.oci.image.index.v1+json")
        d = await w.registry.delete_image(repo, subject)
        assert d.referrers == ()
        assert await w.db.read(q.present_manifests, repo.id, [sig]) == {sig}
        await w.assert_pullable()

    run(db, fs(tmp_path), body)


def test_what_deletes_leave_a_collection_frees(db: Harness, store: Callable[[], BlobStore]) -> None:
    """An image deleted by digest, one by its last tag (ECR's rule), a tag whose image stays, a force-deleted
    repository with an upload in progress, a blob uploaded and never used: one collection (two hours later)
    frees exactly what no remaining image uses, on both storage drivers."""

    async def body(w: World) -> None:
        one, two = await w.repo("one"), await w.repo("two")
        shared = b"shared-layer" * 100
        a = await w.push(one, "a", [b'{"c": "a"}', b"a-layer", shared])
        await w.push(one, "b", [b'{"c": "b"}', b"b-layer", shared])
        kept = await w.push(one, "kept", [b'{"c": "k"}', b"k-layer", shared])
        await w.registry.put_manifest(one, "also-kept", manifest([b'{"c": "k"}', b"k-layer", shared]), OCI_MANIFEST)
        await w.push(two, "c", [b'{"c": "c"}', b"c-layer", shared])
        lone = await w.upload(one, b"never used")
        upload_id = await w.uploads.start(two.id)
        await w.uploads.append(two.id, upload_id, _one(b"half a blob"), None, None)

        await w.registry.delete_image(one, a)
        deleted, failures = await w.images.delete(one, [ImageId(tag="b")])
        assert not failures and deleted
        await w.registry.remove_tag(one, "also-kept")  # the image stays, with tag "kept"
        assert (await w.repos.delete(ACCOUNT, REGION, "two", force=True)) is not None

        now = World(w.db, w.blobs)  # within the grace period: nothing goes
        early = await now.gc.collect()
        assert early.objects == 0
        later = World(w.db, w.blobs, offset=2 * HOUR)
        dry = await later.gc.collect(dry_run=True)
        report = await later.gc.collect()
        gone = [b'{"c": "a"}', b"a-layer", b'{"c": "b"}', b"b-layer", b'{"c": "c"}', b"c-layer", b"never used"]
        assert report.freed["unreferenced"].objects == len(gone)
        assert report.freed["unreferenced"].bytes == sum(map(len, gone))
        assert dry.freed["unreferenced"].objects == len(gone) and dry.dry_run
        assert report.freed["uploads"].objects >= 1  # the upload of the deleted repository
        for data in gone:
            assert w.stored(sha(data)) is None, f"{data!r} is still in storage"
        assert sha(b"never used") == lone
        assert await w.db.read(qg.totals) == qg.Totals(3, len(b'{"c": "k"}') + len(b"k-layer") + len(shared), 3, 0)
        assert await w.assert_pullable() == 3
        assert (await w.registry.get_manifest(one, "kept")).digest == kept
        again = await later.gc.collect()
        assert again.objects == 0

    run(db, store, body)


def test_unrecorded_objects_are_collected_once_past_the_grace_period(db: Harness, store: Callable[[], BlobStore]
                                                                     ) -> None:
    async def body(w: World) -> None:
        data = b"written, then the process died before linking it"
        writer = w.blobs.create(sha(data))
        writer.write(data)
        writer.commit(sha(data))
        first = await w.gc.collect()
        assert first.newly_unrecorded == 1 and first.objects == 0
        assert w.stored(sha(data)) == data
        later = await World(w.db, w.blobs, offset=2 * HOUR).gc.collect()
        assert later.freed["unrecorded"].objects == 1 and later.freed["unrecorded"].bytes == len(data)
        assert w.stored(sha(data)) is None
        assert await w.db.read(qg.totals) == qg.Totals(0, 0, 0, 0)

    run(db, store, body)


# the races

def test_a_collection_never_condemns_a_blob_a_push_in_flight_references(db: Harness, tmp_path: Path) -> None:
    """A push has locked its layer's link and written its refs, uncommitted, when a collection that finds the
    layer unreferenced and past its grace starts: the collection must wait and spare it."""

    async def body(w: World) -> None:
        repo = await w.repo("inflight")
        config = b'{"c": "inflight"}'
        await w.push(repo, "base", [config])
        for r in range(4):
            layer = f"old-layer-{r}".encode()
            await w.upload(repo, layer)
            body_ = manifest([config, layer], seed=str(r))
            raw = RawWriter(db)
            await raw.begin("INSERT INTO manifest_refs (repository_id, manifest_digest, child_digest, kind) "
                            "SELECT repository_id, 'sha256:" + "0" * 63 + f"{r}', digest, 'layer' FROM "
                            "repository_blobs WHERE repository_id = ? AND digest = ?", repo.id, sha(layer))
            if db.kind == "postgres":  # as put_manifest does: the link FOR KEY SHARE, held to the commit
                await raw._pg.execute("SELECT 1 FROM repository_blobs WHERE repository_id = $1 AND digest = $2 "
                                      "FOR KEY SHARE", repo.id, sha(layer))
            collection = asyncio.ensure_future(World(w.db, w.blobs, offset=2 * HOUR, pin_hold=0).gc.collect())
            await asyncio.sleep(0.3)
            await raw.commit()
            await collection
            assert w.stored(sha(layer)) == layer, f"round {r}: a layer referenced by a committed push was deleted"
            assert await w.db.read(q.repo_blob_size, repo.id, sha(layer)) is not None
            await w.registry.put_manifest(repo, f"t{r}", body_, OCI_MANIFEST)
            await w.assert_pullable()

    run(db, fs(tmp_path), body)


def test_collections_racing_pushes_keep_every_pushed_image_whole(db: Harness, tmp_path: Path) -> None:
    """Each round: a layer unreferenced for hours; at once, two collections and pushes that re-upload (or only
    HEAD) and reference it. Whatever the order, every manifest stored keeps its layer, and any push refused
    was refused cleanly (MANIFEST_BLOB_UNKNOWN: its layer was collected before its push)."""

    async def body(*ws: World) -> None:
        repo = await ws[0].repo("racing")
        config = b'{"c": "racing"}'
        await ws[0].push(repo, "base", [config])  # keeps the config referenced throughout
        stored = refused = freed = 0
        rng = random.Random(7)
        for r in range(ROUNDS):
            layer = f"layer-{r}".encode() * 50
            await ws[0].upload(repo, layer)

            async def push(w: World, i: int, reupload: bool, r: int = r, layer: bytes = layer) -> str:
                await asyncio.sleep(rng.random() * 0.03 * (r % 3))  # some rounds the collections go first
                if reupload:
                    await w.upload(repo, layer)
                else:
                    await w.registry.blob_size(repo, sha(layer))  # HEAD: it exists (or BlobUnknown)
                body = manifest([config, layer], seed=f"{r}{i}")
                return (await w.registry.put_manifest(repo, f"r{r}-{i}", body, OCI_MANIFEST)).digest

            calls = [w.gc.collect() for w in ws[1:3]] + [push(w, i, i % 2 == 0) for i, w in enumerate(ws[3:])]
            results = await at_once(calls)
            assert not unexpected(results, ManifestBlobUnknown, BlobUnknown), results
            stored += len([x for x in results[2:] if isinstance(x, str)])
            refused += len([x for x in results[2:] if isinstance(x, BaseException)])
            freed += sum(x.objects for x in results[:2] if not isinstance(x, BaseException))
            await ws[0].assert_pullable()
        assert stored > 0
        print(f"{ROUNDS} rounds: {stored} pushes stored, {refused} refused cleanly, {freed} objects collected")

    # ws[0] links each layer two hours back; two collect (grace 1 h: every such layer is a candidate)
    async def main() -> None:
        backends = [await db.open() for _ in range(6)]
        try:
            ws = [World(b, FilesystemBlobStore(tmp_path / "blobs"), offset=-2 * HOUR if i == 0 else 0.0)
                  for i, b in enumerate(backends)]
            await body(*ws)
        finally:
            for b in backends:
                await b.close()

    asyncio.run(main())


def test_an_upload_waits_for_the_deletion_of_its_condemned_digest(db: Harness, tmp_path: Path) -> None:
    """A digest condemned by a collection that is slow to delete its bytes: an upload of it waits (its pin
    is refused) until the rows are buried, then stores its bytes, which the collection no longer touches."""

    async def body(w: World) -> None:
        repo = await w.repo("slow")
        data = b"condemned bytes"
        await w.upload(repo, data)
        doomed = await w.db.write(qg.condemn, [sha(data)], time.time() + HOUR, time.time() + HOUR, time.time())
        assert [c.digest for c in doomed] == [sha(data)]
        with pytest.raises(BlobUnknown):  # a HEAD: being collected, so upload it again
            await w.registry.blob_size(repo, sha(data))
        upload = asyncio.ensure_future(w.upload(repo, data))
        await asyncio.sleep(0.5)
        assert not upload.done(), "an upload pinned a condemned digest"
        w.blobs.delete([sha(data)])
        await w.db.write(qg.bury, [sha(data)])
        await upload
        assert w.stored(sha(data)) == data
        assert await w.registry.blob_size(repo, sha(data)) == len(data)

    run(db, fs(tmp_path), body)


def test_a_head_restarts_the_grace_period(db: Harness, tmp_path: Path) -> None:
    async def body(w: World) -> None:
        repo = await w.repo("head")
        data = b"seen by a HEAD"
        await w.upload(repo, data)
        # the link is two hours old, as seen from a registry whose clock is two hours ahead
        ahead = World(w.db, w.blobs, offset=2 * HOUR)
        ahead.registry.clock = lambda: time.time() + 2 * HOUR
        assert await ahead.registry.blob_size(repo, sha(data)) == len(data)
        report = await ahead.gc.collect()
        assert report.objects == 0 and w.stored(sha(data)) == data
        assert (await World(w.db, w.blobs, offset=4 * HOUR).gc.collect()).freed["unreferenced"].objects == 1

    run(db, fs(tmp_path), body)


def test_a_collection_that_stopped_midway_is_finished_by_the_next(db: Harness, tmp_path: Path) -> None:
    async def body(w: World) -> None:
        repo = await w.repo("midway")
        data = b"condemned, then the collector died"
        await w.upload(repo, data)
        t = time.time() + 2 * HOUR
        assert await w.db.write(qg.condemn, [sha(data)], t, t, time.time() - 700)
        attempts = uploads_module.PIN_ATTEMPTS
        uploads_module.PIN_ATTEMPTS = 2
        try:
            with pytest.raises(BlobStoreUnavailable):  # an upload of it waits for the deletion, then gives up
                await w.upload(repo, data)
        finally:
            uploads_module.PIN_ATTEMPTS = attempts
        report = await w.gc.collect()
        assert report.freed["unreferenced"].objects == 1 and w.stored(sha(data)) is None
        await w.upload(repo, data)
        assert w.stored(sha(data)) == data

    run(db, fs(tmp_path), body)


def test_no_link_is_made_to_a_condemned_digest(db: Harness, tmp_path: Path) -> None:
    async def body(w: World) -> None:
        one, two = await w.repo("src"), await w.repo("dst")
        data = b"condemned, not yet buried"
        await w.upload(one, data)
        t = time.time() + 2 * HOUR
        assert await w.db.write(qg.condemn, [sha(data)], t, t, time.time())
        with pytest.raises(qg.BlobCondemned):
            await w.db.write(q.link_blob, two.id, sha(data), len(data), time.time())
        assert await w.registry.mount_blob(two, one, sha(data)) is None  # its source link is gone too
        assert await w.db.read(q.repo_blob_size, two.id, sha(data)) is None
        assert not await w.db.write(qg.pin, sha(data), time.time())

    run(db, fs(tmp_path), body)
