"""The BlobStore contract: every storage driver passes this one suite and leaves nothing behind.

To add a driver, write a factory returning a `DriverUnderTest` and add one `pytest.param` to `DRIVERS`.
"""

from __future__ import annotations

import hashlib
import os
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from berth.storage import BlobStore
from berth.storage.filesystem import FilesystemBlobStore


@dataclass
class DriverUnderTest:
    store: BlobStore
    leftovers: Callable[[], list[str]]  # anything still stored in the driver's upload area
    cleanup: Callable[[], None] = lambda: None


def _filesystem(tmp_path: Path) -> DriverUnderTest:
    store = FilesystemBlobStore(tmp_path / "storage")

    def leftovers() -> list[str]:
        return sorted(str(p.relative_to(store.root)) for p in (store.root / "uploads").rglob("*"))

    return DriverUnderTest(store, leftovers)


DRIVERS = [
    pytest.param(_filesystem, id="filesystem"),
]


@pytest.fixture(params=DRIVERS)
def under_test(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[DriverUnderTest]:
    dut: DriverUnderTest = request.param(tmp_path)
    try:
        yield dut
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


def put(driver: BlobStore, data: bytes, digest: str | None = None) -> str:
    """Store `data` as a blob through the upload path, as the registry does."""
    digest = digest or sha256(data)
    upload_id = new_id()
    driver.upload_create(upload_id)
    w = driver.upload_open(upload_id, 0)
    w.write(data)
    w.close(sync=True)
    driver.upload_commit(upload_id, digest)
    return digest


def write(driver: BlobStore, upload_id: str, offset: int, *chunks: bytes) -> None:
    w = driver.upload_open(upload_id, offset)
    try:
        for c in chunks:
            w.write(c)
    finally:
        w.close()


# finished blobs

def test_stat_absent_blob_is_none(driver: BlobStore) -> None:
    assert driver.stat(sha256(b"never stored")) is None
    assert driver.stat(sha512(b"never stored")) is None


def test_read_absent_blob_raises(driver: BlobStore) -> None:
    with pytest.raises(FileNotFoundError):
        driver.read(sha256(b"never stored"), 0, 10)


def test_stat_and_read_whole_blob(driver: BlobStore) -> None:
    data = b"hello, berth\n" * 100
    digest = put(driver, data)
    assert driver.stat(digest) == len(data)
    assert driver.read(digest, 0, len(data)) == data
    assert driver.read(digest, 0, len(data) + 1000) == data  # short only at the end


def test_read_at_offsets(driver: BlobStore) -> None:
    data = bytes(range(256)) * 40
    digest = put(driver, data)
    for offset, length in [(0, 1), (1, 10), (255, 2), (1000, 4096), (len(data) - 1, 1), (len(data) - 5, 100)]:
        assert driver.read(digest, offset, length) == data[offset:offset + length]


def test_read_at_and_past_the_end_is_empty(driver: BlobStore) -> None:
    data = b"0123456789"
    digest = put(driver, data)
    assert driver.read(digest, len(data), 10) == b""
    assert driver.read(digest, len(data) + 1000, 10) == b""
    assert driver.read(digest, 3, 0) == b""


def test_empty_blob(driver: BlobStore) -> None:
    digest = put(driver, b"")
    assert digest == "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
    assert driver.stat(digest) == 0
    assert driver.read(digest, 0, 100) == b""


def test_large_blob_round_trip(driver: BlobStore) -> None:
    data = os.urandom(3 * 1024 * 1024 + 17)
    upload_id = new_id()
    driver.upload_create(upload_id)
    w = driver.upload_open(upload_id, 0)
    for i in range(0, len(data), 65536):
        w.write(data[i:i + 65536])
    w.close(sync=True)
    digest = sha256(data)
    driver.upload_commit(upload_id, digest)
    assert driver.stat(digest) == len(data)
    got = b"".join(driver.read(digest, off, 1 << 20) for off in range(0, len(data), 1 << 20))
    assert got == data


def test_delete(driver: BlobStore) -> None:
    digest = put(driver, b"to be deleted")
    assert driver.delete(digest) is True
    assert driver.stat(digest) is None
    assert driver.delete(digest) is False
    with pytest.raises(FileNotFoundError):
        driver.read(digest, 0, 1)


def test_digests_lists_every_blob_once(driver: BlobStore) -> None:
    assert list(driver.digests()) == []
    a = put(driver, b"a")
    b = put(driver, b"b")
    c = put(driver, b"c" * 1000, sha512(b"c" * 1000))
    put(driver, b"a")  # the same content again: still one blob
    listed = list(driver.digests())
    assert sorted(listed) == sorted([a, b, c])
    driver.delete(b)
    assert sorted(driver.digests()) == sorted([a, c])


def test_sha512_blob(driver: BlobStore) -> None:
    data = b"sha512 content"
    digest = put(driver, data, sha512(data))
    assert driver.stat(digest) == len(data)
    assert driver.read(digest, 0, 100) == data
    assert driver.stat(sha256(data)) is None  # stored under its own algorithm only


# uploads in progress

def test_upload_create_and_size(driver: BlobStore) -> None:
    upload_id = new_id()
    assert driver.upload_size(upload_id) is None
    driver.upload_create(upload_id)
    assert driver.upload_size(upload_id) == 0
    write(driver, upload_id, 0, b"abc", b"defg")
    assert driver.upload_size(upload_id) == 7
    assert driver.upload_read(upload_id, 0, 100) == b"abcdefg"


def test_upload_create_twice_fails(driver: BlobStore) -> None:
    upload_id = new_id()
    driver.upload_create(upload_id)
    write(driver, upload_id, 0, b"keep me")
    with pytest.raises(FileExistsError):
        driver.upload_create(upload_id)
    assert driver.upload_read(upload_id, 0, 100) == b"keep me"


def test_upload_open_at_size_appends(driver: BlobStore) -> None:
    upload_id = new_id()
    driver.upload_create(upload_id)
    write(driver, upload_id, 0, b"first-")
    write(driver, upload_id, 6, b"second-")
    write(driver, upload_id, 13, b"third")
    assert driver.upload_size(upload_id) == 18
    assert driver.upload_read(upload_id, 0, 100) == b"first-second-third"


def test_upload_open_at_offset_truncates_the_rest(driver: BlobStore) -> None:
    upload_id = new_id()
    driver.upload_create(upload_id)
    write(driver, upload_id, 0, b"hello world")
    write(driver, upload_id, 5, b"XY")
    assert driver.upload_size(upload_id) == 7
    assert driver.upload_read(upload_id, 0, 100) == b"helloXY"
    # opening and closing without writing cuts back to the offset (how a failed chunk is rolled back)
    driver.upload_open(upload_id, 3).close()
    assert driver.upload_size(upload_id) == 3
    assert driver.upload_read(upload_id, 0, 100) == b"hel"
    driver.upload_open(upload_id, 0).close(sync=True)
    assert driver.upload_size(upload_id) == 0


def test_upload_open_absent_raises(driver: BlobStore) -> None:
    with pytest.raises(FileNotFoundError):
        driver.upload_open(new_id(), 0)


def test_upload_read_at_offsets(driver: BlobStore) -> None:
    upload_id = new_id()
    driver.upload_create(upload_id)
    data = bytes(range(200))
    write(driver, upload_id, 0, data)
    assert driver.upload_read(upload_id, 10, 5) == data[10:15]
    assert driver.upload_read(upload_id, 190, 50) == data[190:]
    assert driver.upload_read(upload_id, 200, 5) == b""
    assert driver.upload_read(upload_id, 500, 5) == b""


def test_upload_writer_close_is_idempotent(driver: BlobStore) -> None:
    upload_id = new_id()
    driver.upload_create(upload_id)
    w = driver.upload_open(upload_id, 0)
    w.write(b"data")
    w.close(sync=True)
    w.close()
    assert driver.upload_size(upload_id) == 4


def test_commit_makes_the_blob_readable_and_drops_the_upload(driver: BlobStore) -> None:
    data = os.urandom(100_000)
    digest = sha256(data)
    upload_id = new_id()
    driver.upload_create(upload_id)
    write(driver, upload_id, 0, data[:30_000], data[30_000:])
    assert driver.stat(digest) is None
    driver.upload_commit(upload_id, digest)
    assert driver.stat(digest) == len(data)
    assert driver.read(digest, 0, len(data)) == data
    assert driver.upload_size(upload_id) is None
    assert upload_id not in dict(driver.uploads())


def test_commit_of_an_existing_digest(driver: BlobStore) -> None:
    data = b"pushed twice"
    digest = put(driver, data)
    upload_id = new_id()
    driver.upload_create(upload_id)
    write(driver, upload_id, 0, data)
    driver.upload_commit(upload_id, digest)
    assert driver.stat(digest) == len(data)
    assert driver.read(digest, 0, 100) == data
    assert driver.upload_size(upload_id) is None
    assert list(driver.digests()) == [digest]


def test_upload_delete(driver: BlobStore) -> None:
    upload_id = new_id()
    driver.upload_create(upload_id)
    write(driver, upload_id, 0, b"abandoned")
    driver.upload_delete(upload_id)
    assert driver.upload_size(upload_id) is None
    assert upload_id not in dict(driver.uploads())
    driver.upload_delete(upload_id)  # absent: nothing to do, no error
    driver.upload_delete(new_id())


def test_uploads_listing(driver: BlobStore) -> None:
    assert list(driver.uploads()) == []
    before = time.time()
    ids = [new_id() for _ in range(3)]
    for i, upload_id in enumerate(ids):
        driver.upload_create(upload_id)
        write(driver, upload_id, 0, b"x" * i)
    listed = dict(driver.uploads())
    assert sorted(listed) == sorted(ids)
    for mtime in listed.values():
        assert isinstance(mtime, float)
        assert before - 5 <= mtime <= time.time() + 5
    driver.upload_delete(ids[0])
    driver.upload_commit(ids[1], sha256(b"x"))
    assert [u for u, _ in driver.uploads()] == [ids[2]]


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
                  "abcdefgh\n", "a" * 129, "upload.id.with.dots", "up load id"]


@pytest.mark.parametrize("digest", BAD_DIGESTS)
def test_refuses_bad_digests(driver: BlobStore, digest: str) -> None:
    with pytest.raises(ValueError):
        driver.stat(digest)
    with pytest.raises(ValueError):
        driver.read(digest, 0, 1)
    with pytest.raises(ValueError):
        driver.delete(digest)
    upload_id = new_id()
    driver.upload_create(upload_id)
    write(driver, upload_id, 0, b"payload")
    with pytest.raises(ValueError):
        driver.upload_commit(upload_id, digest)
    assert driver.upload_read(upload_id, 0, 100) == b"payload"  # still there, still whole
    assert list(driver.digests()) == []
    driver.upload_delete(upload_id)


@pytest.mark.parametrize("upload_id", BAD_UPLOAD_IDS)
def test_refuses_bad_upload_ids(driver: BlobStore, upload_id: str) -> None:
    with pytest.raises(ValueError):
        driver.upload_create(upload_id)
    with pytest.raises(ValueError):
        driver.upload_size(upload_id)
    with pytest.raises(ValueError):
        driver.upload_open(upload_id, 0)
    with pytest.raises(ValueError):
        driver.upload_read(upload_id, 0, 1)
    with pytest.raises(ValueError):
        driver.upload_commit(upload_id, sha256(b""))
    with pytest.raises(ValueError):
        driver.upload_delete(upload_id)
    assert list(driver.uploads()) == []


def test_escape_attempts_touch_nothing_outside(under_test: DriverUnderTest, tmp_path: Path) -> None:
    """A victim file beside the store survives every refused name."""
    victim = tmp_path / "victim"
    victim.write_bytes(b"precious")
    driver = under_test.store
    for upload_id in ["../victim", "../../victim", "..", "."]:
        with pytest.raises(ValueError):
            driver.upload_delete(upload_id)
        with pytest.raises(ValueError):
            driver.upload_open(upload_id, 0)
    with pytest.raises(ValueError):
        driver.delete("sha256:../../../victim")
    assert victim.read_bytes() == b"precious"


# nothing left behind

def test_full_cycle_leaves_nothing_behind(under_test: DriverUnderTest) -> None:
    driver = under_test.store
    stored = []
    for i in range(5):
        data = os.urandom(1000 + i)
        upload_id = new_id()
        driver.upload_create(upload_id)
        write(driver, upload_id, 0, data[:500])
        write(driver, upload_id, 500, data[500:])
        digest = sha512(data) if i % 2 else sha256(data)
        driver.upload_commit(upload_id, digest)
        stored.append(digest)
    abandoned = new_id()
    driver.upload_create(abandoned)
    write(driver, abandoned, 0, b"partial")
    driver.upload_delete(abandoned)
    empty = new_id()
    driver.upload_create(empty)
    driver.upload_delete(empty)

    assert list(driver.uploads()) == []
    assert under_test.leftovers() == []
    assert sorted(driver.digests()) == sorted(stored)
    for digest in stored:
        assert driver.delete(digest)
    assert list(driver.digests()) == []
    assert list(driver.uploads()) == []
    assert under_test.leftovers() == []
