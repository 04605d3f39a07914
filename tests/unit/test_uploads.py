"""Uploads against a real SqliteBackend and FilesystemBlobStore: sessions, chunks, completion, purge."""

from __future__ import annotations

import asyncio
import hashlib
import os
import shutil
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest

from berth.db import iam as qi
from berth.db import registry as q
from berth.db import uploads as qu
from berth.db.migrate import sqlalchemy_url, upgrade
from berth.db.sqlite import SqliteBackend
from berth.db.store import Q, Txn
from berth.registry.errors import BlobUploadUnknown, DigestInvalid, SizeInvalid, UploadOutOfOrder
from berth.registry.uploads import UploadIds, Uploads
from berth.storage.filesystem import FilesystemBlobStore

ACCOUNT, REGION = "123456789012", "us-east-1"
T0 = 1_700_000_000.0


@pytest.fixture(scope="module")
def migrated(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A migrated database holding a token signing key, as every server has one after start-up."""
    path = tmp_path_factory.mktemp("template") / "berth.db"
    upgrade(sqlalchemy_url("", path))

    async def add_key() -> None:
        db = SqliteBackend(path)
        await db.write(qi.add_signing_key, "k1", os.urandom(32).hex(), T0)
        await db.close()

    asyncio.run(add_key())
    return path


class Clock:
    def __init__(self, now: float) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


class Env:
    """A data directory (database + blob store); `node()` opens one registry process on it."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.db_path = root / "berth.db"
        self.blobs = FilesystemBlobStore(root)
        self.clock = Clock(time.time())
        self.repo_id = 0
        self._open: list[tuple[SqliteBackend, Uploads]] = []

    async def repo(self) -> int:
        """The repository a monolithic put lands in, asked for once its bytes verified."""
        return self.repo_id

    def node(self) -> Uploads:
        db = SqliteBackend(self.db_path)
        uploads = Uploads(db, FilesystemBlobStore(self.root), clock=self.clock, max_age_hours=24)
        self._open.append((db, uploads))
        return uploads

    async def close(self) -> None:
        for db, uploads in self._open:
            uploads.close()
            await db.close()

    def blob(self, digest: str) -> bytes:
        size = self.blobs.stat(digest)
        assert size is not None, f"{digest} not stored"
        reader = self.blobs.open(digest)
        try:
            return reader.read(size + 1)
        finally:
            reader.close()

    def digests(self) -> list[str]:
        return [b.digest for b in self.blobs.walk()]

    def stored(self, upload_id: str) -> bytes:
        """The bytes the filesystem driver holds for an upload in progress."""
        return (self.root / "uploads" / upload_id).read_bytes()

    def leftovers(self) -> list[str]:
        return sorted(p.name for p in (self.root / "uploads").iterdir())

    async def ended(self, u: Uploads, upload_id: str) -> bool:
        """No session in progress under the id: its row is a tombstone, or gone."""
        row = await u.db.read(qu.get_upload, upload_id, self.repo_id)
        return row is None or row.ended


@pytest.fixture
def env(tmp_path: Path, migrated: Path) -> Env:
    shutil.copyfile(migrated, tmp_path / "berth.db")
    return Env(tmp_path)


def run(env: Env, body: Callable[[Uploads], Awaitable[Any]]) -> Any:
    async def main() -> Any:
        try:
            uploads = env.node()
            repo, _ = await uploads.db.write(q.create_repository, ACCOUNT, REGION, "team/app", T0)
            env.repo_id = repo.id
            return await body(uploads)
        finally:
            await env.close()

    return asyncio.run(main())


async def stream(*parts: bytes) -> AsyncIterator[bytes]:
    for p in parts:
        yield p


async def broken_stream(*parts: bytes) -> AsyncIterator[bytes]:
    for p in parts:
        yield p
    raise ConnectionResetError("client went away")


def sha256(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def sha512(data: bytes) -> str:
    return "sha512:" + hashlib.sha512(data).hexdigest()


# the happy paths

def test_chunked_upload(env: Env) -> None:
    parts = [os.urandom(1000), os.urandom(70_000), os.urandom(5)]
    data = b"".join(parts)

    async def body(u: Uploads) -> None:
        repo = env.repo_id
        uid = await u.start(repo)
        assert await u.status(repo, uid) == 0
        assert await u.db.read(qu.get_upload, uid, repo) is None  # a POST writes nothing
        assert env.leftovers() == []
        assert await u.append(repo, uid, stream(parts[0]), (0, 999), 1000) == 1000
        assert await u.append(repo, uid, stream(parts[1][:30_000], parts[1][30_000:]), None, None) == 71_000
        assert await u.status(repo, uid) == 71_000
        assert await u.append(repo, uid, stream(parts[2]), (71_000, 71_004), None) == len(data)
        assert await u.complete(repo, uid, sha256(data), None, None) == len(data)
        assert env.blob(sha256(data)) == data
        assert await u.db.read(q.repo_blob_size, repo, sha256(data)) == len(data)
        assert await env.ended(u, uid)
        with pytest.raises(BlobUploadUnknown):
            await u.status(repo, uid)

    run(env, body)
    assert env.leftovers() == []


def test_complete_with_a_final_chunk(env: Env) -> None:
    async def body(u: Uploads) -> None:
        uid = await u.start(env.repo_id)
        await u.append(env.repo_id, uid, stream(b"hello "), None, 6)
        assert await u.complete(env.repo_id, uid, sha256(b"hello world"), stream(b"wor", b"ld"), 5) == 11
        assert env.blob(sha256(b"hello world")) == b"hello world"

    run(env, body)
    assert env.leftovers() == []


def test_empty_blob(env: Env) -> None:
    async def body(u: Uploads) -> None:
        uid = await u.start(env.repo_id)
        assert await u.complete(env.repo_id, uid, sha256(b""), None, 0) == 0
        assert env.blob(sha256(b"")) == b""

    run(env, body)


def test_monolithic_put(env: Env) -> None:
    data = os.urandom(2 * 1024 * 1024 + 3)

    async def body(u: Uploads) -> None:
        chunks = [data[i:i + 65536] for i in range(0, len(data), 65536)]
        assert await u.put(env.repo, sha256(data), stream(*chunks), len(data)) == len(data)
        assert env.blob(sha256(data)) == data
        assert await u.db.read(q.repo_blob_size, env.repo_id, sha256(data)) == len(data)
        assert await u.db.read(qu.upload_ids) == set()

    run(env, body)
    assert env.leftovers() == []


def test_same_blob_twice(env: Env) -> None:
    async def body(u: Uploads) -> None:
        await u.put(env.repo, sha256(b"dup"), stream(b"dup"), 3)
        uid = await u.start(env.repo_id)
        await u.complete(env.repo_id, uid, sha256(b"dup"), stream(b"dup"), 3)
        assert env.blob(sha256(b"dup")) == b"dup"
        assert env.digests() == [sha256(b"dup")]

    run(env, body)
    assert env.leftovers() == []


def test_sha512_digest(env: Env) -> None:
    data = os.urandom(300_000)

    async def body(u: Uploads) -> None:
        uid = await u.start(env.repo_id)
        await u.append(env.repo_id, uid, stream(data[:100_000]), None, None)
        await u.complete(env.repo_id, uid, sha512(data), stream(data[100_000:]), None)
        assert env.blob(sha512(data)) == data
        assert env.blobs.stat(sha256(data)) is None
        assert await u.db.read(q.repo_blob_size, env.repo_id, sha512(data)) == len(data)
        await u.put(env.repo, sha512(b"mono"), stream(b"mono"), None)
        assert env.blob(sha512(b"mono")) == b"mono"
        uid = await u.start(env.repo_id)
        with pytest.raises(DigestInvalid):
            await u.complete(env.repo_id, uid, sha512(b"other"), stream(b"mono"), None)

    run(env, body)
    assert env.leftovers() == []


# order and sizes

def test_out_of_order_chunks_are_refused(env: Env) -> None:
    async def body(u: Uploads) -> None:
        repo = env.repo_id
        uid = await u.start(repo)
        await u.append(repo, uid, stream(b"0123456789"), (0, 9), 10)
        for bad in [(0, 9), (5, 14), (11, 20), (20, 29)]:  # not continuing at 10
            with pytest.raises(UploadOutOfOrder) as info:
                await u.append(repo, uid, stream(b"x" * (bad[1] - bad[0] + 1)), bad, None)
            assert info.value.extra == {"size": 10}
        with pytest.raises(UploadOutOfOrder):
            await u.append(repo, uid, stream(b""), (10, 9), None)  # end before start
        with pytest.raises(SizeInvalid):
            await u.append(repo, uid, stream(b"abc"), (10, 12), 4)  # Content-Range and -Length disagree
        assert await u.status(repo, uid) == 10
        assert env.stored(uid) == b"0123456789"
        await u.append(repo, uid, stream(b"abc"), (10, 12), 3)
        await u.complete(repo, uid, sha256(b"0123456789abc"), None, None)
        assert env.blob(sha256(b"0123456789abc")) == b"0123456789abc"

    run(env, body)


def test_content_range_sets_the_expected_length(env: Env) -> None:
    async def body(u: Uploads) -> None:
        uid = await u.start(env.repo_id)
        with pytest.raises(SizeInvalid):
            await u.append(env.repo_id, uid, stream(b"ab"), (0, 3), None)  # promised 4, sent 2
        assert await u.status(env.repo_id, uid) == 0

    run(env, body)


@pytest.mark.parametrize("sent, declared", [(b"12345", 10), (b"1234567890", 5), (b"", 1)])
def test_content_length_mismatch_rolls_back(env: Env, sent: bytes, declared: int) -> None:
    async def body(u: Uploads) -> None:
        repo = env.repo_id
        uid = await u.start(repo)
        await u.append(repo, uid, stream(b"first;"), None, 6)
        with pytest.raises(SizeInvalid):
            await u.append(repo, uid, stream(sent), None, declared)
        assert await u.status(repo, uid) == 6
        assert env.stored(uid) == b"first;"
        # the running hash was rolled back too: the right digest still completes
        await u.append(repo, uid, stream(b"second"), (6, 11), 6)
        await u.complete(repo, uid, sha256(b"first;second"), None, None)
        assert env.blob(sha256(b"first;second")) == b"first;second"

    run(env, body)


def test_content_length_mismatch_on_complete_keeps_the_session(env: Env) -> None:
    async def body(u: Uploads) -> None:
        uid = await u.start(env.repo_id)
        await u.append(env.repo_id, uid, stream(b"abc"), None, None)
        with pytest.raises(SizeInvalid):
            await u.complete(env.repo_id, uid, sha256(b"abcdef"), stream(b"def"), 10)
        assert await u.status(env.repo_id, uid) == 3
        await u.complete(env.repo_id, uid, sha256(b"abcdef"), stream(b"def"), 3)
        assert env.blob(sha256(b"abcdef")) == b"abcdef"

    run(env, body)


def test_client_disconnect_mid_chunk_rolls_back(env: Env) -> None:
    async def body(u: Uploads) -> None:
        uid = await u.start(env.repo_id)
        await u.append(env.repo_id, uid, stream(b"kept-"), None, None)
        with pytest.raises(ConnectionResetError):
            await u.append(env.repo_id, uid, broken_stream(b"lost", b"also lost"), None, None)
        assert await u.status(env.repo_id, uid) == 5
        assert env.stored(uid) == b"kept-"
        await u.complete(env.repo_id, uid, sha256(b"kept-end"), stream(b"end"), None)
        assert env.blob(sha256(b"kept-end")) == b"kept-end"

    run(env, body)


def test_monolithic_put_failures_leave_nothing(env: Env) -> None:
    async def body(u: Uploads) -> None:
        with pytest.raises(DigestInvalid):
            await u.put(env.repo, sha256(b"expected"), stream(b"actual"), None)
        with pytest.raises(SizeInvalid):
            await u.put(env.repo, sha256(b"short"), stream(b"short"), 100)
        with pytest.raises(ConnectionResetError):
            await u.put(env.repo, sha256(b"xy"), broken_stream(b"x"), None)
        with pytest.raises(DigestInvalid):
            await u.put(env.repo, "sha256:not-a-digest", stream(b"x"), None)
        assert env.digests() == []
        assert await u.db.read(q.linked_blobs, env.repo_id, [sha256(b"actual"), sha256(b"short")]) == set()

    run(env, body)
    assert env.leftovers() == []


# digests

def test_complete_with_wrong_digest_deletes_the_session(env: Env) -> None:
    async def body(u: Uploads) -> None:
        uid = await u.start(env.repo_id)
        await u.append(env.repo_id, uid, stream(b"some bytes"), None, None)
        with pytest.raises(DigestInvalid) as info:
            await u.complete(env.repo_id, uid, sha256(b"other bytes"), None, None)
        assert info.value.detail == {"digest": sha256(b"other bytes")}
        with pytest.raises(BlobUploadUnknown):
            await u.status(env.repo_id, uid)
        assert await env.ended(u, uid)
        assert env.blobs.stat(sha256(b"other bytes")) is None
        assert env.blobs.stat(sha256(b"some bytes")) is None

    run(env, body)
    assert env.leftovers() == []


def test_complete_with_malformed_digest_keeps_the_session(env: Env) -> None:
    async def body(u: Uploads) -> None:
        uid = await u.start(env.repo_id)
        await u.append(env.repo_id, uid, stream(b"bytes"), None, None)
        for bad in ["sha256:abc", "md5:" + "a" * 32, "latest"]:
            with pytest.raises(DigestInvalid):
                await u.complete(env.repo_id, uid, bad, None, None)
        assert await u.status(env.repo_id, uid) == 5

    run(env, body)


# any node can continue any upload

def test_hash_state_recomputed_after_a_restart(env: Env) -> None:
    first, second = os.urandom(1_500_000), os.urandom(1000)

    async def body(u: Uploads) -> None:
        uid = await u.start(env.repo_id)
        await u.append(env.repo_id, uid, stream(first), None, None)
        restarted = env.node()  # a new process: same database and storage, no hash state in memory
        assert await restarted.status(env.repo_id, uid) == len(first)
        await restarted.append(env.repo_id, uid, stream(second), (len(first), len(first) + 999), 1000)
        await restarted.complete(env.repo_id, uid, sha256(first + second), None, None)
        assert env.blob(sha256(first + second)) == first + second

    run(env, body)
    assert env.leftovers() == []


def test_stale_hash_state_is_recomputed(env: Env) -> None:
    """Node A holds a running hash; node B appends meanwhile; A must not trust its stale state."""

    async def body(a: Uploads) -> None:
        uid = await a.start(env.repo_id)
        await a.append(env.repo_id, uid, stream(b"from-a;"), None, None)
        b = env.node()
        await b.append(env.repo_id, uid, stream(b"from-b;"), None, None)
        await a.append(env.repo_id, uid, stream(b"a-again"), None, None)
        await a.complete(env.repo_id, uid, sha256(b"from-a;from-b;a-again"), None, None)
        assert env.blob(sha256(b"from-a;from-b;a-again")) == b"from-a;from-b;a-again"

    run(env, body)


def test_complete_on_another_node(env: Env) -> None:
    async def body(a: Uploads) -> None:
        uid = await a.start(env.repo_id)
        await a.append(env.repo_id, uid, stream(b"started here"), None, None)
        b = env.node()
        await b.complete(env.repo_id, uid, sha256(b"started here, finished there"), stream(b", finished there"), None)
        assert env.blob(sha256(b"started here, finished there")) == b"started here, finished there"
        with pytest.raises(BlobUploadUnknown):
            await a.status(env.repo_id, uid)

    run(env, body)


# sessions

def test_sessions_belong_to_their_repository(env: Env) -> None:
    async def body(u: Uploads) -> None:
        other, _ = await u.db.write(q.create_repository, ACCOUNT, REGION, "other", T0)
        uid = await u.start(env.repo_id)
        with pytest.raises(BlobUploadUnknown) as info:
            await u.status(other.id, uid)
        assert info.value.detail == {"uuid": uid}
        with pytest.raises(BlobUploadUnknown):
            await u.append(other.id, uid, stream(b"x"), None, None)
        with pytest.raises(BlobUploadUnknown):
            await u.complete(other.id, uid, sha256(b""), None, None)
        with pytest.raises(BlobUploadUnknown):
            await u.cancel(other.id, uid)
        with pytest.raises(BlobUploadUnknown):
            await u.status(env.repo_id, "no-such-upload-id")
        assert await u.status(env.repo_id, uid) == 0

    run(env, body)


def test_session_whose_stored_bytes_are_gone_is_unknown(env: Env) -> None:
    """A row whose bytes did not survive (deleted, or not yet written back at a crash): the client
    is told the upload is unknown and starts again; nothing is rebuilt from a short file."""
    async def body(u: Uploads) -> None:
        uid = await u.start(env.repo_id)
        await u.append(env.repo_id, uid, stream(b"acknowledged"), None, None)
        (env.root / "uploads" / uid).unlink()
        with pytest.raises(BlobUploadUnknown):
            await u.append(env.repo_id, uid, stream(b"more"), (12, 15), 4)
        (env.root / "uploads" / uid).write_bytes(b"ack")  # shorter than acknowledged
        with pytest.raises(BlobUploadUnknown):
            await u.complete(env.repo_id, uid, sha256(b"acknowledged"), None, None)
        assert await u.status(env.repo_id, uid) == 12  # the claim was released: a cancel still works
        await u.cancel(env.repo_id, uid)

    run(env, body)
    assert env.leftovers() == []


def test_cancel(env: Env) -> None:
    async def body(u: Uploads) -> None:
        uid = await u.start(env.repo_id)
        await u.append(env.repo_id, uid, stream(b"partial"), None, None)
        await u.cancel(env.repo_id, uid)
        with pytest.raises(BlobUploadUnknown):
            await u.status(env.repo_id, uid)
        with pytest.raises(BlobUploadUnknown):
            await u.cancel(env.repo_id, uid)
        assert await u.db.read(qu.upload_ids) == set()

    run(env, body)
    assert env.leftovers() == []


def test_concurrent_appends_to_one_session_are_serialised(env: Env) -> None:
    async def body(u: Uploads) -> None:
        uid = await u.start(env.repo_id)
        results = await asyncio.gather(*(u.append(env.repo_id, uid, stream(b"x" * 1000), (0, 999), 1000)
                                         for _ in range(4)), return_exceptions=True)
        assert sorted(type(r).__name__ for r in results) == ["UploadOutOfOrder"] * 3 + ["int"]
        assert await u.status(env.repo_id, uid) == 1000

    run(env, body)


def test_a_dead_writers_claim_expires(env: Env) -> None:
    """A writer killed mid-request holds its claim until it expires; then the upload goes on."""
    async def body(u: Uploads) -> None:
        uid = await u.start(env.repo_id)
        await u.append(env.repo_id, uid, stream(b"kept;"), (0, 4), 5)
        now = env.clock.now
        claim = await u.db.write(qu.claim_upload, uid, env.repo_id, 5, "dead-writer", now, now + u.claim_seconds)
        assert claim.outcome is qu.ClaimOutcome.CLAIMED
        (env.root / "uploads" / uid).open("ab").write(b"half-written by the dead writer")
        with pytest.raises(UploadOutOfOrder) as info:
            await u.append(env.repo_id, uid, stream(b"next"), (5, 8), 4)
        assert info.value.extra == {"size": 5}
        assert await u.status(env.repo_id, uid) == 5
        env.clock.now = now + u.claim_seconds + 1
        assert await u.append(env.repo_id, uid, stream(b"next"), (5, 8), 4) == 9
        await u.complete(env.repo_id, uid, sha256(b"kept;next"), None, None)
        assert env.blob(sha256(b"kept;next")) == b"kept;next"

    run(env, body)
    assert env.leftovers() == []


# purge

def test_purge_of_stale_sessions_and_orphans(env: Env) -> None:
    now = time.time()

    async def body(u: Uploads) -> None:
        env.clock.now = now - 25 * 3600
        stale = await u.start(env.repo_id)
        await u.append(env.repo_id, stale, stream(b"old"), None, None)
        env.clock.now = now - 3600
        fresh = await u.start(env.repo_id)
        (env.root / "uploads" / "orphan-from-a-crash").write_bytes(b"x")
        os.utime(env.root / "uploads" / "orphan-from-a-crash", (now - 7200, now - 7200))
        (env.root / "uploads" / "old-layout-session").mkdir()  # uploads/<id>/data before migration 0004
        (env.root / "uploads" / "old-layout-session" / "data").write_bytes(b"x")
        os.utime(env.root / "uploads" / "old-layout-session", (now - 7200, now - 7200))
        (env.root / "uploads" / ".put-in-flight").write_bytes(b"x")  # no row, but young: maybe still running
        env.clock.now = now

        assert await u.purge() == 3
        with pytest.raises(BlobUploadUnknown):
            await u.status(env.repo_id, stale)
        assert await u.status(env.repo_id, fresh) == 0
        assert await u.db.read(qu.upload_ids) == set()  # the fresh session has written nothing yet
        assert env.leftovers() == [".put-in-flight"]
        assert await u.purge() == 0

        env.clock.now = now + 24 * 3600
        assert await u.purge() == 1  # the in-flight file is an orphan now
        with pytest.raises(BlobUploadUnknown):
            await u.status(env.repo_id, fresh)  # and the fresh session's id has expired
        assert env.leftovers() == []
        assert await u.db.read(qu.upload_ids) == set()

    run(env, body)
    assert env.leftovers() == []


# ids

def test_signed_ids_belong_to_one_repository_and_expire(env: Env) -> None:
    async def body(u: Uploads) -> None:
        other, _ = await u.db.write(q.create_repository, ACCOUNT, REGION, "other", T0)
        uid = await u.start(env.repo_id)
        assert len(uid) == 48 and await u.status(env.repo_id, uid) == 0
        with pytest.raises(BlobUploadUnknown):
            await u.status(other.id, uid)
        with pytest.raises(BlobUploadUnknown):
            await u.complete(other.id, uid, sha256(b"x"), stream(b"x"), 1)
        flipped = uid[:10] + ("A" if uid[10] != "A" else "B") + uid[11:]
        for forged in [flipped, uid[:-1], uid + "A", uid.replace(uid[5], "+")]:
            with pytest.raises(BlobUploadUnknown):
                await u.status(env.repo_id, forged)
            with pytest.raises(BlobUploadUnknown):
                await u.append(env.repo_id, forged, stream(b"x"), (0, 0), 1)
        env.clock.now += 25 * 3600  # older than the maximum upload age
        with pytest.raises(BlobUploadUnknown):
            await u.status(env.repo_id, uid)
        assert await u.db.read(qu.upload_ids) == set()

    run(env, body)
    assert env.leftovers() == []


def test_an_ended_signed_id_stays_ended(env: Env) -> None:
    async def body(u: Uploads) -> None:
        done = await u.start(env.repo_id)
        await u.complete(env.repo_id, done, sha256(b"whole"), stream(b"whole"), 5)
        cancelled = await u.start(env.repo_id)
        await u.cancel(env.repo_id, cancelled)
        for uid in (done, cancelled):
            with pytest.raises(BlobUploadUnknown):
                await u.status(env.repo_id, uid)
            with pytest.raises(BlobUploadUnknown):
                await u.append(env.repo_id, uid, stream(b"x"), None, None)
            with pytest.raises(BlobUploadUnknown):
                await u.complete(env.repo_id, uid, sha256(b"whole"), stream(b"whole"), 5)
            with pytest.raises(BlobUploadUnknown):
                await u.cancel(env.repo_id, uid)
        assert await u.db.read(qu.upload_ids) == set()
        env.clock.now += 25 * 3600
        assert await u.purge() == 0  # tombstones go quietly once their ids have expired
        assert await u.db.read(qu.get_upload, done, env.repo_id) is None

    run(env, body)
    assert env.leftovers() == []


def _drop_signing_keys() -> Txn[None]:
    yield Q("DELETE FROM signing_keys")


@pytest.mark.parametrize("ids", [UploadIds.UUID, None])
def test_ids_with_a_row_from_the_start(env: Env, ids: UploadIds | None) -> None:
    """ECR's UUIDs, and any id when no signing key exists: a row at start, the same life after."""
    async def body(u: Uploads) -> None:
        if ids is None:
            await u.db.write(_drop_signing_keys)
            u._keys = None
        uid = await u.start(env.repo_id, ids or UploadIds.SIGNED)
        assert await u.db.read(qu.get_upload, uid, env.repo_id) is not None
        if ids is UploadIds.UUID:
            assert len(uid) == 36 and uid.count("-") == 4
        assert await u.status(env.repo_id, uid) == 0
        await u.append(env.repo_id, uid, stream(b"part;"), (0, 4), 5)
        await u.complete(env.repo_id, uid, sha256(b"part;end"), stream(b"end"), 3)
        assert env.blob(sha256(b"part;end")) == b"part;end"
        with pytest.raises(BlobUploadUnknown):
            await u.status(env.repo_id, uid)
        empty = await u.start(env.repo_id, ids or UploadIds.SIGNED)
        await u.complete(env.repo_id, empty, sha256(b"all at once"), stream(b"all at once"), None)
        with pytest.raises(BlobUploadUnknown):
            await u.cancel(env.repo_id, empty)

    run(env, body)
    assert env.leftovers() == []
