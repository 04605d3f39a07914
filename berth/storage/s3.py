"""S3 BlobStore, for AWS S3 and any S3-compatible service (Ceph radosgw, MinIO, …), through botocore.

Layout under the bucket's prefix:
    blobs/<alg>/<hh>/<hex>                  finished blobs (content-addressed)
    uploads/<upload id>/<start>-<token>     segments of an upload in progress, one object per request

Why segments: S3 cannot append, and the parts of an unfinished multipart upload cannot be read
back, yet another process may have to rehash what was stored (the registry then reads it). So each
request's bytes become one readable object: written as a multipart upload while the request
streams (8 MiB parts, two in flight) and completed when the request ends (`suspend`). A segment
shorter than S3's 5 MiB minimum part (a small chunk) is only ever the last one: the next request
that writes reads it back (it is small) and writes it again in front of its own bytes, under a new
name, so an aborted request leaves the previous state valid. The committing request makes the
blob from the segments server-side: one CopyObject for a single segment (radosgw shares the data,
nothing is copied), else a multipart upload of UploadPartCopy ranges. A monolithic upload (digest
known up front, `create`) streams straight to the blob's key as a multipart upload that only
becomes visible when completed; a mismatch aborts it, leaving nothing.

The opaque upload state is a short JSON list of the segments ([token, size] each).
Memory per writer: one part being filled plus at most two parts in flight (~24 MiB), whatever
the blob size. Errors: an unreachable endpoint or refused credentials raise StorageUnavailable; a
missing object FileNotFoundError.
"""

from __future__ import annotations

import ctypes
import json
import queue
import re
import secrets
import threading
from collections.abc import Callable, Container, Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any

from berth.storage.base import BlobInfo, StorageUnavailable

MiB = 1 << 20
PART = 6 * MiB  # parts written while a request streams (x3 in memory: one filling, two in flight)
MIN_PART = 5 * MiB  # S3's minimum for every part but the last
MAX_COPY = 5 << 30  # S3's largest CopyObject / UploadPartCopy source range
IN_FLIGHT = 2  # parts uploading while the next one fills
READ_CHUNK = MiB
MMAP_THRESHOLD = 4 * MiB  # between READ_CHUNK and PART: see _return_large_buffers_to_the_os
READ_AHEAD = 4  # chunks a reader holds ahead of its caller
READ_AHEAD_FROM = 4 * MiB  # smaller ranges are read on the caller's thread
_DIGEST = re.compile(r"(sha256|sha512):([a-f0-9]+)")
_HEX_LENGTH = {"sha256": 64, "sha512": 128}
_UPLOAD_ID = re.compile(r"[A-Za-z0-9_-]{8,128}")
_MISSING = {"NoSuchKey", "404", "NotFound", "NoSuchUpload"}
_REFUSED = {"InvalidAccessKeyId", "SignatureDoesNotMatch", "AccessDenied", "403", "ExpiredToken",
            "InvalidToken", "NoSuchBucket", "AllAccessDisabled"}


def _translate(e: Exception, what: str) -> Exception:
    from botocore.exceptions import BotoCoreError, ClientError

    if isinstance(e, ClientError):
        err = e.response.get("Error", {})
        code = str(err.get("Code", ""))
        status = e.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0)
        if code in _MISSING or status == 404:
            return FileNotFoundError(f"{what}: {code or status}")
        if code in _REFUSED or status in (401, 403):
            return StorageUnavailable(f"object store refused {what}: {code} {err.get('Message') or ''}".rstrip())
        return StorageUnavailable(f"object store failed {what}: {code or status} {err.get('Message') or ''}".rstrip())
    if isinstance(e, BotoCoreError):
        return StorageUnavailable(f"object store unreachable ({what}): {e}")
    return e


class S3BlobStore:
    def __init__(self, bucket: str, prefix: str = "", *, endpoint: str | None = None, region: str | None = None,
                 addressing: str = "auto", access_key: str | None = None, secret_key: str | None = None,
                 session_token: str | None = None, profile: str | None = None, part_size: int = PART) -> None:
        import botocore.session
        from botocore.config import Config

        if part_size < MIN_PART:
            raise ValueError(f"part size must be at least {MIN_PART} bytes")
        self.bucket = bucket
        self.prefix = prefix.strip("/") + "/" if prefix.strip("/") else ""
        self.part_size = part_size
        session = botocore.session.Session(profile=profile or None)
        region = region or session.get_config_variable("region") or "us-east-1"
        self.region = region
        self.client: Any = session.create_client(
            "s3", region_name=region, endpoint_url=endpoint or None,
            aws_access_key_id=access_key or None, aws_secret_access_key=secret_key or None,
            aws_session_token=session_token or None,
            config=Config(signature_version="s3v4", s3={"addressing_style": addressing},
                          max_pool_connections=96, connect_timeout=5, read_timeout=60,
                          retries={"mode": "standard", "max_attempts": 3},
                          request_checksum_calculation="when_required",
                          response_checksum_validation="when_required"))
        self._parts = ThreadPoolExecutor(32, thread_name_prefix="s3-part")
        _return_large_buffers_to_the_os()

    # plumbing

    def _call(self, what: str, fn: Callable[..., Any], **kw: Any) -> Any:
        try:
            return fn(Bucket=self.bucket, **kw)
        except Exception as e:
            raise _translate(e, what) from e

    def _blob_key(self, digest: str) -> str:
        m = _DIGEST.fullmatch(digest)
        if not m or len(m.group(2)) != _HEX_LENGTH[m.group(1)]:
            raise ValueError(f"invalid digest {digest!r}")
        alg, hexpart = m.groups()
        return f"{self.prefix}blobs/{alg}/{hexpart[:2]}/{hexpart}"

    def _upload_dir(self, upload_id: str) -> str:
        if not _UPLOAD_ID.fullmatch(upload_id):
            raise ValueError(f"invalid upload id {upload_id!r}")
        return f"{self.prefix}uploads/{upload_id}/"

    def check(self) -> None:
        """Start-up check: the bucket exists and these credentials may use it."""
        try:
            self._call(f"HeadBucket {self.bucket}", self.client.head_bucket)
        except FileNotFoundError:
            raise StorageUnavailable(f"bucket {self.bucket!r} does not exist") from None

    def close(self) -> None:
        self._parts.shutdown(wait=False)

    # uploads

    def begin(self, upload_id: str) -> str:
        self._upload_dir(upload_id)
        return "[]"  # nothing stored until the first request writes

    def resume(self, upload_id: str, state: str, size: int) -> _Writer:
        base = self._upload_dir(upload_id)
        segs = _segments(state)
        stored = sum(n for _, n in segs)
        if stored != size:
            raise FileNotFoundError(f"upload {upload_id}: state holds {stored} bytes, expected {size}")
        if segs:  # the upload still exists (cancel or purge removes its segments)
            self._call("HeadObject", self.client.head_object, Key=_seg_key(base, segs, len(segs) - 1))
        return _Writer(self, base, segs, None)

    def create(self, digest: str) -> _Writer:
        return _Writer(self, None, [], digest)

    def cancel(self, upload_id: str, state: str) -> None:
        self._drop_prefix(self._upload_dir(upload_id))

    def _drop_prefix(self, prefix: str) -> None:
        keys = [o["Key"] for o in self._list(prefix)]
        self._delete_keys(keys)
        for up in self._multipart_uploads(prefix):
            self._abort(up["Key"], up["UploadId"])

    def _abort(self, key: str, mp_id: str) -> None:
        try:
            self._call("AbortMultipartUpload", self.client.abort_multipart_upload, Key=key, UploadId=mp_id)
        except FileNotFoundError:
            pass

    def _list(self, prefix: str, start_after: str = "", limit: int | None = None) -> Iterator[dict]:
        token: str | None = None
        while True:
            kw: dict[str, Any] = {"Prefix": prefix, "MaxKeys": 1000 if limit is None else min(1000, limit)}
            if token:
                kw["ContinuationToken"] = token
            elif start_after:
                kw["StartAfter"] = start_after
            page = self._call("ListObjectsV2", self.client.list_objects_v2, **kw)
            yield from page.get("Contents", [])
            token = page.get("NextContinuationToken")
            if not page.get("IsTruncated") or not token:
                return

    def _multipart_uploads(self, prefix: str) -> Iterator[dict]:
        kw: dict[str, Any] = {"Prefix": prefix}
        while True:
            page = self._call("ListMultipartUploads", self.client.list_multipart_uploads, **kw)
            yield from page.get("Uploads", [])
            if not page.get("IsTruncated"):
                return
            kw["KeyMarker"], kw["UploadIdMarker"] = page.get("NextKeyMarker"), page.get("NextUploadIdMarker")

    def _delete_keys(self, keys: list[str]) -> None:
        for i in range(0, len(keys), 1000):
            r = self._call("DeleteObjects", self.client.delete_objects,
                           Delete={"Objects": [{"Key": k} for k in keys[i:i + 1000]], "Quiet": True})
            errors = [e for e in r.get("Errors", []) if e.get("Code") != "NoSuchKey"]
            if errors:
                raise StorageUnavailable(f"object store failed DeleteObjects: {errors[0]}")

    def purge_uploads(self, before: float, live: Container[str]) -> int:
        area = f"{self.prefix}uploads/"
        newest: dict[str, float] = {}
        keys: dict[str, list[str]] = {}
        for o in self._list(area):
            upload_id = o["Key"][len(area):].split("/", 1)[0]
            keys.setdefault(upload_id, []).append(o["Key"])
            newest[upload_id] = max(newest.get(upload_id, 0.0), o["LastModified"].timestamp())
        purged = set()
        for upload_id, t in newest.items():
            if upload_id not in live and t < before:
                self._delete_keys(keys[upload_id])
                purged.add(upload_id)
        for up in self._multipart_uploads(area):
            upload_id = up["Key"][len(area):].split("/", 1)[0]
            if upload_id not in live and up["Initiated"].timestamp() < before:
                self._abort(up["Key"], up["UploadId"])
                purged.add(upload_id)
        dead_creates = 0  # `create` writers of a process that died: multipart uploads at a blob's key
        for up in self._multipart_uploads(f"{self.prefix}blobs/"):
            if up["Initiated"].timestamp() < before:
                self._abort(up["Key"], up["UploadId"])
                dead_creates += 1
        return len(purged) + dead_creates

    # blobs

    def open(self, digest: str, start: int = 0, end: int | None = None) -> _Reader:
        key = self._blob_key(digest)
        if end is not None and end <= start:
            size = self.stat(digest)
            if size is None:
                raise FileNotFoundError(digest)
            return _Reader(None, size)
        kw: dict[str, Any] = {"Key": key}
        if start or end is not None:
            kw["Range"] = f"bytes={start}-" + ("" if end is None else str(end - 1))
        try:
            r = self._call("GetObject", self.client.get_object, **kw)
        except StorageUnavailable as e:
            if "InvalidRange" not in str(e):
                raise
            size = self.stat(digest)  # the range starts at or past the end
            if size is None:
                raise FileNotFoundError(digest) from None
            return _Reader(None, size)
        content_range = r.get("ContentRange")
        size = int(content_range.rsplit("/", 1)[1]) if content_range else int(r["ContentLength"])
        return _Reader(r["Body"], size, int(r.get("ContentLength", 0)))

    def stat(self, digest: str) -> int | None:
        try:
            return int(self._call("HeadObject", self.client.head_object, Key=self._blob_key(digest))["ContentLength"])
        except FileNotFoundError:
            return None

    def delete(self, digests: Iterable[str]) -> None:
        self._delete_keys([self._blob_key(d) for d in digests])

    def walk(self, after: str = "", limit: int = 1000) -> list[BlobInfo]:
        area = f"{self.prefix}blobs/"
        start = ""
        if after:
            alg, _, hexpart = after.partition(":")
            start = f"{area}{alg}/{hexpart[:2]}/{hexpart}"
        out: list[BlobInfo] = []
        for o in self._list(area, start, limit):
            parts = o["Key"][len(area):].split("/")
            if len(parts) != 3:
                continue
            digest = f"{parts[0]}:{parts[2]}"
            m = _DIGEST.fullmatch(digest)
            if not m or len(m.group(2)) != _HEX_LENGTH[m.group(1)] or parts[1] != parts[2][:2]:
                continue
            out.append(BlobInfo(digest, int(o["Size"])))
            if len(out) >= limit:
                break
        return out

    def local_path(self, digest: str, size: int) -> str | None:
        self._blob_key(digest)  # refuse a bad digest as every method does
        return None

    def url_for(self, digest: str, expires: int) -> str | None:
        return str(self.client.generate_presigned_url(
            "get_object", Params={"Bucket": self.bucket, "Key": self._blob_key(digest)}, ExpiresIn=int(expires)))

    # assembling a blob from an upload's segments, server-side

    def _assemble(self, base: str, segs: list[tuple[str, int]], key: str) -> None:
        if not segs:
            self._call("PutObject", self.client.put_object, Key=key, Body=b"")
            return
        total = sum(n for _, n in segs)
        if len(segs) == 1 and total <= MAX_COPY:
            self._call("CopyObject", self.client.copy_object, Key=key,
                       CopySource={"Bucket": self.bucket, "Key": _seg_key(base, segs, 0)})
            return
        ranges: list[tuple[str, int, int]] = []  # (source key, first byte, last byte)
        for i, (_, n) in enumerate(segs):
            pieces = -(-n // MAX_COPY)
            step = -(-n // pieces)
            for off in range(0, n, step):
                ranges.append((_seg_key(base, segs, i), off, min(n, off + step) - 1))
        mp = self._call("CreateMultipartUpload", self.client.create_multipart_upload, Key=key)["UploadId"]
        try:
            def copy(number: int, src: str, first: int, last: int) -> dict:
                r = self._call("UploadPartCopy", self.client.upload_part_copy, Key=key, UploadId=mp,
                               PartNumber=number, CopySource={"Bucket": self.bucket, "Key": src},
                               CopySourceRange=f"bytes={first}-{last}")
                return {"PartNumber": number, "ETag": r["CopyPartResult"]["ETag"]}

            futures = [self._parts.submit(copy, n, *rng) for n, rng in enumerate(ranges, 1)]
            parts = [f.result() for f in futures]
            self._call("CompleteMultipartUpload", self.client.complete_multipart_upload, Key=key, UploadId=mp,
                       MultipartUpload={"Parts": parts})
        except BaseException:
            self._abort(key, mp)
            raise


def _return_large_buffers_to_the_os() -> None:
    """Part buffers (6 MiB, allocated and freed on many threads) go straight back to the OS.

    glibc raises its mmap threshold each time a large block is freed, after which part buffers
    come from per-thread heaps that keep their pages. With this and buffers handed to the upload
    uncopied, a 2 GiB push's peak server RSS went from 164 to 142 MiB here.
    A fixed threshold (which also turns the adjustment off) keeps every block above it an mmap of
    its own, unmapped when freed. It sits above READ_CHUNK: at 1 MiB every 1 MiB read of a pull was
    a fresh mmap, page-faulted and zeroed by the kernel, and a streamed pull cost 1.5 CPU s/GiB in
    the server; at 4 MiB the read buffers are reused from the heap and it costs 0.7."""
    try:
        libc = ctypes.CDLL(None)
        libc.mallopt(-3, MMAP_THRESHOLD)  # M_MMAP_THRESHOLD
        libc.mallopt(-8, 2)  # M_ARENA_MAX: two heaps, not one per thread that ever held a chunk (8 x cores)
    except (OSError, AttributeError):
        pass


def _segments(state: str) -> list[tuple[str, int]]:
    try:
        raw = json.loads(state or "[]")
        return [(str(t), int(n)) for t, n in raw]
    except (ValueError, TypeError) as e:
        raise ValueError(f"not an S3 upload state: {state[:80]!r}") from e


def _seg_key(base: str, segs: list[tuple[str, int]], i: int) -> str:
    start = sum(n for _, n in segs[:i])
    return f"{base}{start:016d}-{segs[i][0]}"


class _Writer:
    """One request's bytes: a new segment of an upload (`base` set) or a whole blob (`digest` set)."""

    def __init__(self, store: S3BlobStore, base: str | None, segs: list[tuple[str, int]], digest: str | None) -> None:
        self.s = store
        self.base = base
        self.segs = list(segs)
        self.digest = digest
        self._start = sum(n for _, n in segs)  # where this request's segment begins
        self._written = 0
        self._token = secrets.token_hex(6)
        self._buf = bytearray()
        self._mp: str | None = None
        self._key = store._blob_key(digest) if digest is not None else ""
        self._parts: list[Future] = []
        self._in_flight = threading.BoundedSemaphore(IN_FLIGHT)
        self._tail_pending = bool(segs) and segs[-1][1] < MIN_PART  # absorb it on the first write
        self._done = False

    @property
    def size(self) -> int:
        return self._start + self._written

    def read(self, offset: int, length: int) -> bytes:
        assert self.base is not None, "read is for resumed uploads"
        out = []
        seg_start = 0
        for i, (_, n) in enumerate(self.segs):
            lo, hi = max(offset, seg_start), min(offset + length, seg_start + n)
            if lo < hi:
                r = self.s._call("GetObject", self.s.client.get_object, Key=_seg_key(self.base, self.segs, i),
                                 Range=f"bytes={lo - seg_start}-{hi - seg_start - 1}")
                out.append(r["Body"].read())
            seg_start += n
        return b"".join(out)

    def fileno(self) -> int | None:
        return None  # parts go straight to the object store: no local file to follow

    def write(self, data: bytes) -> None:
        if not data:
            return
        if self._tail_pending:
            self._absorb_tail()
        self._written += len(data)
        view = memoryview(data)
        while view:
            if len(self._buf) >= self.s.part_size:  # sent only once more bytes follow: a request of
                self._send_part()  # exactly one part ends as one PutObject, not a multipart upload
            room = self.s.part_size - len(self._buf)
            self._buf += view[:room]
            view = view[room:]

    def _absorb_tail(self) -> None:
        """The last segment is shorter than a part: write it again at the front of this one."""
        assert self.base is not None
        self._tail_pending = False
        token, n = self.segs[-1]
        r = self.s._call("GetObject", self.s.client.get_object, Key=_seg_key(self.base, self.segs, len(self.segs) - 1))
        data = r["Body"].read()
        if len(data) != n:
            raise FileNotFoundError(f"upload segment {token} holds {len(data)} bytes, expected {n}")
        self.segs.pop()
        self._start -= n
        self._written += n
        self._buf += data

    def _segment_key(self) -> str:
        if self.digest is not None:
            return self._key
        assert self.base is not None
        return f"{self.base}{self._start:016d}-{self._token}"

    def _send_part(self) -> None:
        if self._mp is None:
            self._key = self._segment_key()
            self._mp = self.s._call("CreateMultipartUpload", self.s.client.create_multipart_upload,
                                    Key=self._key)["UploadId"]
        data, self._buf = self._buf, bytearray()  # handed over, not copied
        number = len(self._parts) + 1
        self._in_flight.acquire()  # at most IN_FLIGHT parts held while they upload
        failed = [f for f in self._parts if f.done() and f.exception() is not None]
        if failed:
            self._in_flight.release()
            raise failed[0].exception()  # type: ignore[misc]

        def upload() -> dict:
            try:
                r = self.s._call("UploadPart", self.s.client.upload_part, Key=self._key, UploadId=self._mp,
                                 PartNumber=number, Body=data)
                return {"PartNumber": number, "ETag": r["ETag"]}
            finally:
                self._in_flight.release()

        self._parts.append(self.s._parts.submit(upload))

    def _finish(self) -> None:
        """Store what this request wrote as one object (its segment, or the blob for `create`)."""
        if self._mp is None:
            self._key = self._segment_key()
            self.s._call("PutObject", self.s.client.put_object, Key=self._key, Body=self._buf)
            self._buf = bytearray()
            return
        if self._buf:
            self._send_part()
        parts = [f.result() for f in self._parts]
        self.s._call("CompleteMultipartUpload", self.s.client.complete_multipart_upload, Key=self._key,
                     UploadId=self._mp, MultipartUpload={"Parts": parts})
        self._mp = None

    def suspend(self) -> str:
        assert self.digest is None and self.base is not None, "suspend is for resumed uploads"
        try:
            if self._written:
                self._finish()
                self.segs.append((self._token, self._written))
            self._done = True
            return json.dumps(self.segs, separators=(",", ":"))
        except BaseException:
            self.abort()
            raise

    def commit(self, digest: str) -> None:
        try:
            if self.digest is not None:
                if digest != self.digest:
                    raise ValueError(f"commit of {digest} on a writer created for {self.digest}")
                self._finish()
            else:
                assert self.base is not None
                key = self.s._blob_key(digest)
                if self._written:
                    self._finish()
                    self.segs.append((self._token, self._written))
                if self.s.stat(digest) is None:  # a blob already there stays as it is
                    self.s._assemble(self.base, self.segs, key)
                self._done = True
                self.s._drop_prefix(self.base)
            self._done = True
        except BaseException:
            self.abort()
            raise

    def abort(self) -> None:
        if self._done:
            return
        self._done = True
        for f in self._parts:
            try:
                f.result()
            except Exception:  # noqa: BLE001 - we are discarding these parts anyway
                pass
        if self._mp is not None:
            self.s._abort(self._key, self._mp)
            self._mp = None
        self._buf = bytearray()


class _Reader:
    """A ranged GET's body. Past READ_AHEAD_FROM bytes a thread keeps reading ahead (up to
    READ_AHEAD chunks of READ_CHUNK), so the socket from S3 drains while the caller sends."""

    def __init__(self, body: Any, size: int, length: int = 0) -> None:
        self._body = body
        self._size = size
        self._rest = b""
        self._queue: queue.Queue[bytes | BaseException] | None = None
        self._stop = threading.Event()
        if body is not None and length > READ_AHEAD_FROM:
            self._queue = queue.Queue(READ_AHEAD)
            threading.Thread(target=self._pump, name="s3-read", daemon=True).start()

    @property
    def size(self) -> int:
        return self._size

    def _pump(self) -> None:
        assert self._queue is not None
        try:
            while not self._stop.is_set():
                data = self._read_body(READ_CHUNK)
                self._queue.put(data)
                if not data:
                    return
        except BaseException as e:  # noqa: BLE001 - handed to the reader's thread
            if not self._stop.is_set():
                self._queue.put(e)

    def _read_body(self, n: int) -> bytes:
        try:
            return bytes(self._body.read(n))
        except Exception as e:
            raise _translate(e, "GetObject") from e

    def read(self, n: int) -> bytes:
        if self._body is None:
            return b""
        if self._queue is None:
            return self._read_body(n)
        if not self._rest:
            item = self._queue.get()
            if isinstance(item, BaseException):
                raise item
            if not item:
                self._queue.put(item)  # stay at the end
                return b""
            self._rest = item
        out, self._rest = self._rest[:n], self._rest[n:]
        return out

    def close(self) -> None:
        if self._body is None:
            return
        self._stop.set()
        if self._queue is not None:
            while True:  # let a pump blocked on a full queue see the stop
                try:
                    self._queue.get_nowait()
                except queue.Empty:
                    break
        try:
            self._body.close()
        except Exception:  # noqa: BLE001 - closing a body the pump may be reading
            pass
        self._body = None
