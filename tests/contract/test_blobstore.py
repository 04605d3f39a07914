"""The BlobStore contract: every storage driver passes this one suite and leaves nothing behind.

To add a driver, write a factory returning a `DriverUnderTest` and add one `pytest.param` to
`DRIVERS`. After every test the fixture checks that the driver holds no temporary object and no
upload in progress (each test finishes or cancels what it starts), then calls `cleanup`.
"""

from __future__ import annotations

import hashlib
import os
import threading
import time
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from berth.storage import BlobStore, UploadWriter
from berth.storage.filesystem import FilesystemBlobStore


@dataclass
class DriverUnderTest:
    store: BlobStore
    leftovers: Callable[[], list[str]]  # temporary objects and uploads in progress still stored
    second: Callable[[], BlobStore]  # another instance on the same storage: another process or node
    cleanup: Callable[[], None] = lambda: None


def _filesystem(tmp_path: Path) -> DriverUnderTest:
    root = tmp_path / "storage"
    store = FilesystemBlobStore(root)

    def leftovers() -> list[str]:
        return sorted(str(p.relative_to(root)) for p in (root / "uploads").rglob("*"))

    return DriverUnderTest(store, leftovers, lambda: FilesystemBlobStore(root))


def _s3(tmp_path: Path) -> DriverUnderTest:
    """The S3 driver on the session's radosgw: one shared bucket, a prefix of its own per test."""
    from berth.storage.s3 import S3BlobStore
    from tests.support.ceph import shared_cluster

    ceph = shared_cluster()
    bucket, prefix = ceph.shared_bucket(), f"contract/{tmp_path.name}"

    def make() -> S3BlobStore:
        return S3BlobStore(bucket, prefix, endpoint=ceph.endpoint, region=ceph.region, addressing="path",
                           access_key=ceph.access_key, secret_key=ceph.secret_key)

    store, s3 = make(), ceph.client()

    def keys() -> list[str]:
        return [o["Key"] for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix + "/")
                for o in page.get("Contents", [])]

    def multipart() -> list[dict]:  # on the whole bucket: a driver must not leave one anywhere
        return s3.list_multipart_uploads(Bucket=bucket).get("Uploads", [])

    def leftovers() -> list[str]:
        """Every object outside blobs/ (upload segments, temporaries) and every incomplete multipart upload."""
        return sorted([k for k in keys() if not k.startswith(f"{prefix}/blobs/")]
                      + [f"incomplete multipart upload {u['Key']}" for u in multipart()])

    def cleanup() -> None:
        for i in range(0, len(ks := keys()), 1000):
            s3.delete_objects(Bucket=bucket, Delete={"Objects": [{"Key": k} for k in ks[i:i + 1000]]})
        for u in multipart():
            s3.abort_multipart_upload(Bucket=bucket, Key=u["Key"], UploadId=u["UploadId"])
        store.close()

    return DriverUnderTest(store, leftovers, make, cleanup)


DRIVERS = [
    pytest.param(_filesystem, id="filesystem"),
    pytest.param(_s3, id="s3"),
]


@pytest.fixture(params=DRIVERS)
def under_test(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[DriverUnderTest]:
    dut: DriverUnderTest = request.param(tmp_path)
    try:
        yield dut
        assert dut.leftovers() == [], "the driver left temporary objects or uploads behind"
    finally:
        dut.cleanup()


@pytest.fixture
def driver(under_test: DriverUnderTest) -> BlobStore:
    return under_test.store


def sha256(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def sha512(data: bytes) -> str:
    return "sha512:" + hashlib.sha512(data).hexdigest()


_counter = iter(range(1_000_000))


def new_id() -> str:
    return f"upload-{os.getpid()}-{next(_counter):06d}"


MiB = 1 << 20


def put(driver: BlobStore, data: bytes, digest: str | None = None) -> str:
    """Store `data` as a monolithic upload, as the registry does for POST ?digest= ."""
    digest = digest or sha256(data)
    w = driver.create(digest)
    write_all(w, data)
    w.commit(digest)
    return digest


def write_all(w: UploadWriter, data: bytes, piece: int = 65536) -> None:
    for i in range(0, len(data), piece):
        w.write(data[i:i + piece])


class Upload:
    """An upload driven as the registry drives one: each request resumes at the committed size
    with the state the last accepted request returned."""

    def __init__(self, driver: BlobStore, upload_id: str | None = None) -> None:
        self.id = upload_id or new_id()
        self.state = driver.begin(self.id)
        self.size = 0
        self.driver = driver

    def send(self, *chunks: bytes, driver: BlobStore | None = None) -> None:
        w = (driver or self.driver).resume(self.id, self.state, self.size)
        assert w.size == self.size
        for c in chunks:
            w.write(c)
        self.state = w.suspend()
        self.size = w.size

    def commit(self, digest: str, *chunks: bytes, driver: BlobStore | None = None) -> None:
        w = (driver or self.driver).resume(self.id, self.state, self.size)
        for c in chunks:
            w.write(c)
        w.commit(digest)

    def cancel(self) -> None:
        self.driver.cancel(self.id, self.state)


def read_all(driver: BlobStore, digest: str, start: int = 0, end: int | None = None, n: int = MiB) -> bytes:
    r = driver.open(digest, start, end)
    try:
        out = []
        while data := r.read(n):
            out.append(data)
        return b"".join(out)
    finally:
        r.close()


def digests(driver: BlobStore) -> list[str]:
    return [b.digest for b in driver.walk(limit=10_000)]


# finished blobs: stat, ranged reads, delete

def test_stat_absent_blob_is_none(driver: BlobStore) -> None:
    assert driver.stat(sha256(b"never stored")) is None
    assert driver.stat(sha512(b"never stored")) is None


def test_open_absent_blob_raises(driver: BlobStore) -> None:
    with pytest.raises(FileNotFoundError):
        driver.open(sha256(b"never stored")).read(10)


def test_stat_and_read_whole_blob(driver: BlobStore) -> None:
    data = b"hello, berth\n" * 100
    digest = put(driver, data)
    assert driver.stat(digest) == len(data)
    assert read_all(driver, digest) == data
    assert read_all(driver, digest, 0, len(data) + 1000) == data  # clipped at the end
    r = driver.open(digest)
    assert r.size == len(data)
    r.close()
    r.close()  # idempotent


def test_ranged_reads(driver: BlobStore) -> None:
    data = bytes(range(256)) * 40
    digest = put(driver, data)
    for start, end in [(0, 1), (1, 11), (255, 257), (1000, 5096), (len(data) - 1, len(data)),
                       (len(data) - 5, len(data) + 100), (7, None)]:
        assert read_all(driver, digest, start, end, n=333) == data[start:end], (start, end)
        r = driver.open(digest, start, end)
        assert r.size == len(data)  # the blob's, not the range's
        r.close()


def test_ranges_at_and_past_the_end_are_empty(driver: BlobStore) -> None:
    data = b"0123456789"
    digest = put(driver, data)
    assert read_all(driver, digest, len(data)) == b""
    assert read_all(driver, digest, 3, 3) == b""


def test_empty_blob(driver: BlobStore) -> None:
    digest = put(driver, b"")
    assert digest == "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
    assert driver.stat(digest) == 0
    assert read_all(driver, digest) == b""


def test_large_blob_round_trip(driver: BlobStore) -> None:
    data = os.urandom(12 * MiB + 17)  # several S3 parts and a short last one
    digest = put(driver, data)
    assert driver.stat(digest) == len(data)
    assert read_all(driver, digest) == data
    assert read_all(driver, digest, 5 * MiB - 3, 10 * MiB + 5) == data[5 * MiB - 3:10 * MiB + 5]


def test_sha512_blob(driver: BlobStore) -> None:
    data = b"sha512 content"
    digest = put(driver, data, sha512(data))
    assert driver.stat(digest) == len(data)
    assert read_all(driver, digest) == data
    assert driver.stat(sha256(data)) is None  # stored under its own algorithm only


def test_batch_delete(driver: BlobStore) -> None:
    kept = put(driver, b"kept")
    doomed = [put(driver, f"doomed {i}".encode()) for i in range(5)]
    driver.delete([*doomed, sha256(b"never stored")])  # absent ones are not an error
    for d in doomed:
        assert driver.stat(d) is None
        with pytest.raises(FileNotFoundError):
            driver.open(d).read(1)
    assert driver.stat(kept) == 4
    driver.delete(doomed)  # again: nothing to do
    driver.delete([])
    assert digests(driver) == [kept]


def test_delete_leaves_uploads_alone(driver: BlobStore) -> None:
    data = b"in progress and stored"
    digest = put(driver, data)
    up = Upload(driver)
    up.send(data)
    driver.delete([digest])
    up.commit(digest)
    assert read_all(driver, digest) == data


def test_concurrent_commits_into_an_empty_store(driver: BlobStore) -> None:
    """Many writers at once, each committing blobs whose shards do not exist yet (and the same
    blob from several writers): every commit succeeds and every blob reads back whole."""
    one_shard = []  # the same first digest byte: the writers race to create one shard directory
    while len(one_shard) < 32:
        data = os.urandom(64)
        if hashlib.sha256(data).digest()[0] == 0x7F:
            one_shard.append(data)
    blobs = one_shard + [os.urandom(100 + i) for i in range(64)] + [b"shared"] * 8
    errors: list[BaseException] = []
    barrier = threading.Barrier(8)

    def writer(mine: list[bytes]) -> None:
        try:
            barrier.wait(10)
            for data in mine:
                put(driver, data)
        except BaseException as e:  # noqa: BLE001 - reported below
            errors.append(e)

    threads = [threading.Thread(target=writer, args=(blobs[i::8],)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert errors == []
    for data in blobs:
        assert read_all(driver, sha256(data)) == data
    assert len(digests(driver)) == 97


# the walk for garbage collection

def test_walk_pages_through_every_blob_in_digest_order(driver: BlobStore) -> None:
    assert driver.walk() == []
    blobs = {}
    for i in range(23):
        data = os.urandom(i * 10)
        digest = sha512(data) if i % 4 == 0 else sha256(data)
        put(driver, data, digest)
        blobs[digest] = len(data)
    put(driver, b"")  # the empty blob
    blobs[sha256(b"")] = 0
    pages = []
    after = ""
    while page := driver.walk(after, 5):
        assert len(page) <= 5
        pages.append(page)
        after = page[-1].digest
    walked = [b for page in pages for b in page]
    assert [b.digest for b in walked] == sorted(blobs)
    assert {b.digest: b.size for b in walked} == blobs
    assert all(len(p) == 5 for p in pages[:-1])
    assert driver.walk(sorted(blobs)[-1]) == []
    assert driver.walk("sha256:", 1)[0].digest == sorted(blobs)[0]
    middle = "sha256:" + "8" * 64
    assert [b.digest for b in driver.walk(middle, 100)] == sorted(d for d in blobs if d > middle)
    assert driver.walk(limit=0) == []


def test_walk_sees_the_same_blob_once(driver: BlobStore) -> None:
    put(driver, b"a")
    put(driver, b"a")
    up = Upload(driver)
    up.send(b"a")
    up.commit(sha256(b"a"))
    assert digests(driver) == [sha256(b"a")]


# resumable uploads

def test_chunked_upload(driver: BlobStore) -> None:
    parts = [b"first-", b"second-", b"third"]
    data = b"".join(parts)
    up = Upload(driver)
    for p in parts:
        up.send(p)
    assert up.size == len(data)
    assert driver.stat(sha256(data)) is None  # nothing is a blob before the commit
    up.commit(sha256(data))
    assert read_all(driver, sha256(data)) == data
    up.cancel()  # after a commit: harmless, the blob stays
    assert read_all(driver, sha256(data)) == data


def test_many_small_parts_then_large_ones(driver: BlobStore) -> None:
    """Small PATCHes must work on object stores too (S3 parts are >= 5 MiB but the last)."""
    pieces = [os.urandom(1000) for _ in range(20)] + [os.urandom(3 * MiB), os.urandom(3 * MiB), b"x",
                                                      os.urandom(6 * MiB + 5), os.urandom(10)]
    up = Upload(driver)
    for p in pieces:
        up.send(p)
    data = b"".join(pieces)
    assert up.size == len(data)
    up.commit(sha256(data + b"tail"), b"tail")
    assert read_all(driver, sha256(data + b"tail")) == data + b"tail"


def test_commit_with_the_last_bytes(driver: BlobStore) -> None:
    data = os.urandom(100_000)
    up = Upload(driver)
    up.send(data[:30_000])
    up.commit(sha256(data), data[30_000:60_000], data[60_000:])
    assert read_all(driver, sha256(data)) == data


def test_empty_upload(driver: BlobStore) -> None:
    up = Upload(driver)
    up.send()
    up.commit(sha256(b""))
    assert driver.stat(sha256(b"")) == 0


def test_commit_of_an_existing_digest(driver: BlobStore) -> None:
    data = b"pushed twice"
    digest = put(driver, data)
    up = Upload(driver)
    up.send(data)
    up.commit(digest)
    assert read_all(driver, digest) == data
    assert digests(driver) == [digest]


def test_read_back_for_rehashing(driver: BlobStore) -> None:
    data = os.urandom(7 * MiB + 3)
    up = Upload(driver)
    up.send(data[:2 * MiB])
    up.send(data[2 * MiB:])
    w = driver.resume(up.id, up.state, up.size)
    got = b""
    while len(got) < up.size:
        chunk = w.read(len(got), min(MiB, up.size - len(got)))
        assert chunk
        got += chunk
    assert hashlib.sha256(got).digest() == hashlib.sha256(data).digest()
    w.commit(sha256(data))


def test_resume_continues_on_a_second_instance(under_test: DriverUnderTest) -> None:
    """Another process or node continues the upload from the state and size alone."""
    a, b = under_test.store, under_test.second()
    data = os.urandom(6 * MiB + 100)
    up = Upload(a)
    up.send(data[:1000])
    up.send(data[1000:6 * MiB], driver=b)
    up.send(data[6 * MiB:6 * MiB + 50])
    up.commit(sha256(data), data[6 * MiB + 50:], driver=b)
    assert read_all(a, sha256(data)) == data


def test_abort_leaves_the_upload_as_it_was(driver: BlobStore) -> None:
    up = Upload(driver)
    up.send(b"kept-")
    w = driver.resume(up.id, up.state, up.size)
    w.write(b"lost" * 1000)
    w.write(os.urandom(6 * MiB))
    w.abort()
    w.abort()  # idempotent
    up.send(b"end")
    up.commit(sha256(b"kept-end"))
    assert read_all(driver, sha256(b"kept-end")) == b"kept-end"


def test_a_writer_whose_size_was_never_committed_is_discarded(driver: BlobStore) -> None:
    """The registry did not record a request (its claim was lost, or the process died before the
    database commit): resuming at the older state and size discards what that request stored."""
    up = Upload(driver)
    up.send(b"committed;")
    old_state, old_size = up.state, up.size
    w = driver.resume(up.id, up.state, up.size)
    w.write(b"never recorded" + os.urandom(6 * MiB))
    w.suspend()
    up.state, up.size = old_state, old_size
    up.send(b"instead")
    up.commit(sha256(b"committed;instead"))
    assert read_all(driver, sha256(b"committed;instead")) == b"committed;instead"


def test_resume_of_a_lost_upload_raises(driver: BlobStore) -> None:
    with pytest.raises(FileNotFoundError):
        driver.resume(new_id(), "", 10)
    up = Upload(driver)
    up.send(b"0123456789")
    up.cancel()
    with pytest.raises(FileNotFoundError):
        driver.resume(up.id, up.state, up.size)


def test_cancel(driver: BlobStore) -> None:
    up = Upload(driver)
    up.send(b"abandoned", os.urandom(6 * MiB))
    up.cancel()
    up.cancel()  # idempotent
    driver.cancel(new_id(), "")  # never begun: nothing to do
    never_written = Upload(driver)
    never_written.cancel()


# monolithic uploads (digest known up front)

def test_create_abort_leaves_nothing(under_test: DriverUnderTest) -> None:
    driver = under_test.store
    data = os.urandom(6 * MiB + 1)
    w = driver.create(sha256(data))
    write_all(w, data)
    w.abort()  # the caller's digest check failed, or the client went away
    w.abort()
    assert driver.stat(sha256(data)) is None
    assert under_test.leftovers() == []
    small = driver.create(sha256(b"small"))
    small.write(b"not small")
    small.abort()
    assert driver.stat(sha256(b"small")) is None
    driver.create(sha256(b"never written")).abort()


def test_create_over_an_existing_blob_keeps_it_readable(driver: BlobStore) -> None:
    data = b"already here"
    digest = put(driver, data)
    w = driver.create(digest)
    w.write(data[:5])
    assert read_all(driver, digest) == data  # a reader never sees the new, partial bytes
    w.abort()
    assert read_all(driver, digest) == data
    w = driver.create(digest)
    w.write(data)
    w.commit(digest)
    assert read_all(driver, digest) == data


def test_writers_after_their_end_are_inert(driver: BlobStore) -> None:
    w = driver.create(sha256(b"data"))
    w.write(b"data")
    w.commit(sha256(b"data"))
    w.abort()  # after a commit: nothing
    assert read_all(driver, sha256(b"data")) == b"data"
    up = Upload(driver)
    w = driver.resume(up.id, up.state, 0)
    w.write(b"x")
    up.state = w.suspend()
    w.abort()  # after a suspend: the bytes stay
    up.size = 1
    up.commit(sha256(b"x"))
    assert read_all(driver, sha256(b"x")) == b"x"


# purge of abandoned uploads

def test_purge_uploads(under_test: DriverUnderTest) -> None:
    driver = under_test.store
    live = Upload(driver)
    live.send(b"live session")
    orphan = Upload(driver)  # its row was never written, or was deleted
    orphan.send(b"orphan")
    dead = driver.create(sha256(b"dead put"))  # a monolithic put of a process that died
    dead.write(b"dead put")
    assert driver.purge_uploads(time.time() - 3600, {live.id}) == 0  # all too young
    assert driver.purge_uploads(time.time() + 60, {live.id}) >= 1
    live.commit(sha256(b"live session"))
    assert read_all(driver, sha256(b"live session")) == b"live session"
    dead.abort()
    with pytest.raises(FileNotFoundError):
        driver.resume(orphan.id, orphan.state, orphan.size)
    orphan.cancel()
    assert driver.purge_uploads(time.time() + 60, set()) == 0
    assert driver.stat(sha256(b"live session")) == 12  # finished blobs are never touched


# presigned URLs

def test_url_for_is_none_or_fetches_the_blob(driver: BlobStore) -> None:
    data = os.urandom(1000)
    digest = put(driver, data)
    url = driver.url_for(digest, 300)
    if url is None:
        return
    with urllib.request.urlopen(url, timeout=30) as r:
        assert r.read() == data


def test_local_path_is_none_or_the_whole_blob(driver: BlobStore) -> None:
    data = os.urandom(3000)
    digest = put(driver, data)
    path = driver.local_path(digest, len(data))
    if path is not None:
        with open(path, "rb") as f:
            assert f.read() == data
        os.truncate(path, 1000)  # damaged outside Berth: not handed out as the whole blob
        assert driver.local_path(digest, len(data)) is None
    assert driver.local_path(sha256(b"never stored"), 12) is None
    up = Upload(driver)  # an upload in progress is no blob yet
    up.send(b"partial")
    assert driver.local_path(sha256(b"partial"), 7) is None
    up.cancel()


def test_a_writer_names_its_local_file_or_none(driver: BlobStore) -> None:
    w = driver.create(sha256(b"followed"))
    try:
        w.write(b"follow")
        fd = w.fileno()
        if fd is not None:  # a local file: it holds every byte written so far
            assert os.pread(fd, 100, 0) == b"follow"
        w.write(b"ed")
        if fd is not None:
            assert os.pread(fd, 100, 0) == b"followed"
        w.commit(sha256(b"followed"))
    finally:
        w.abort()
    assert driver.stat(sha256(b"followed")) == 8


# refusing what could escape the root

BAD_DIGESTS = [
    "",
    "sha256",
    "sha256:",
    "../../etc/passwd",
    "sha256:../../../../etc/passwd",
    "sha256:" + "../" * 21 + "a",
    "sha256/../../x:" + "a" * 64,
    "../sha256:" + "a" * 64,
    "sha256:" + "A" * 64,  # upper-case hex
    "sha256:" + "g" * 64,  # not hex
    "sha256:" + "a" * 63,
    "sha256:" + "a" * 65,
    "sha256:" + "a" * 64 + "/",
    "sha256:" + "a" * 64 + "\n",
    "sha256:" + "a" * 64 + "\x00",
    "sha256:" + "a" * 62 + "/.",
    "sha512:" + "a" * 127,
    "sha256:" + "a" * 128,  # each algorithm has its own length
    "sha512:" + "a" * 64,
    "md5:" + "a" * 32,
    "/sha256:" + "a" * 64,
]

BAD_UPLOAD_IDS = ["", ".", "..", "../x", "../../etc", "a/b", "/tmp/x", "abcdefgh/..", "abcdefgh\x00", "short",
                  "abcdefgh\n", "a" * 129, "upload.id.with.dots", "up load id", ".put-abcdefgh"]


@pytest.mark.parametrize("digest", BAD_DIGESTS)
def test_refuses_bad_digests(driver: BlobStore, digest: str) -> None:
    with pytest.raises(ValueError):
        driver.stat(digest)
    with pytest.raises(ValueError):
        driver.open(digest)
    with pytest.raises(ValueError):
        driver.delete([digest])
    with pytest.raises(ValueError):
        driver.create(digest)
    with pytest.raises(ValueError):
        driver.url_for(digest, 60)
    with pytest.raises(ValueError):
        driver.local_path(digest, 1)
    up = Upload(driver)
    up.send(b"payload")
    w = driver.resume(up.id, up.state, up.size)
    with pytest.raises(ValueError):
        w.commit(digest)
    w.abort()
    w = driver.resume(up.id, up.state, up.size)  # still there, still whole
    assert w.read(0, 100) == b"payload"
    w.abort()
    assert digests(driver) == []
    up.cancel()


@pytest.mark.parametrize("upload_id", BAD_UPLOAD_IDS)
def test_refuses_bad_upload_ids(driver: BlobStore, upload_id: str) -> None:
    with pytest.raises(ValueError):
        driver.begin(upload_id)
    with pytest.raises(ValueError):
        driver.resume(upload_id, "", 0)
    with pytest.raises(ValueError):
        driver.cancel(upload_id, "")


def test_escape_attempts_touch_nothing_outside(under_test: DriverUnderTest, tmp_path: Path) -> None:
    """A victim file beside the store survives every refused name."""
    victim = tmp_path / "victim"
    victim.write_bytes(b"precious")
    driver = under_test.store
    for upload_id in ["../victim", "../../victim", "..", "."]:
        with pytest.raises(ValueError):
            driver.cancel(upload_id, "")
        with pytest.raises(ValueError):
            driver.resume(upload_id, "", 0)
    with pytest.raises(ValueError):
        driver.delete(["sha256:../../../victim"])
    assert victim.read_bytes() == b"precious"


# nothing left behind

def test_full_cycle_leaves_nothing_behind(under_test: DriverUnderTest) -> None:
    driver = under_test.store
    stored = []
    for i in range(5):
        data = os.urandom(1000 + i)
        up = Upload(driver)
        up.send(data[:500])
        up.send(data[500:])
        digest = sha512(data) if i % 2 else sha256(data)
        up.commit(digest)
        stored.append(digest)
    stored.append(put(driver, b"monolithic"))
    abandoned = Upload(driver)
    abandoned.send(b"partial")
    abandoned.cancel()
    Upload(driver).cancel()
    mismatch = driver.create(sha256(b"expected"))  # the registry's digest check fails: abort
    mismatch.write(b"actual")
    mismatch.abort()

    assert under_test.leftovers() == []
    assert sorted(digests(driver)) == sorted(stored)
    driver.delete(stored)
    assert digests(driver) == []
    assert under_test.leftovers() == []
