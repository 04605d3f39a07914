"""Filesystem BlobStore: blobs/<alg>/<hh>/<hex>, uploads/<id>; rename is the commit point."""

from __future__ import annotations

import ctypes
import os
import re
import shutil
from collections.abc import Callable, Iterator
from pathlib import Path

_DIGEST = re.compile(r"(sha256|sha512):([a-f0-9]+)")  # fullmatch: "$" would accept a trailing newline
_HEX_LENGTH = {"sha256": 64, "sha512": 128}
_UPLOAD_ID = re.compile(r"[A-Za-z0-9_-]{8,128}")


def _writeback_starter() -> Callable[[int, int, int], object] | None:
    """Linux's sync_file_range(SYNC_FILE_RANGE_WRITE): start writing pages to disk without waiting."""
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        fn = libc.sync_file_range
    except (OSError, AttributeError):
        return None
    fn.argtypes = (ctypes.c_int, ctypes.c_int64, ctypes.c_int64, ctypes.c_uint)
    return lambda fd, offset, length: fn(fd, offset, length, 2)  # 2 = SYNC_FILE_RANGE_WRITE


_start_writeback = _writeback_starter()
WRITEBACK_EVERY = 16 << 20  # a large blob reaches the disk while it streams in, so the final fsync is short


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class _FileWriter:
    def __init__(self, path: Path, offset: int) -> None:
        self._fd = os.open(path, os.O_WRONLY | os.O_CREAT, 0o644)
        os.ftruncate(self._fd, offset)
        os.lseek(self._fd, offset, os.SEEK_SET)
        self._offset = self._flushed = offset

    def write(self, data: bytes) -> None:
        view = memoryview(data)
        while view:
            n = os.write(self._fd, view)
            view = view[n:]
            self._offset += n
        if _start_writeback is not None and self._offset - self._flushed >= WRITEBACK_EVERY:
            _start_writeback(self._fd, self._flushed, self._offset - self._flushed)
            self._flushed = self._offset

    def close(self, sync: bool = False) -> None:
        if self._fd < 0:
            return
        try:
            if sync:
                os.fsync(self._fd)
            elif _start_writeback is not None and self._offset > self._flushed:  # a chunk of a chunked upload
                _start_writeback(self._fd, self._flushed, self._offset - self._flushed)
        finally:
            os.close(self._fd)
            self._fd = -1


class FilesystemBlobStore:
    def __init__(self, root: Path) -> None:
        self.root = Path(root)
        self._blobs = self.root / "blobs"
        self._uploads = self.root / "uploads"
        self._blobs.mkdir(parents=True, exist_ok=True)
        self._uploads.mkdir(parents=True, exist_ok=True)

    # paths
    def _blob_path(self, digest: str) -> Path:
        m = _DIGEST.fullmatch(digest)
        if not m or len(m.group(2)) != _HEX_LENGTH[m.group(1)]:
            raise ValueError(f"invalid digest {digest!r}")
        alg, hexpart = m.groups()
        return self._blobs / alg / hexpart[:2] / hexpart

    def _upload_path(self, upload_id: str) -> Path:
        if not _UPLOAD_ID.fullmatch(upload_id):
            raise ValueError(f"invalid upload id {upload_id!r}")
        return self._uploads / upload_id

    # blobs
    def stat(self, digest: str) -> int | None:
        try:
            return os.stat(self._blob_path(digest)).st_size
        except FileNotFoundError:
            return None

    def read(self, digest: str, offset: int, length: int) -> bytes:
        fd = os.open(self._blob_path(digest), os.O_RDONLY)
        try:
            return os.pread(fd, length, offset)
        finally:
            os.close(fd)

    def delete(self, digest: str) -> bool:
        try:
            os.unlink(self._blob_path(digest))
            return True
        except FileNotFoundError:
            return False

    def digests(self) -> Iterator[str]:
        for alg_dir in sorted(self._blobs.iterdir()):
            for shard in sorted(alg_dir.iterdir()):
                for f in sorted(shard.iterdir()):
                    yield f"{alg_dir.name}:{f.name}"

    # uploads
    def upload_create(self, upload_id: str) -> None:
        path = self._upload_path(upload_id)
        path.mkdir()
        (path / "data").touch()
        _fsync_dir(self._uploads)

    def upload_size(self, upload_id: str) -> int | None:
        try:
            return os.stat(self._upload_path(upload_id) / "data").st_size
        except FileNotFoundError:
            return None

    def upload_open(self, upload_id: str, offset: int) -> _FileWriter:
        path = self._upload_path(upload_id) / "data"
        if not path.exists():
            raise FileNotFoundError(upload_id)
        return _FileWriter(path, offset)

    def upload_read(self, upload_id: str, offset: int, length: int) -> bytes:
        fd = os.open(self._upload_path(upload_id) / "data", os.O_RDONLY)
        try:
            return os.pread(fd, length, offset)
        finally:
            os.close(fd)

    def upload_commit(self, upload_id: str, digest: str) -> None:
        src = self._upload_path(upload_id) / "data"
        dst = self._blob_path(digest)
        fd = os.open(src, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
        if not dst.parent.is_dir():
            dst.parent.mkdir(parents=True, exist_ok=True)
            _fsync_dir(dst.parent.parent)
            _fsync_dir(dst.parent.parent.parent)
        os.replace(src, dst)  # identical content if the blob was already there
        _fsync_dir(dst.parent)
        shutil.rmtree(src.parent, ignore_errors=True)

    def upload_delete(self, upload_id: str) -> None:
        shutil.rmtree(self._upload_path(upload_id), ignore_errors=True)

    def uploads(self) -> Iterator[tuple[str, float]]:
        for d in self._uploads.iterdir():
            try:
                yield d.name, (d / "data").stat().st_mtime
            except FileNotFoundError:
                yield d.name, d.stat().st_mtime
