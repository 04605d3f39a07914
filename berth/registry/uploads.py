"""Blob uploads: sessions, chunks, completion. Durable before acknowledged.

A session is a row (any node can continue it) plus the driver's upload object. The running
sha256 lives in memory for speed; when it is missing or stale (restart, another process) it is
recomputed from the bytes already stored.
"""

from __future__ import annotations

import asyncio
import hashlib
import re
import secrets
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from berth.db import registry as q
from berth.db.store import Backend
from berth.registry.errors import BlobUploadUnknown, DigestInvalid, SizeInvalid, UploadOutOfOrder
from berth.registry.names import check_digest
from berth.registry.streams import pump
from berth.storage import LegacyBlobStore as BlobStore

READ_CHUNK = 1 << 20
_UPLOAD_ID = re.compile(r"[A-Za-z0-9_-]{1,64}")  # what start() hands out (token_urlsafe)


async def _empty() -> AsyncIterator[bytes]:
    return
    yield b""  # pragma: no cover


class Uploads:
    def __init__(self, db: Backend, blobs: BlobStore, clock: Callable[[], float] = time.time,
                 max_age_hours: int = 168) -> None:
        self.db = db
        self.blobs = blobs
        self.clock = clock
        self.max_age = max_age_hours * 3600
        self.pool = ThreadPoolExecutor(64, thread_name_prefix="upload")
        self._hashers: dict[str, tuple[int, Any]] = {}
        self._locks: dict[str, asyncio.Lock] = {}

    async def _run(self, fn: Callable[..., Any], *args: Any) -> Any:
        return await asyncio.get_running_loop().run_in_executor(self.pool, fn, *args)

    # sessions

    async def start(self, repo_id: int) -> str:
        upload_id = secrets.token_urlsafe(24)
        await self._run(self.blobs.upload_create, upload_id)
        await self.db.write(q.create_upload, upload_id, repo_id, self.clock())
        return upload_id

    async def _check(self, repo_id: int, upload_id: str) -> int:
        """The bytes received so far; BLOB_UPLOAD_UNKNOWN unless the session is this repository's."""
        if not _UPLOAD_ID.fullmatch(upload_id) or await self.db.read(q.get_upload_repo, upload_id) != repo_id:
            raise BlobUploadUnknown("upload unknown", detail={"uuid": upload_id})
        size = self.blobs.upload_size(upload_id)
        if size is None:
            raise BlobUploadUnknown("upload unknown", detail={"uuid": upload_id})
        return size

    def _lock(self, upload_id: str) -> asyncio.Lock:
        lock = self._locks.get(upload_id)
        if lock is None:
            lock = self._locks[upload_id] = asyncio.Lock()
        return lock

    async def status(self, repo_id: int, upload_id: str) -> int:
        return await self._check(repo_id, upload_id)

    async def cancel(self, repo_id: int, upload_id: str) -> None:
        async with self._lock(upload_id):
            await self._check(repo_id, upload_id)
            await self._drop(upload_id)

    async def _drop(self, upload_id: str) -> None:
        self._hashers.pop(upload_id, None)
        self._locks.pop(upload_id, None)
        await self.db.write(q.delete_upload, upload_id)
        await self._run(self.blobs.upload_delete, upload_id)

    # data

    async def _hasher(self, upload_id: str, size: int) -> Any:
        cached = self._hashers.get(upload_id)
        if cached is not None and cached[0] == size:
            return cached[1]
        return await self._run(self._rehash, upload_id, size, "sha256")

    def _rehash(self, upload_id: str, size: int, algorithm: str) -> Any:
        h = hashlib.new(algorithm)
        offset = 0
        while offset < size:
            data = self.blobs.upload_read(upload_id, offset, min(READ_CHUNK, size - offset))
            if not data:
                break
            h.update(data)
            offset += len(data)
        return h

    async def _append(self, upload_id: str, size: int, chunks: AsyncIterator[bytes],
                      content_length: int | None) -> int:
        """Stream `chunks` onto the upload at `size`. On any failure the upload is cut back to `size`."""
        hasher = await self._hasher(upload_id, size)
        base = hasher.copy()
        writer: list[Any] = []

        def open_() -> None:
            writer.append(self.blobs.upload_open(upload_id, size))

        def consume(data: bytes) -> None:
            hasher.update(data)
            writer[0].write(data)

        def close(ok: bool) -> None:
            if writer:
                writer[0].close()
            if not ok:  # leave exactly what was acknowledged before this request
                self.blobs.upload_open(upload_id, size).close()

        try:
            n = await pump(chunks, consume, self.pool, open_, close)
        except BaseException:
            self._hashers[upload_id] = (size, base)
            raise
        if content_length is not None and n != content_length:
            await self._run(lambda: self.blobs.upload_open(upload_id, size).close())
            self._hashers[upload_id] = (size, base)
            raise SizeInvalid(f"received {n} bytes, Content-Length said {content_length}")
        self._hashers[upload_id] = (size + n, hasher)
        return size + n

    async def append(self, repo_id: int, upload_id: str, chunks: AsyncIterator[bytes],
                     content_range: tuple[int, int] | None, content_length: int | None) -> int:
        async with self._lock(upload_id):
            size = await self._check(repo_id, upload_id)
            if content_range is not None:
                start, end = content_range
                if start != size or end < start:
                    raise UploadOutOfOrder("Content-Range does not continue the upload", size=size)
                if content_length is not None and content_length != end - start + 1:
                    raise SizeInvalid("Content-Range and Content-Length disagree")
                if content_length is None:
                    content_length = end - start + 1
            return await self._append(upload_id, size, chunks, content_length)

    async def complete(self, repo_id: int, upload_id: str, digest: str, chunks: AsyncIterator[bytes] | None,
                       content_length: int | None) -> int:
        check_digest(digest)
        async with self._lock(upload_id):
            size = await self._check(repo_id, upload_id)
            size = await self._append(upload_id, size, chunks or _empty(), content_length)
            await self._finish(repo_id, upload_id, digest, size)
        return size

    async def put(self, repo_id: Callable[[], Awaitable[int]], digest: str, chunks: AsyncIterator[bytes],
                  content_length: int | None) -> int:
        """A monolithic upload (POST ?digest=): no session row; a crash leaves only a purgeable file.
        `repo_id` is asked for only once the bytes match `digest` (so a bad push creates nothing)."""
        check_digest(digest)
        upload_id = secrets.token_urlsafe(24)
        await self._run(self.blobs.upload_create, upload_id)
        try:
            size = await self._append(upload_id, 0, chunks, content_length)
            await self._verify(upload_id, digest, size)
            await self._commit(await repo_id(), upload_id, digest, size)
        except BaseException:
            self._hashers.pop(upload_id, None)
            await self._run(self.blobs.upload_delete, upload_id)
            raise
        return size

    async def _finish(self, repo_id: int, upload_id: str, digest: str, size: int) -> None:
        await self._verify(upload_id, digest, size)
        await self._commit(repo_id, upload_id, digest, size)

    async def _verify(self, upload_id: str, digest: str, size: int) -> None:
        """DIGEST_INVALID (and the upload dropped) unless the received bytes hash to `digest`."""
        algorithm = digest.split(":", 1)[0]
        if algorithm == "sha256":
            actual = "sha256:" + self._hashers[upload_id][1].hexdigest()
        else:
            actual = f"{algorithm}:" + (await self._run(self._rehash, upload_id, size, algorithm)).hexdigest()
        if actual != digest:
            await self._drop(upload_id)
            raise DigestInvalid("provided digest did not match uploaded content", detail={"digest": digest})

    async def _commit(self, repo_id: int, upload_id: str, digest: str, size: int) -> None:
        await self._run(self.blobs.upload_commit, upload_id, digest)  # fsync + atomic rename
        self._hashers.pop(upload_id, None)
        self._locks.pop(upload_id, None)
        await self.db.write(q.finish_upload, upload_id, repo_id, digest, size, self.clock())

    async def purge(self) -> int:
        """Drop sessions older than the maximum age and driver uploads no session owns."""
        now = self.clock()
        stale = await self.db.read(q.stale_uploads, now - self.max_age)
        for upload_id in stale:
            await self._drop(upload_id)
        known = await self.db.read(q.upload_ids)
        orphans = [u for u, mtime in self.blobs.uploads() if u not in known and mtime < now - 3600]
        for upload_id in orphans:
            await self._run(self.blobs.upload_delete, upload_id)
        return len(stale) + len(orphans)

    def close(self) -> None:
        self.pool.shutdown(wait=False)
