"""Filesystem BlobStore: blobs/<alg>/<hh>/<hex>, uploads/<id>; fsync + rename is the commit point.

An upload is one file, created by its first write (so starting an upload costs no disk work);
its state is always "". A monolithic upload writes a temporary `uploads/.put-*` file. Nothing
under blobs/ is ever partial: a blob appears there by an atomic rename of a synced file.
"""

from __future__ import annotations

import ctypes
import os
import re
import secrets
import shutil
import stat
from collections.abc import Callable, Container, Iterable
from pathlib import Path

from berth.storage.base import BlobInfo

_DIGEST = re.compile(r"(sha256|sha512):([a-f0-9]+)")  # fullmatch: "$" would accept a trailing newline
_HEX_LENGTH = {"sha256": 64, "sha512": 128}
_UPLOAD_ID = re.compile(r"[A-Za-z0-9_-]{8,128}")
_PUT_PREFIX = ".put-"  # never a valid upload id, so never mistaken for one


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


def _fsync_dir(path: str | Path) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _remove(path: str) -> bool:
    """Unlink a file, or remove a directory (the previous layout's uploads/<id>/data)."""
    try:
        os.unlink(path)
        return True
    except FileNotFoundError:
        return False
    except (IsADirectoryError, PermissionError):
        shutil.rmtree(path, ignore_errors=True)
        return True


class _FileWriter:
    """Appends to `path` from `offset`; bytes past `offset` (from a failed writer) are cut first."""

    def __init__(self, store: FilesystemBlobStore, path: str, offset: int, temporary: bool) -> None:
        self._store = store
        self._path = path
        self._temporary = temporary  # a create() writer: its file goes away unless committed
        flags = os.O_RDWR | os.O_CREAT | (os.O_EXCL if temporary else 0)
        self._fd = os.open(path, flags, 0o644)
        try:
            stored = os.fstat(self._fd).st_size
            if stored < offset:  # acknowledged bytes that did not survive (crash before writeback)
                raise FileNotFoundError(f"upload {os.path.basename(path)} holds {stored} of {offset} bytes")
            if stored > offset:
                os.ftruncate(self._fd, offset)
            os.lseek(self._fd, offset, os.SEEK_SET)
        except BaseException:
            os.close(self._fd)
            raise
        self._start = self._size = self._flushed = offset

    @property
    def size(self) -> int:
        return self._size

    def read(self, offset: int, length: int) -> bytes:
        return os.pread(self._fd, length, offset)

    def fileno(self) -> int | None:
        return self._fd if self._fd >= 0 else None

    def write(self, data: bytes) -> None:
        view = memoryview(data)
        while view:
            n = os.write(self._fd, view)
            view = view[n:]
            self._size += n
        if _start_writeback is not None and self._size - self._flushed >= WRITEBACK_EVERY:
            _start_writeback(self._fd, self._flushed, self._size - self._flushed)
            self._flushed = self._size

    def _close(self) -> None:
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1

    def suspend(self) -> str:
        if self._temporary:
            raise TypeError("a create() writer is committed or aborted, not suspended")
        try:
            if _start_writeback is not None and self._size > self._flushed:  # on its way to disk, no wait
                _start_writeback(self._fd, self._flushed, self._size - self._flushed)
        finally:
            self._close()
        return ""

    def commit(self, digest: str) -> None:
        dst = self._store._blob_path(digest)
        try:
            try:
                os.fsync(self._fd)
            finally:
                self._close()
            shard = os.path.dirname(dst)
            try:
                os.replace(self._path, dst)  # identical content if the blob was already there
            except FileNotFoundError:  # the first blob of its shard (or of its algorithm), unless ours is gone
                if not os.path.exists(self._path):
                    raise
                os.makedirs(shard, exist_ok=True)
                _fsync_dir(os.path.dirname(shard))
                _fsync_dir(os.path.dirname(os.path.dirname(shard)))
                os.replace(self._path, dst)
            _fsync_dir(shard)
        except BaseException:
            if self._temporary:  # a failed commit of a monolithic upload leaves nothing either
                try:
                    os.unlink(self._path)
                except FileNotFoundError:
                    pass
            raise

    def abort(self) -> None:
        if self._fd < 0:
            return
        try:
            if self._temporary:
                os.unlink(self._path)
            else:
                os.ftruncate(self._fd, self._start)  # leave exactly what was committed before
        except FileNotFoundError:
            pass
        finally:
            self._close()


class _FileReader:
    def __init__(self, path: str, start: int, end: int | None) -> None:
        self._fd = os.open(path, os.O_RDONLY)
        self.size = os.fstat(self._fd).st_size
        self._offset = start
        self._end = self.size if end is None else min(end, self.size)

    def read(self, n: int) -> bytes:
        n = min(n, self._end - self._offset)
        if n <= 0:
            return b""
        data = os.pread(self._fd, n, self._offset)
        self._offset += len(data)
        return data

    def close(self) -> None:
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1


class FilesystemBlobStore:
    def __init__(self, root: Path) -> None:
        self.root = Path(root)
        self._blobs = self.root / "blobs"
        self._uploads = self.root / "uploads"
        self._blobs.mkdir(parents=True, exist_ok=True)
        self._uploads.mkdir(parents=True, exist_ok=True)
        self._blobs_s, self._uploads_s = str(self._blobs), str(self._uploads)

    # paths: plain strings on the hot path (pathlib costs more than the syscalls of a small blob)
    def _blob_path(self, digest: str) -> str:
        m = _DIGEST.fullmatch(digest)
        if not m or len(m.group(2)) != _HEX_LENGTH[m.group(1)]:
            raise ValueError(f"invalid digest {digest!r}")
        alg, hexpart = m.groups()
        return f"{self._blobs_s}/{alg}/{hexpart[:2]}/{hexpart}"

    def _upload_path(self, upload_id: str) -> str:
        if not _UPLOAD_ID.fullmatch(upload_id):
            raise ValueError(f"invalid upload id {upload_id!r}")
        return f"{self._uploads_s}/{upload_id}"

    # uploads
    def begin(self, upload_id: str) -> str:
        self._upload_path(upload_id)
        return ""

    def resume(self, upload_id: str, state: str, size: int) -> _FileWriter:
        path = self._upload_path(upload_id)
        if size > 0 and not os.path.isfile(path):
            raise FileNotFoundError(f"upload {upload_id} is gone")
        return _FileWriter(self, path, size, temporary=False)

    def create(self, digest: str) -> _FileWriter:
        self._blob_path(digest)  # refuse a bad digest before writing anything
        return _FileWriter(self, f"{self._uploads_s}/{_PUT_PREFIX}{secrets.token_hex(12)}", 0, temporary=True)

    def cancel(self, upload_id: str, state: str) -> None:
        _remove(self._upload_path(upload_id))

    def purge_uploads(self, before: float, live: Container[str]) -> int:
        n = 0
        with os.scandir(self._uploads) as entries:
            for entry in entries:
                if entry.name in live:
                    continue
                try:
                    if entry.stat(follow_symlinks=False).st_mtime >= before:
                        continue
                except FileNotFoundError:
                    continue
                n += _remove(entry.path)
        return n

    # blobs
    def open(self, digest: str, start: int = 0, end: int | None = None) -> _FileReader:
        return _FileReader(self._blob_path(digest), start, end)

    def stat(self, digest: str) -> int | None:
        try:
            return os.stat(self._blob_path(digest)).st_size
        except FileNotFoundError:
            return None

    def delete(self, digests: Iterable[str]) -> None:
        for path in [self._blob_path(d) for d in digests]:  # refuse a bad digest before deleting any
            try:
                os.unlink(path)
            except FileNotFoundError:
                pass

    def walk(self, after: str = "", limit: int = 1000) -> list[BlobInfo]:
        out: list[BlobInfo] = []
        if limit <= 0:
            return out
        after_alg, _, after_hex = after.partition(":")
        for alg in sorted(p.name for p in self._blobs.iterdir() if p.name in _HEX_LENGTH):
            if alg < after_alg:
                continue
            floor = after_hex[:2] if alg == after_alg else ""
            for shard in sorted(p.name for p in (self._blobs / alg).iterdir()):
                if shard < floor:
                    continue
                with os.scandir(self._blobs / alg / shard) as entries:
                    found = sorted((e.name, e) for e in entries)
                for name, entry in found:
                    digest = f"{alg}:{name}"
                    if digest <= after or len(name) != _HEX_LENGTH[alg]:
                        continue
                    try:
                        out.append(BlobInfo(digest, entry.stat().st_size))
                    except FileNotFoundError:  # deleted while we walked
                        continue
                    if len(out) >= limit:
                        return out
        return out

    def local_path(self, digest: str, size: int) -> str | None:
        path = self._blob_path(digest)
        try:
            st = os.stat(path)
        except FileNotFoundError:
            return None
        return path if stat.S_ISREG(st.st_mode) and st.st_size == size else None

    def url_for(self, digest: str, expires: int) -> str | None:
        self._blob_path(digest)
        return None
