"""The pull-through cache's readers follow the file the filesystem BlobStore writer is writing
(berth/replication/growing.py): if the writer changes so that it can no longer be followed, the cache
would quietly fall back to a second (spool) copy of every byte; this fails instead."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

from berth.replication.growing import follow
from berth.storage.filesystem import FilesystemBlobStore


def test_a_filesystem_writer_is_followed_through_its_commit(tmp_path: Path) -> None:
    store = FilesystemBlobStore(tmp_path / "storage")
    data = os.urandom(3 << 20)
    digest = "sha256:" + hashlib.sha256(data).hexdigest()
    writer = store.create(digest)
    fd = follow(writer)
    assert fd is not None
    try:
        writer.write(data[: 1 << 20])
        assert os.pread(fd, 2 << 20, 0) == data[: 1 << 20]  # what is written so far, no more
        writer.write(data[1 << 20:])
        writer.commit(digest)
        assert os.pread(fd, len(data), 0) == data  # the same file, now the stored blob
        assert store.local_path(digest, len(data)) is not None
    finally:
        os.close(fd)


def test_an_aborted_writer_leaves_nothing_though_followed(tmp_path: Path) -> None:
    store = FilesystemBlobStore(tmp_path / "storage")
    writer = store.create("sha256:" + "0" * 64)
    fd = follow(writer)
    assert fd is not None
    writer.write(b"not what the digest says")
    writer.abort()
    try:
        assert list((tmp_path / "storage" / "uploads").iterdir()) == []
        assert store.stat("sha256:" + "0" * 64) is None
    finally:
        os.close(fd)
