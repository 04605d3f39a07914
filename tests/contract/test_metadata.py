"""The metadata-store contract: berth.db.registry's operations behave the same on every backend.

Each test gets a fresh, migrated database: a copy of a migrated SQLite file, or the session's migrated
PostgreSQL database with every table emptied. Tests are plain functions that hand an async body to `db.run`.
"""

from __future__ import annotations

import asyncio
import hashlib
import shutil
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import asyncpg
import pytest

from berth.db import registry as q
from berth.db import uploads as qu
from berth.db.migrate import sqlalchemy_url, upgrade
from berth.db.postgres import PostgresBackend
from berth.db.registry import DeleteOutcome, ManifestRow, NewManifest, PutOutcome, Referrer
from berth.db.schema import metadata
from berth.db.sqlite import SqliteBackend
from berth.db.store import Backend, Q, StatementFailed, Txn

ACCOUNT = "123456789012"
OTHER_ACCOUNT = "210987654321"
REGION = "us-east-1"
NOW = 1_700_000_000.0

OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_INDEX = "application/vnd.oci.image.index.v1+json"

Body = Callable[[Backend], Awaitable[Any]]


class Harness:
    """Opens a backend inside the test's own event loop (asyncpg pools belong to one loop)."""

    def __init__(self, kind: str, open_: Callable[[], Awaitable[Backend]], where: str) -> None:
        self.kind = kind
        self.open = open_  # another backend over the same database (as another process would have)
        self.where = where  # the SQLite file, or the PostgreSQL URL, for a test's own raw connection

    def run(self, body: Body) -> Any:
        async def main() -> Any:
            backend = await self.open()
            try:
                return await body(backend)
            finally:
                await backend.close()

        return asyncio.run(main())


@pytest.fixture(scope="session")
def sqlite_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("sqlite-template") / "berth.db"
    upgrade(sqlalchemy_url("", path))
    return path


@pytest.fixture(scope="session")
def postgres_url(postgres: Any) -> str:
    """One migrated PostgreSQL database for the session; each test starts from empty tables."""
    url = postgres.new_database()
    upgrade(sqlalchemy_url(url, Path("unused")))
    return url


async def _empty_all(url: str) -> None:
    conn = await asyncpg.connect(url)
    try:
        # DELETE, children first: on tables this small it is much cheaper than TRUNCATE
        await conn.execute("; ".join(f"DELETE FROM {t.name}" for t in reversed(metadata.sorted_tables)))
    finally:
        await conn.close()


@pytest.fixture(params=["sqlite", "postgres"])
def db(request: pytest.FixtureRequest, tmp_path: Path) -> Harness:
    if request.param == "sqlite":
        path = tmp_path / "berth.db"
        shutil.copyfile(request.getfixturevalue("sqlite_template"), path)

        async def open_sqlite() -> Backend:
            return SqliteBackend(path)

        return Harness("sqlite", open_sqlite, str(path))

    url = request.getfixturevalue("postgres_url")
    asyncio.run(_empty_all(url))

    async def open_postgres() -> Backend:
        return await PostgresBackend.connect(url)

    return Harness("postgres", open_postgres, url)


# helpers

def digest_of(data: bytes | str) -> str:
    return "sha256:" + hashlib.sha256(data.encode() if isinstance(data, str) else data).hexdigest()


def manifest(seed: str, refs: tuple[tuple[str, str], ...] = (), subject: str | None = None,
             media_type: str = OCI_MANIFEST, artifact_type: str | None = None,
             annotations: dict[str, str] | None = None) -> NewManifest:
    body = f'{{"schemaVersion":2,"seed":"{seed}"}}'.encode()
    return NewManifest(digest_of(body), media_type, artifact_type, subject, annotations, body,
                       123, refs)


async def new_repo(db: Backend, name: str = "team/app", account: str = ACCOUNT) -> int:
    repo, created = await db.write(q.create_repository, account, REGION, name, NOW)
    assert created
    return repo.id


def link_many(repo_id: int, digests: list[str], size: int = 1) -> Txn[None]:
    for d in digests:
        yield from q.link_blob(repo_id, d, size, NOW)


# repositories

def test_create_repository_is_idempotent(db: Harness) -> None:
    async def body(db: Backend) -> None:
        assert await db.read(q.get_repository, ACCOUNT, REGION, "team/app") is None
        repo, created = await db.write(q.create_repository, ACCOUNT, REGION, "team/app", NOW)
        assert created
        assert (repo.account_id, repo.region, repo.name, repo.created_at) == (ACCOUNT, REGION, "team/app", NOW)
        assert (repo.tag_mutability, repo.tag_mutability_filters, repo.scan_on_push) == ("MUTABLE", "[]", 0)
        assert repo.encryption == '{"encryptionType": "AES256"}'
        again, created_again = await db.write(q.create_repository, ACCOUNT, REGION, "team/app", NOW + 60,
                                              "IMMUTABLE")
        assert not created_again
        assert again == repo  # the first one wins, unchanged
        assert await db.read(q.get_repository, ACCOUNT, REGION, "team/app") == repo
        # the same name elsewhere is another repository
        other, created_other = await db.write(q.create_repository, OTHER_ACCOUNT, REGION, "team/app", NOW)
        assert created_other and other.id != repo.id
        west, created_west = await db.write(q.create_repository, ACCOUNT, "us-west-2", "team/app", NOW)
        assert created_west and west.id not in (repo.id, other.id)

    db.run(body)


def test_create_repository_with_settings(db: Harness) -> None:
    async def body(db: Backend) -> None:
        filters = [{"filter": "latest", "filterType": "WILDCARD"}]
        repo, _ = await db.write(q.create_repository, ACCOUNT, REGION, "locked", NOW, "IMMUTABLE_WITH_EXCLUSION",
                                 filters, True, {"encryptionType": "KMS"})
        got = await db.read(q.get_repository, ACCOUNT, REGION, "locked")
        assert got == repo
        assert (got.tag_mutability, got.tag_mutability_filters, got.scan_on_push, got.encryption) == (
            "IMMUTABLE_WITH_EXCLUSION", '[{"filter": "latest", "filterType": "WILDCARD"}]', 1,
            '{"encryptionType": "KMS"}')  # as stored; decoded by the row:
        assert (got.exclusion_filters, got.encryption_configuration) == (filters, {"encryptionType": "KMS"})

    db.run(body)


def test_list_repository_names_pagination(db: Harness) -> None:
    names = ["b", "a", "a/b", "a-b", "a.b", "a_b", "z/z/z", "c9", "c10", "team/app"]

    async def body(db: Backend) -> None:
        for n in names:
            await new_repo(db, n)
        await new_repo(db, "other-account-only", OTHER_ACCOUNT)
        await db.write(q.create_repository, ACCOUNT, "eu-west-1", "other-region-only", NOW)

        assert await db.read(q.list_repository_names, ACCOUNT, REGION, "", 1000) == sorted(names)
        pages, after = [], ""
        while page := await db.read(q.list_repository_names, ACCOUNT, REGION, after, 3):
            assert len(page) <= 3
            pages.append(page)
            after = page[-1]
        assert [len(p) for p in pages] == [3, 3, 3, 1]
        assert [n for p in pages for n in p] == sorted(names)
        assert await db.read(q.list_repository_names, ACCOUNT, REGION, "b", 100) == [n for n in sorted(names)
                                                                                   if n > "b"]
        assert await db.read(q.list_repository_names, ACCOUNT, REGION, "zzz", 100) == []
        assert await db.read(q.list_repository_names, OTHER_ACCOUNT, REGION, "", 100) == ["other-account-only"]

    db.run(body)


# blobs

def test_link_and_unlink_blobs(db: Harness) -> None:
    d = digest_of("layer")

    async def body(db: Backend) -> None:
        repo, other = await new_repo(db, "one"), await new_repo(db, "two")
        assert await db.read(q.repo_blob_size, repo, d) is None
        await db.write(q.link_blob, repo, d, 1234, NOW)
        await db.write(q.link_blob, repo, d, 1234, NOW + 1)  # again: nothing changes
        assert await db.read(q.repo_blob_size, repo, d) == 1234
        assert await db.read(q.repo_blob_size, other, d) is None  # linked per repository
        await db.write(q.link_blob, other, d, 1234, NOW)
        assert await db.read(q.repo_blob_size, other, d) == 1234
        assert await db.write(q.unlink_blob, repo, d) is True
        assert await db.write(q.unlink_blob, repo, d) is False
        assert await db.read(q.repo_blob_size, repo, d) is None
        assert await db.read(q.repo_blob_size, other, d) == 1234

    db.run(body)


def test_blob_sizes_are_big_integers(db: Harness) -> None:
    big = 5 * 1024**4  # 5 TiB: more than 32 bits
    d = digest_of("big")

    async def body(db: Backend) -> None:
        repo = await new_repo(db)
        await db.write(q.link_blob, repo, d, big, NOW)
        assert await db.read(q.repo_blob_size, repo, d) == big

    db.run(body)


def test_linked_blobs_in_chunks(db: Harness) -> None:
    digests = [digest_of(f"blob-{i}") for i in range(1001)]  # more than one chunk of 500
    linked = digests[::10]

    async def body(db: Backend) -> None:
        repo, other = await new_repo(db, "one"), await new_repo(db, "two")
        await db.write(link_many, repo, linked)
        await db.write(link_many, other, digests[1::10])
        assert await db.read(q.linked_blobs, repo, digests) == set(linked)
        assert await db.read(q.linked_blobs, repo, digests[:1]) == {digests[0]}
        assert await db.read(q.linked_blobs, repo, digests[1:3]) == set()
        assert await db.read(q.linked_blobs, repo, []) == set()

    db.run(body)


# uploads (berth.db.uploads)

def test_upload_rows(db: Harness) -> None:
    async def body(db: Backend) -> None:
        repo = await new_repo(db)
        other = await new_repo(db, "team/other")
        assert await db.read(qu.upload_ids) == set()
        assert await db.read(qu.get_upload, "upload-old", repo) is None
        await db.write(qu.create_upload, "upload-old", repo, NOW - 7200)
        await db.write(qu.create_upload, "upload-new", repo, NOW)
        assert await db.read(qu.get_upload, "upload-old", repo) == qu.Upload("upload-old", repo, 0, None, NOW - 7200)
        assert await db.read(qu.get_upload, "upload-old", other) is None
        assert await db.read(qu.upload_ids) == {"upload-old", "upload-new"}
        assert [u.id for u in await db.read(qu.stale_uploads, NOW - 3600)] == ["upload-old"]
        assert sorted(u.id for u in await db.read(qu.stale_uploads, NOW + 1)) == ["upload-new", "upload-old"]
        assert await db.read(qu.stale_uploads, NOW - 7200) == []
        assert (await db.write(qu.end_upload, "upload-old", other)).outcome is qu.EndOutcome.UNKNOWN
        ended = await db.write(qu.end_upload, "upload-old", repo)
        assert ended.outcome is qu.EndOutcome.ENDED and ended.upload is not None and ended.upload.ended
        assert (await db.write(qu.end_upload, "upload-old", repo)).outcome is qu.EndOutcome.UNKNOWN
        tomb = await db.read(qu.get_upload, "upload-old", repo)
        assert tomb is not None and tomb.ended  # kept, so its id is never taken for a fresh one
        assert await db.read(qu.upload_ids) == {"upload-new"}
        assert [u.id for u in await db.read(qu.stale_uploads, NOW + 1)] == ["upload-new"]
        # a fresh signed id has no row: ending it leaves a tombstone, once
        assert (await db.write(qu.end_upload, "signed-1", repo, NOW)).outcome is qu.EndOutcome.FRESH
        assert (await db.write(qu.end_upload, "signed-1", repo, NOW)).outcome is qu.EndOutcome.UNKNOWN
        assert await db.write(qu.delete_tombstones, NOW - 3600) == 1
        assert await db.read(qu.get_upload, "upload-old", repo) is None
        assert await db.write(qu.delete_tombstones, NOW + 1) == 1
        gone = await db.write(qu.delete_upload, "upload-new")
        assert gone is not None and gone.id == "upload-new"
        assert await db.write(qu.delete_upload, "upload-new") is None

    db.run(body)


def test_upload_claims(db: Harness) -> None:
    """One claim at a time, only at the committed size; the holder alone advances; claims expire."""
    async def body(db: Backend) -> None:
        repo = await new_repo(db)
        await db.write(qu.create_upload, "upload-1", repo, NOW)
        first = await db.write(qu.claim_upload, "upload-1", repo, 0, "a", NOW, NOW + 60)
        assert first.outcome is qu.ClaimOutcome.CLAIMED and first.upload is not None and first.upload.size == 0
        busy = await db.write(qu.claim_upload, "upload-1", repo, 0, "b", NOW, NOW + 60)
        assert busy.outcome is qu.ClaimOutcome.BUSY
        assert (await db.write(qu.claim_upload, "upload-1", repo, None, "b", NOW, NOW + 60)).outcome \
            is qu.ClaimOutcome.BUSY
        assert await db.write(qu.advance_upload, "upload-1", "b", 10, "x") is False  # not the holder
        assert await db.write(qu.renew_claim, "upload-1", "a", NOW + 90) is True
        assert await db.write(qu.advance_upload, "upload-1", "a", 10, "state-10") is True
        assert await db.write(qu.advance_upload, "upload-1", "a", 20, "x") is False  # released
        moved = await db.write(qu.claim_upload, "upload-1", repo, 0, "b", NOW, NOW + 60)
        assert moved.outcome is qu.ClaimOutcome.MOVED and moved.upload is not None and moved.upload.size == 10
        unknown = await db.write(qu.claim_upload, "upload-1", repo + 1, 10, "b", NOW, NOW + 60)
        assert unknown.outcome is qu.ClaimOutcome.UNKNOWN and unknown.upload is None
        held = await db.write(qu.claim_upload, "upload-1", repo, None, "b", NOW, NOW + 60)
        assert held.outcome is qu.ClaimOutcome.CLAIMED and held.upload is not None
        assert (held.upload.size, held.upload.state) == (10, "state-10")
        await db.write(qu.release_claim, "upload-1", "b")
        assert (await db.write(qu.claim_upload, "upload-1", repo, 10, "c", NOW, NOW + 60)).outcome \
            is qu.ClaimOutcome.CLAIMED
        # a writer that died: its claim is taken over once expired, and its late commit is refused
        assert (await db.write(qu.claim_upload, "upload-1", repo, 10, "d", NOW + 61, NOW + 121)).outcome \
            is qu.ClaimOutcome.CLAIMED
        assert await db.write(qu.advance_upload, "upload-1", "c", 30, "x") is False
        assert await db.write(qu.renew_claim, "upload-1", "c", NOW + 200) is False
        assert await db.write(qu.advance_upload, "upload-1", "d", 30, "state-30") is True
        # a fresh signed id: the first claim writes its row; an ended one is unknown
        fresh = await db.write(qu.claim_upload, "signed-1", repo, 0, "e", NOW, NOW + 60, NOW - 5)
        assert fresh.outcome is qu.ClaimOutcome.CLAIMED
        assert fresh.upload == qu.Upload("signed-1", repo, 0, None, NOW - 5)
        assert (await db.write(qu.claim_upload, "signed-1", repo, 0, "f", NOW, NOW + 60, NOW - 5)).outcome \
            is qu.ClaimOutcome.BUSY
        await db.write(qu.end_upload, "signed-1", repo, NOW - 5)
        assert (await db.write(qu.claim_upload, "signed-1", repo, None, "f", NOW + 61, NOW + 120, NOW - 5)).outcome \
            is qu.ClaimOutcome.UNKNOWN

    db.run(body)


def test_finish_upload_links_the_blob_and_ends_the_session(db: Harness) -> None:
    d = digest_of("uploaded")

    async def body(db: Backend) -> None:
        repo = await new_repo(db)
        await db.write(qu.create_upload, "upload-1", repo, NOW)
        assert (await db.write(qu.claim_upload, "upload-1", repo, 0, "a", NOW, NOW + 60)).outcome \
            is qu.ClaimOutcome.CLAIMED
        assert await db.write(qu.finish_upload, "upload-1", "someone-else", repo, d, 42, NOW) is False
        assert await db.read(q.repo_blob_size, repo, d) is None
        assert await db.write(qu.finish_upload, "upload-1", "a", repo, d, 42, NOW) is True
        done = await db.read(qu.get_upload, "upload-1", repo)
        assert done is not None and done.ended
        assert await db.read(q.repo_blob_size, repo, d) == 42
        # in one statement, for a session no writer holds at the size given
        await db.write(qu.create_upload, "upload-2", repo, NOW)
        assert (await db.write(qu.finish_unclaimed, "upload-2", repo, 5, d, 42, NOW)).outcome is qu.EndOutcome.UNKNOWN
        assert (await db.write(qu.claim_upload, "upload-2", repo, 0, "a", NOW, NOW + 60)).outcome \
            is qu.ClaimOutcome.CLAIMED
        assert (await db.write(qu.finish_unclaimed, "upload-2", repo, 0, d, 42, NOW)).outcome is qu.EndOutcome.UNKNOWN
        ended = await db.write(qu.finish_unclaimed, "upload-2", repo, 0, d, 42, NOW + 61)
        assert ended.outcome is qu.EndOutcome.ENDED and ended.upload is not None
        assert (await db.write(qu.finish_unclaimed, "upload-2", repo, 0, d, 42, NOW + 61)).outcome \
            is qu.EndOutcome.UNKNOWN  # once only
        # a fresh signed id: the tombstone alone records it
        e = digest_of("fresh")
        assert (await db.write(qu.finish_unclaimed, "signed-1", repo, 0, e, 7, NOW, NOW - 5)).outcome \
            is qu.EndOutcome.FRESH
        assert await db.read(q.repo_blob_size, repo, e) == 7
        assert (await db.write(qu.finish_unclaimed, "signed-1", repo, 0, e, 7, NOW, NOW - 5)).outcome \
            is qu.EndOutcome.UNKNOWN

    db.run(body)


def test_failed_write_rolls_back(db: Harness) -> None:
    def create_then_fail(name: str) -> Txn[None]:
        yield from q.create_repository(ACCOUNT, REGION, name, NOW)
        yield Q("INSERT INTO uploads (id, repository_id, created_at) VALUES (?, ?, ?)", ("u", -1, NOW))

    async def body(db: Backend) -> None:
        with pytest.raises(Exception):  # noqa: B017 - each driver raises its own IntegrityError
            await db.write(create_then_fail, "doomed")
        assert await db.read(q.get_repository, ACCOUNT, REGION, "doomed") is None

        def boom(name: str) -> Txn[None]:
            yield from q.create_repository(ACCOUNT, REGION, name, NOW)
            raise RuntimeError("rule says no")

        with pytest.raises(RuntimeError):
            await db.write(boom, "also-doomed")
        assert await db.read(q.get_repository, ACCOUNT, REGION, "also-doomed") is None
        assert await db.read(q.list_repository_names, ACCOUNT, REGION, "", 10) == []

    db.run(body)


# manifests and tags

def test_put_and_get_manifest(db: Harness) -> None:
    config, layer = digest_of("config"), digest_of("layer")
    m = manifest("one", refs=((config, "config"), (layer, "layer")))

    async def body(db: Backend) -> None:
        repo, other = await new_repo(db, "one"), await new_repo(db, "two")
        await db.write(link_many, repo, [config, layer])
        assert (await db.write(q.put_manifest, repo, m, "latest", False, NOW)).outcome is PutOutcome.STORED
        expected = ManifestRow(m.digest, m.media_type, m.body, None)
        assert await db.read(q.manifest_by_digest, repo, m.digest) == expected
        assert await db.read(q.manifest_by_tag, repo, "latest") == expected
        assert await db.read(q.tag_digest, repo, "latest") == m.digest
        got = await db.read(q.manifest_by_digest, repo, m.digest)
        assert got is not None and type(got.body) is bytes
        assert await db.read(q.manifest_by_digest, other, m.digest) is None
        assert await db.read(q.manifest_by_tag, other, "latest") is None
        assert await db.read(q.manifest_by_tag, repo, "missing") is None
        assert await db.read(q.present_manifests, repo, [m.digest, digest_of("nope")]) == {m.digest}
        # a push by digest (no tag), and the same manifest again: both fine
        n = manifest("two")
        assert (await db.write(q.put_manifest, repo, n, None, False, NOW)).outcome is PutOutcome.STORED
        assert (await db.write(q.put_manifest, repo, n, None, True, NOW)).outcome is PutOutcome.STORED
        assert await db.read(q.manifest_by_digest, repo, n.digest) == ManifestRow(n.digest, n.media_type, n.body, None)
        assert await db.read(q.list_tags, repo, "", 10) == ["latest"]

    db.run(body)


def test_present_manifests_in_chunks(db: Harness) -> None:
    ms = [manifest(f"m{i}") for i in range(1001)]

    def put_all(repo_id: int) -> Txn[None]:
        for m in ms[::10]:
            result = yield from q.put_manifest(repo_id, m, None, False, NOW)
            assert result.outcome is PutOutcome.STORED

    async def body(db: Backend) -> None:
        repo = await new_repo(db)
        await db.write(put_all, repo)
        assert await db.read(q.present_manifests, repo, [m.digest for m in ms]) == {m.digest for m in ms[::10]}

    db.run(body)


def test_tag_moves(db: Harness) -> None:
    a, b = manifest("a"), manifest("b")

    async def body(db: Backend) -> None:
        repo = await new_repo(db)
        assert (await db.write(q.put_manifest, repo, a, "latest", False, NOW)).outcome is PutOutcome.STORED
        assert (await db.write(q.put_manifest, repo, b, "latest", False, NOW + 1)).outcome is PutOutcome.STORED
        assert await db.read(q.tag_digest, repo, "latest") == b.digest
        assert (await db.read(q.manifest_by_tag, repo, "latest")).digest == b.digest
        assert (await db.read(q.manifest_by_digest, repo, a.digest)).digest == a.digest  # untagged, still there
        assert await db.read(q.list_tags, repo, "", 10) == ["latest"]
        # the same manifest under several tags
        assert (await db.write(q.put_manifest, repo, b, "v1", False, NOW)).outcome is PutOutcome.STORED
        assert await db.read(q.list_tags, repo, "", 10) == ["latest", "v1"]

    db.run(body)


def test_tag_locked_writes_nothing(db: Harness) -> None:
    child = digest_of("child-layer")
    a = manifest("a")
    b = manifest("b", refs=((child, "layer"),))

    async def body(db: Backend) -> None:
        repo = await new_repo(db)
        await db.write(link_many, repo, [child])
        assert (await db.write(q.put_manifest, repo, a, "v1", True, NOW)).outcome is PutOutcome.STORED  # a new tag
        assert (await db.write(q.put_manifest, repo, a, "v1", True, NOW)).outcome is PutOutcome.STORED  # same digest
        assert (await db.write(q.put_manifest, repo, b, "v1", True, NOW)).outcome is PutOutcome.TAG_LOCKED
        assert await db.read(q.tag_digest, repo, "v1") == a.digest
        assert await db.read(q.manifest_by_digest, repo, b.digest) is None
        assert await db.read(q.present_manifests, repo, [b.digest]) == set()
        assert (await db.write(q.delete_image, repo, b.digest)).outcome is DeleteOutcome.UNKNOWN
        # unlocked, the same write goes through
        assert (await db.write(q.put_manifest, repo, b, "v1", False, NOW)).outcome is PutOutcome.STORED
        assert await db.read(q.tag_digest, repo, "v1") == b.digest

    db.run(body)


def test_delete_manifest(db: Harness) -> None:
    a, b = manifest("a"), manifest("b")

    async def body(db: Backend) -> None:
        repo, other = await new_repo(db, "one"), await new_repo(db, "two")
        await db.write(q.put_manifest, repo, a, "latest", False, NOW)
        await db.write(q.put_manifest, repo, a, "v1", False, NOW)
        await db.write(q.put_manifest, repo, b, "v2", False, NOW)
        await db.write(q.put_manifest, other, a, "latest", False, NOW)
        assert (await db.write(q.delete_image, repo, a.digest)).outcome is DeleteOutcome.DELETED
        assert await db.read(q.manifest_by_digest, repo, a.digest) is None
        assert await db.read(q.manifest_by_tag, repo, "latest") is None
        assert await db.read(q.list_tags, repo, "", 10) == ["v2"]  # its tags went with it, others stay
        assert (await db.write(q.delete_image, repo, a.digest)).outcome is DeleteOutcome.UNKNOWN
        assert (await db.write(q.delete_image, repo, digest_of("never"))).outcome is DeleteOutcome.UNKNOWN
        assert (await db.read(q.manifest_by_tag, other, "latest")).digest == a.digest  # other repository untouched

    db.run(body)


def test_delete_manifest_referenced_by_an_index(db: Harness) -> None:
    amd64, arm64 = manifest("amd64"), manifest("arm64")
    index = manifest("index", refs=((amd64.digest, "manifest"), (arm64.digest, "manifest")), media_type=OCI_INDEX)

    async def body(db: Backend) -> None:
        repo = await new_repo(db)
        for m in (amd64, arm64):
            await db.write(q.put_manifest, repo, m, None, False, NOW)
        await db.write(q.put_manifest, repo, index, "latest", False, NOW)
        assert await db.read(q.manifest_parents, repo, amd64.digest) == [index.digest]
        assert (await db.write(q.delete_image, repo, amd64.digest)).outcome is DeleteOutcome.REFERENCED
        assert (await db.read(q.manifest_by_digest, repo, amd64.digest)).digest == amd64.digest
        assert (await db.write(q.delete_image, repo, index.digest)).outcome is DeleteOutcome.DELETED
        assert await db.read(q.manifest_parents, repo, amd64.digest) == []
        assert (await db.write(q.delete_image, repo, amd64.digest)).outcome is DeleteOutcome.DELETED
        assert (await db.write(q.delete_image, repo, arm64.digest)).outcome is DeleteOutcome.DELETED

    db.run(body)


def test_layers_do_not_make_a_manifest_referenced(db: Harness) -> None:
    base = manifest("base")
    # a manifest whose *layer* happens to have the digest of another manifest is no parent
    odd = manifest("odd", refs=((base.digest, "layer"),))

    async def body(db: Backend) -> None:
        repo = await new_repo(db)
        await db.write(link_many, repo, [base.digest])
        await db.write(q.put_manifest, repo, base, None, False, NOW)
        assert (await db.write(q.put_manifest, repo, odd, None, False, NOW)).outcome is PutOutcome.STORED
        assert await db.read(q.manifest_parents, repo, base.digest) == []
        assert (await db.write(q.delete_image, repo, base.digest)).outcome is DeleteOutcome.DELETED

    db.run(body)


def test_put_manifest_checks_what_it_references(db: Harness) -> None:
    layer = digest_of("layer")
    child = manifest("child")
    image = manifest("image", refs=((layer, "layer"),))
    index = manifest("index", refs=((child.digest, "manifest"),), media_type=OCI_INDEX)

    async def body(db: Backend) -> None:
        repo = await new_repo(db)
        got = await db.write(q.put_manifest, repo, image, "v1", False, NOW)
        assert (got.outcome, got.missing) == (PutOutcome.BLOB_UNKNOWN, layer)
        got = await db.write(q.put_manifest, repo, index, "v1", False, NOW)
        assert (got.outcome, got.missing) == (PutOutcome.CHILD_UNKNOWN, child.digest)
        assert await db.read(q.tag_digest, repo, "v1") is None  # nothing written
        got = await db.write(q.put_manifest, repo + 1000, child, "v1", False, NOW)
        assert got.outcome is PutOutcome.REPOSITORY_UNKNOWN
        await db.write(link_many, repo, [layer])
        assert (await db.write(q.put_manifest, repo, image, "v1", False, NOW)).outcome is PutOutcome.STORED
        assert (await db.write(q.put_manifest, repo, child, "v1", False, NOW)).previous == image.digest
        assert (await db.write(q.put_manifest, repo, index, None, False, NOW)).outcome is PutOutcome.STORED
        # only_new (ECR's PutImage): a push that changes nothing is refused
        assert (await db.write(q.put_manifest, repo, child, "v1", False, NOW, True)).outcome is \
            PutOutcome.ALREADY_EXISTS
        assert (await db.write(q.put_manifest, repo, index, None, False, NOW, True)).outcome is \
            PutOutcome.ALREADY_EXISTS
        assert (await db.write(q.put_manifest, repo, child, "v2", False, NOW, True)).outcome is PutOutcome.STORED

    db.run(body)


def test_remove_tag_with_the_last_tag_rule(db: Harness) -> None:
    a, b = manifest("a"), manifest("b")
    index = manifest("index", refs=((b.digest, "manifest"),), media_type=OCI_INDEX)

    async def body(db: Backend) -> None:
        repo = await new_repo(db)
        for m, tag in ((a, "one"), (a, "two"), (b, "b"), (index, None)):
            await db.write(q.put_manifest, repo, m, tag, False, NOW)
        got = await db.write(q.remove_tag, repo, "one", b.digest, True)
        assert (got.outcome, got.digest) == (DeleteOutcome.MISMATCH, a.digest)
        got = await db.write(q.remove_tag, repo, "one", a.digest, True)
        assert (got.outcome, got.tags) == (DeleteOutcome.UNTAGGED, ("one",))  # "two" remains
        got = await db.write(q.remove_tag, repo, "two", None, True)
        assert (got.outcome, got.digest, got.tags) == (DeleteOutcome.DELETED, a.digest, ("two",))
        assert await db.read(q.manifest_by_digest, repo, a.digest) is None
        got = await db.write(q.remove_tag, repo, "b", None, True)  # the last tag of an index's child
        assert (got.outcome, got.parents) == (DeleteOutcome.REFERENCED, (index.digest,))
        assert await db.read(q.tag_digest, repo, "b") == b.digest  # nothing changed
        assert (await db.write(q.remove_tag, repo, "b")).outcome is DeleteOutcome.UNTAGGED  # the OCI face's
        assert await db.read(q.manifest_by_digest, repo, b.digest) is not None
        assert (await db.write(q.remove_tag, repo, "b", None, True)).outcome is DeleteOutcome.UNKNOWN

    db.run(body)


def test_a_failing_statement_names_its_operation(db: Harness) -> None:
    def broken(repo_id: int) -> Txn[None]:
        yield Q("SELECT no_such_column FROM manifests WHERE repository_id = ?", (repo_id,), "one")

    async def body(db: Backend) -> None:
        with pytest.raises(StatementFailed) as info:
            await db.read(broken, 1)
        assert "test_a_failing_statement_names_its_operation.<locals>.broken" in str(info.value)
        assert "no_such_column" in info.value.sql
        with pytest.raises(StatementFailed):
            await db.write(broken, 1)

    db.run(body)


def test_delete_tag(db: Harness) -> None:
    a = manifest("a")

    async def body(db: Backend) -> None:
        repo = await new_repo(db)
        await db.write(q.put_manifest, repo, a, "latest", False, NOW)
        await db.write(q.put_manifest, repo, a, "v1", False, NOW)
        assert (await db.write(q.remove_tag, repo, "latest")).outcome is DeleteOutcome.UNTAGGED
        assert (await db.write(q.remove_tag, repo, "latest")).outcome is DeleteOutcome.UNKNOWN
        assert await db.read(q.manifest_by_tag, repo, "latest") is None
        assert await db.read(q.list_tags, repo, "", 10) == ["v1"]
        assert (await db.read(q.manifest_by_digest, repo, a.digest)).digest == a.digest  # manifest kept

    db.run(body)


def test_list_tags_pagination_and_order(db: Harness) -> None:
    tags = ["v1", "v10", "v2", "latest", "Latest", "_private", "1.0", "1.0-rc1", "a-b", "a.b", "a_b", "Z",
            "x" * 128]
    m = manifest("tagged")

    def tag_all(repo_id: int) -> Txn[None]:
        for t in tags:
            yield from q.put_manifest(repo_id, m, t, False, NOW)

    async def body(db: Backend) -> None:
        repo, other = await new_repo(db, "one"), await new_repo(db, "two")
        await db.write(tag_all, repo)
        await db.write(q.put_manifest, other, m, "other-repo-tag", False, NOW)
        expected = sorted(tags)  # code-point order, as both backends sort
        assert await db.read(q.list_tags, repo, "", 1000) == expected
        pages, after = [], ""
        while page := await db.read(q.list_tags, repo, after, 4):
            pages.append(page)
            after = page[-1]
        assert [len(p) for p in pages] == [4, 4, 4, 1]
        assert [t for p in pages for t in p] == expected
        assert await db.read(q.list_tags, repo, "v10", 10) == [t for t in expected if t > "v10"]
        assert await db.read(q.list_tags, repo, "a-b", 2) == ["a.b", "a_b"]
        assert await db.read(q.list_tags, repo, "", 0) == []
        assert await db.read(q.list_tags, other, "", 10) == ["other-repo-tag"]

    db.run(body)


def test_referrers(db: Harness) -> None:
    subject = manifest("subject")
    sig = manifest("signature", subject=subject.digest, artifact_type="application/vnd.dev.cosign.artifact.sig.v1+json",
                   annotations={"org.opencontainers.image.created": "2024-01-01T00:00:00Z"})
    sbom = manifest("sbom", subject=subject.digest, artifact_type="application/spdx+json")
    index_ref = manifest("index-ref", subject=subject.digest, media_type=OCI_INDEX)
    unrelated = manifest("unrelated", subject=digest_of("someone else"))

    async def body(db: Backend) -> None:
        repo, other = await new_repo(db, "one"), await new_repo(db, "two")
        await db.write(q.put_manifest, repo, subject, "latest", False, NOW)
        for m in (sig, sbom, index_ref, unrelated):
            await db.write(q.put_manifest, repo, m, None, False, NOW)
        await db.write(q.put_manifest, other, sbom, None, False, NOW)
        got = await db.read(q.referrers, repo, subject.digest)
        expected = sorted([Referrer(m.digest, m.media_type, m.artifact_type, m.annotations, len(m.body))
                           for m in (sig, sbom, index_ref)], key=lambda r: r.digest)
        assert got == expected
        assert (await db.read(q.manifest_by_digest, repo, sig.digest)).subject_digest == subject.digest
        assert await db.read(q.referrers, repo, digest_of("nobody")) == []
        assert [r.digest for r in await db.read(q.referrers, other, subject.digest)] == [sbom.digest]
        await db.write(q.delete_image, repo, sbom.digest)
        assert [r.digest for r in await db.read(q.referrers, repo, subject.digest)] == sorted([sig.digest,
                                                                                          index_ref.digest])

    db.run(body)


# change detection

def test_version_changes_after_a_write(db: Harness) -> None:
    async def body(db: Backend) -> None:
        v0 = db.version()
        assert isinstance(v0, int)  # PostgreSQL: the changes heard by LISTEN (and made here)
        await db.read(q.list_repository_names, ACCOUNT, REGION, "", 10)
        assert db.version() == v0  # reads change nothing
        await new_repo(db, "first")
        v1 = db.version()
        assert v1 != v0  # this process's own write: at once
        await new_repo(db, "second")
        assert db.version() != v1

    db.run(body)


async def _changes_seen(other: Backend, before: int | None, timeout: float = 10.0) -> bool:
    """Whether `other`'s version moves off `before` (another process hears of a commit: SQLite at once,
    PostgreSQL when the NOTIFY arrives, i.e. the loop has run its listener's callback)."""
    deadline = asyncio.get_running_loop().time() + timeout
    while asyncio.get_running_loop().time() < deadline:
        if other.version() != before:
            return True
        await asyncio.sleep(0.001)
    return False


def test_version_tells_another_process_of_a_commit(db: Harness) -> None:
    """Two backends on one database, as two nodes: a commit through one changes the other's version by the time
    the other's sync() returns; a read or a write that changed no row does not (no cache dropped for nothing)."""
    async def body(a: Backend) -> None:
        b = await db.open()
        try:
            for i in range(50):
                before = b.version()
                assert before is not None
                await new_repo(a, f"repo{i}")
                await b.sync()  # no waiting: once sync returns, B has heard of every commit made before it
                assert b.version() != before, f"round {i}: B had not heard of A's acknowledged commit"
            await asyncio.sleep(0.2)  # every notification delivered
            before = b.version()
            await a.read(q.list_repository_names, ACCOUNT, REGION, "", 10)
            await a.write(q.create_repository, ACCOUNT, REGION, "repo0", NOW)  # exists: ON CONFLICT, no row
            assert not await _changes_seen(b, before, timeout=0.5)
        finally:
            await b.close()

    db.run(body)


def test_sqlite_version_sees_other_connections(tmp_path: Path, sqlite_template: Path) -> None:
    """Another process (another backend on the same file) committing changes our version()."""
    path = tmp_path / "berth.db"
    shutil.copyfile(sqlite_template, path)

    async def body() -> None:
        mine, theirs = SqliteBackend(path), SqliteBackend(path)

        async def check() -> int | None:
            return mine.version()

        async def version() -> int | None:  # a request of its own: version() is checked once per task
            return await asyncio.create_task(check())

        try:
            v0 = await version()
            await theirs.write(q.create_repository, ACCOUNT, REGION, "from-elsewhere", NOW)
            assert await version() != v0
            assert (await mine.read(q.get_repository, ACCOUNT, REGION, "from-elsewhere")) is not None
        finally:
            await mine.close()
            await theirs.close()

    asyncio.run(body())
