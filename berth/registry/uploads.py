"""Blob uploads: sessions, chunks, completion. Durable before acknowledged.

A session is a row (any process or node can continue it): its committed size and the storage
driver's state. A POST writes nothing: it mints a signed id (upload_ids.py), and the row comes
with the first bytes; a PUT that brings every byte then costs one write, as a monolithic push.
Each PATCH or PUT claims the row at the committed size in the database before it writes and
commits the new size after (berth/db/uploads.py), so of writers racing for one offset, in one
process or many, exactly one is accepted. The running sha256 is kept in memory for speed;
when it is missing or stale (restart, another process wrote the last part) it is recomputed from
the bytes already stored.
"""

from __future__ import annotations

import asyncio
import hashlib
import re
import secrets
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from enum import Enum
from typing import Any

from berth.db import gc as qg
from berth.db import iam as qi
from berth.db import registry as q
from berth.db import uploads as qu
from berth.db.store import Backend
from berth.keys import MasterKey
from berth.registry import upload_ids
from berth.registry.errors import (
    RETRY_AFTER,
    BlobStoreUnavailable,
    BlobUploadUnknown,
    DigestInvalid,
    RegistryError,
    SizeInvalid,
    UploadOutOfOrder,
)
from berth.registry.names import check_digest
from berth.registry.streams import pump
from berth.storage import BlobStore, UploadWriter

READ_CHUNK = 1 << 20
CLAIM_SECONDS = 60.0  # a writer renews its claim while it streams; a killed one frees the upload after this
_UPLOAD_ID = re.compile(r"[A-Za-z0-9_-]{1,64}")  # what start() hands out (signed, token_urlsafe or a UUID)
_HASHERS_KEPT = 4096  # running hashes of sessions in progress, newest kept
PIN_ATTEMPTS, PIN_WAIT = 50, 0.2  # a blob being collected: wait up to 10 s for its deletion to finish
KEYS_REFRESH = 5.0  # seconds: how often an unverifiable id may make this node re-read the signing keys


class UploadIds(Enum):
    SIGNED = "signed"  # the OCI face: minted without a database write (berth/registry/upload_ids.py)
    UUID = "uuid"  # what ECR's model requires of an uploadId: a row from the start


async def _empty() -> AsyncIterator[bytes]:
    return
    yield b""  # pragma: no cover


def _unknown(upload_id: str) -> RegistryError:
    return BlobUploadUnknown("upload unknown", detail={"uuid": upload_id})


@dataclass
class _Written:
    size: int = 0
    state: str = ""
    hasher: Any = None
    writer: UploadWriter | None = None  # verified, not yet committed (commit=False)


class Uploads:
    def __init__(self, db: Backend, blobs: BlobStore, clock: Callable[[], float] = time.time,
                 max_age_hours: int = 168, claim_seconds: float = CLAIM_SECONDS, keys: MasterKey | None = None) -> None:
        self.db = db
        self.master_key = keys  # opens the sealed signing keys (None: only plain-text ones, in tests)
        self.blobs = blobs
        self.clock = clock
        self.max_age = max_age_hours * 3600
        self.claim_seconds = claim_seconds
        self.pool = ThreadPoolExecutor(64, thread_name_prefix="upload")
        self._hashers: dict[str, tuple[int, Any]] = {}  # upload id -> (size, sha256 of its first size bytes)
        self._keys: dict[str, bytes] | None = None
        self._keys_loaded = 0.0

    async def _run(self, fn: Callable[..., Any], *args: Any) -> Any:
        return await asyncio.get_running_loop().run_in_executor(self.pool, fn, *args)

    # ids

    async def _signing_keys(self, refresh: bool = False) -> dict[str, bytes]:
        """The signing keys every node shares (the registry tokens' own, in the database)."""
        now = time.monotonic()
        if self._keys is None or (refresh and now - self._keys_loaded > KEYS_REFRESH):
            keys = {}
            for key_id, secret in (await self.db.read(qi.signing_keys)).items():
                try:
                    if self.master_key is not None:
                        secret = self.master_key.open(secret, f"signing_keys:{key_id}")
                    keys[key_id] = bytes.fromhex(secret)
                except ValueError:
                    continue
            self._keys, self._keys_loaded = keys, now
        return self._keys

    async def _fresh_since(self, repo_id: int, upload_id: str) -> float | None:
        """When a valid signed id of this repository was minted; None for any other id."""
        if len(upload_id) != upload_ids.LENGTH:
            return None
        signed = upload_ids.parse(upload_id, await self._signing_keys())
        if signed is None:  # perhaps signed with a key another node added since
            signed = upload_ids.parse(upload_id, await self._signing_keys(refresh=True))
        now = self.clock()
        if signed is None or signed.repo_id != repo_id or not now - self.max_age <= signed.minted_at <= now + 300:
            return None
        return signed.minted_at

    # sessions

    async def start(self, repo_id: int, ids: UploadIds = UploadIds.SIGNED) -> str:
        """A new session. A signed id costs no write: its row comes with its first bytes."""
        now = self.clock()
        keys = await self._signing_keys() if ids is UploadIds.SIGNED else {}
        if keys:
            return upload_ids.mint(list(keys.values())[-1], repo_id, now)
        upload_id = str(uuid.uuid4()) if ids is UploadIds.UUID else secrets.token_urlsafe(24)  # no key: a row
        await self.db.write(qu.create_upload, upload_id, repo_id, now)
        return upload_id

    async def _get(self, repo_id: int, upload_id: str) -> tuple[qu.Upload | None, float | None]:
        """The session's row, or (None, minted at) for a fresh signed id; BLOB_UPLOAD_UNKNOWN otherwise."""
        upload = await self.db.read(qu.get_upload, upload_id, repo_id) if _UPLOAD_ID.fullmatch(upload_id) else None
        if upload is not None and not upload.ended:
            return upload, None
        fresh = await self._fresh_since(repo_id, upload_id) if upload is None else None
        if fresh is None:
            raise _unknown(upload_id)
        return None, fresh

    async def status(self, repo_id: int, upload_id: str) -> int:
        """The committed size (a write in flight is not counted until it is accepted)."""
        upload, _ = await self._get(repo_id, upload_id)
        return 0 if upload is None else upload.size

    async def cancel(self, repo_id: int, upload_id: str) -> None:
        if not _UPLOAD_ID.fullmatch(upload_id) or not await self._end(repo_id, upload_id):
            raise _unknown(upload_id)

    async def _end(self, repo_id: int, upload_id: str) -> bool:
        """End the session (its row a tombstone) and drop its storage; False when it was unknown."""
        end = await self.db.write(qu.end_upload, upload_id, repo_id, await self._fresh_since(repo_id, upload_id))
        if end.outcome is qu.EndOutcome.ENDED:
            await self._discard(upload_id, end.upload.state if end.upload is not None else None)
        return end.outcome is not qu.EndOutcome.UNKNOWN

    async def _discard(self, upload_id: str, state: str | None) -> None:
        """Drop the storage of a session that ended (a writer still streaming finds it ended)."""
        self._hashers.pop(upload_id, None)
        await self._run(self.blobs.cancel, upload_id, state or "")

    # claims

    async def _claim(self, repo_id: int, upload_id: str, at: int | None) -> tuple[qu.Upload, str]:
        """Claim the session at committed size `at` (None: wherever it stands) for this request."""
        if not _UPLOAD_ID.fullmatch(upload_id):
            raise _unknown(upload_id)
        token = secrets.token_hex(8)
        fresh = await self._fresh_since(repo_id, upload_id)
        now = self.clock()
        claim = await self.db.write(qu.claim_upload, upload_id, repo_id, at, token, now, now + self.claim_seconds,
                                    fresh)
        if claim.outcome is qu.ClaimOutcome.CLAIMED and claim.upload is not None:
            return claim.upload, token
        if claim.upload is None:
            raise _unknown(upload_id)
        message = ("another request is writing to the upload" if claim.outcome is qu.ClaimOutcome.BUSY
                   else "Content-Range does not continue the upload")
        raise UploadOutOfOrder(message, size=claim.upload.size)

    async def _lost(self, repo_id: int, upload_id: str) -> Exception:
        """The error for a writer whose claim was taken over or whose session ended meanwhile."""
        current = await self.db.read(qu.get_upload, upload_id, repo_id)
        if current is None or current.ended:
            return _unknown(upload_id)
        return UploadOutOfOrder("another request took over the upload", size=current.size)

    async def _release(self, upload_id: str, token: str) -> None:
        try:
            await self.db.write(qu.release_claim, upload_id, token)
        except Exception:  # the claim expires anyway; the original error matters more
            pass

    async def _renewing(self, chunks: AsyncIterator[bytes], upload: qu.Upload, token: str) -> AsyncIterator[bytes]:
        """`chunks`, renewing the claim while a long body streams in."""
        loop = asyncio.get_running_loop()
        renew_at = loop.time() + self.claim_seconds / 3
        async for chunk in chunks:
            yield chunk
            if loop.time() >= renew_at:
                if not await self.db.write(qu.renew_claim, upload.id, token, self.clock() + self.claim_seconds):
                    raise await self._lost(upload.repository_id, upload.id)
                renew_at = loop.time() + self.claim_seconds / 3

    def _resume(self, upload: qu.Upload) -> Callable[[], UploadWriter]:
        """Opens the writer on the worker thread; a session's first bytes begin it in storage."""
        def open_() -> UploadWriter:
            state = upload.state if upload.state is not None else self.blobs.begin(upload.id)
            return self.blobs.resume(upload.id, state, upload.size)
        return open_

    # data

    def _cached(self, upload_id: str, size: int) -> Any:
        cached = self._hashers.get(upload_id)
        return cached[1].copy() if cached is not None and cached[0] == size else None

    def _remember(self, upload_id: str, written: _Written) -> None:
        self._hashers.pop(upload_id, None)
        while len(self._hashers) >= _HASHERS_KEPT:
            del self._hashers[next(iter(self._hashers))]
        self._hashers[upload_id] = (written.size, written.hasher)

    async def _stream(self, open_writer: Callable[[], UploadWriter], size: int, hasher: Any, algorithm: str,
                      chunks: AsyncIterator[bytes], content_length: int | None, digest: str | None,
                      commit: bool = True) -> _Written:
        """Hash and write `chunks` from `size` on one worker thread, then on that thread either
        suspend (digest None: a PATCH) or verify and commit (a PUT; with commit=False the verified
        writer is handed back in `out.writer` for the caller to commit or abort). On any failure the
        writer is aborted: the upload is left as it was, a new blob leaves nothing."""
        out = _Written(size, "", hasher)
        writer: list[UploadWriter] = []

        def open_() -> None:
            w = open_writer()
            writer.append(w)
            if out.hasher is None:
                out.hasher = _rehash(w, size, algorithm)

        def consume(data: bytes) -> None:
            out.hasher.update(data)
            writer[0].write(data)

        def close(ok: bool) -> None:
            if not writer:
                return
            w = writer[0]
            if not ok:
                w.abort()
                return
            received = w.size - size
            if content_length is not None and received != content_length:
                w.abort()
                raise SizeInvalid(f"received {received} bytes, Content-Length said {content_length}")
            if digest is None:
                out.state = w.suspend()
            elif f"{algorithm}:{out.hasher.hexdigest()}" != digest:
                w.abort()
                raise DigestInvalid("provided digest did not match uploaded content", detail={"digest": digest})
            elif commit:
                w.commit(digest)
            else:
                out.writer = w
            out.size = w.size

        try:
            await pump(chunks, consume, self.pool, open_, close, expected=content_length)
        except FileNotFoundError:  # the stored bytes are gone (cancelled, purged, lost in a crash)
            raise BlobUploadUnknown("upload unknown: its stored bytes are gone") from None
        return out

    async def append(self, repo_id: int, upload_id: str, chunks: AsyncIterator[bytes],
                     content_range: tuple[int, int] | None, content_length: int | None) -> int:
        at = None
        if content_range is not None:
            start, end = content_range
            if end < start:
                raise UploadOutOfOrder("Content-Range ends before it starts",
                                       size=await self.status(repo_id, upload_id))
            at = start
        upload, token = await self._claim(repo_id, upload_id, at)  # a range that does not continue: 416 first
        if content_range is not None:
            if content_length is not None and content_length != content_range[1] - content_range[0] + 1:
                await self._release(upload_id, token)
                raise SizeInvalid("Content-Range and Content-Length disagree")
            content_length = content_range[1] - content_range[0] + 1
        try:
            written = await self._stream(self._resume(upload), upload.size,
                                         self._cached(upload_id, upload.size), "sha256",
                                         self._renewing(chunks, upload, token), content_length, None)
        except BaseException:
            await self._release(upload_id, token)
            raise
        if not await self.db.write(qu.advance_upload, upload_id, token, written.size, written.state):
            raise await self._lost(repo_id, upload_id)
        self._remember(upload_id, written)
        return written.size

    async def complete(self, repo_id: int, upload_id: str, digest: str, chunks: AsyncIterator[bytes] | None,
                       content_length: int | None) -> int:
        check_digest(digest)
        upload, fresh = await self._get(repo_id, upload_id)
        if upload is None or upload.size == 0:  # every byte comes with this PUT (POST then PUT)
            return await self._complete_empty(repo_id, upload_id, fresh, digest, chunks or _empty(), content_length)
        upload, token = await self._claim(repo_id, upload_id, None)
        algorithm = digest.split(":", 1)[0]
        hasher = self._cached(upload_id, upload.size) if algorithm == "sha256" else None
        try:
            written = await self._stream(self._resume(upload), upload.size, hasher, algorithm,
                                         self._renewing(chunks or _empty(), upload, token), content_length, digest,
                                         commit=False)
            await self._commit(written, digest)
        except DigestInvalid:
            await self._end(repo_id, upload_id)  # a failed completion ends the session, as distribution's does
            raise
        except BaseException:
            await self._release(upload_id, token)
            raise
        self._hashers.pop(upload_id, None)
        if not await self._link(qu.finish_upload, upload_id, token, repo_id, digest, written.size, self.clock()):
            raise await self._lost(repo_id, upload_id)
        return written.size

    async def _complete_empty(self, repo_id: int, upload_id: str, fresh: float | None, digest: str,
                              chunks: AsyncIterator[bytes], content_length: int | None) -> int:
        """Write the blob as a monolithic upload, then end the session in one statement if it is
        still empty and unclaimed. A PATCH that won the session meanwhile makes this PUT 416; the
        blob it stored stays (content-addressed, verified: garbage collection's to reclaim)."""
        try:
            written = await self._stream(lambda: self.blobs.create(digest), 0, None, digest.split(":", 1)[0],
                                         chunks, content_length, digest, commit=False)
        except DigestInvalid:
            await self._end(repo_id, upload_id)
            raise
        await self._commit(written, digest)
        end = await self._link(qu.finish_unclaimed, upload_id, repo_id, 0, digest, written.size, self.clock(),
                                  fresh)
        if end.outcome is qu.EndOutcome.UNKNOWN:
            raise await self._lost(repo_id, upload_id)
        if end.outcome is qu.EndOutcome.ENDED:  # a row: a refused PATCH may have begun the upload in storage
            await self._discard(upload_id, end.upload.state if end.upload is not None else None)
        return written.size

    async def put(self, repo_id: Callable[[], Awaitable[int]], digest: str, chunks: AsyncIterator[bytes],
                  content_length: int | None) -> int:
        """A monolithic upload (POST ?digest=): no session row; a crash leaves only a purgeable file.
        `repo_id` is asked for only once the bytes match `digest` (so a bad push creates nothing)."""
        check_digest(digest)
        written = await self._stream(lambda: self.blobs.create(digest), 0, None, digest.split(":", 1)[0], chunks,
                                     content_length, digest, commit=False)
        try:
            repo = await repo_id()
        except BaseException:
            await self._run(self._writer(written).abort)
            raise
        await self._commit(written, digest)
        await self._link(q.link_blob, repo, digest, written.size, self.clock())
        return written.size

    async def _link(self, fn: Callable[..., Any], *args: Any) -> Any:
        """A write that links a blob: a digest condemned since its pin (an upload slower than the collector's
        pin hold) is "try again", never a fault."""
        try:
            return await self.db.write(fn, *args)
        except qg.BlobCondemned as e:
            raise BlobStoreUnavailable(f"{e}; upload it again", retry_after=RETRY_AFTER) from None

    @staticmethod
    def _writer(written: _Written) -> UploadWriter:
        assert written.writer is not None
        return written.writer

    async def _commit(self, written: _Written, digest: str) -> None:
        """Commit verified bytes as the blob `digest`, pinned first against garbage collection (berth/db/gc.py:
        a collection that condemned the digest may still delete its bytes, so wait until it has)."""
        writer = self._writer(written)
        try:
            for _ in range(PIN_ATTEMPTS):
                if await self.db.write(qg.pin, digest, self.clock()):
                    break
                await asyncio.sleep(PIN_WAIT)
            else:
                raise BlobStoreUnavailable(f"blob {digest} is being garbage-collected; try again",
                                           retry_after=RETRY_AFTER)
            await self._run(writer.commit, digest)
        except BaseException:
            await self._run(writer.abort)
            raise

    async def purge(self) -> int:
        """Drop sessions older than the maximum age and stored uploads no session owns."""
        now = self.clock()
        stale = await self.db.read(qu.stale_uploads, now - self.max_age)
        for upload in stale:
            if await self.db.write(qu.delete_upload, upload.id) is not None:
                await self._discard(upload.id, upload.state)
        await self.db.write(qu.delete_tombstones, now - self.max_age)  # their ids have expired too
        live = await self.db.read(qu.upload_ids)
        orphans: int = await self._run(self.blobs.purge_uploads, now - 3600, live)
        return len(stale) + orphans

    def close(self) -> None:
        self.pool.shutdown(wait=False)


def _rehash(writer: UploadWriter, size: int, algorithm: str) -> Any:
    """The hash of the upload's first `size` stored bytes (this process did not see them stream)."""
    h = hashlib.new(algorithm)
    offset = 0
    while offset < size:
        data = writer.read(offset, min(READ_CHUNK, size - offset))
        if not data:
            raise FileNotFoundError(f"upload holds {offset} of {size} bytes")
        h.update(data)
        offset += len(data)
    return h
