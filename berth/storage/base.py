"""The BlobStore port: content-addressed blobs, and uploads that any process or node can continue.

Shaped for what both a filesystem and an object store do well: no append, no rename, no reading
of an unfinished upload on the hot path. Every method blocks; callers run them on worker threads,
and a driver must accept concurrent calls from several threads (one writer or reader is used by
one thread at a time).

Names: digests reach a driver already validated (``algorithm:hex``); upload ids are
``[A-Za-z0-9_-]{8,128}``. A driver still refuses (ValueError) anything that could escape its
root. A missing blob, or an upload whose stored bytes are gone, is FileNotFoundError.

Uploads. The registry keeps each upload's row: its committed size and the driver's *state*, an
opaque string the driver hands back after every write (e.g. an S3 multipart upload id and the
parts list so far; "" on the filesystem). Only one writer holds an upload at a time (the registry
claims the committed size in the database before calling `resume`), so a driver never arbitrates
between writers. The registry hashes the bytes as they stream through; when it does not hold an
upload's hash state (another process wrote the previous part) it reads the stored bytes back with
`UploadWriter.read` and rehashes them.

A blob whose digest is known up front (a monolithic PUT) is written with `create`: an object store
may write straight to the final key (multipart or a checksummed PUT) and abort on a mismatch.
"""

from __future__ import annotations

from collections.abc import Container, Iterable
from dataclasses import dataclass
from typing import Protocol


class StorageUnavailable(OSError):
    """The backing store cannot be reached or refuses this request (credentials, bucket, a 5xx).

    Not the client's fault and not a missing blob (that is FileNotFoundError): the registry answers
    it as "try again later" (OCI 503, AWS ServiceUnavailable) and records nothing as stored."""


@dataclass(frozen=True, slots=True)
class BlobInfo:
    digest: str
    size: int


class UploadWriter(Protocol):
    """One request's bytes, appended to an upload (from `resume`) or to a new blob (from `create`).

    Ends with exactly one of `suspend`, `commit` or `abort`; `abort` after either of the others
    does nothing, so callers may always call it in a `finally`.
    """

    @property
    def size(self) -> int:
        """Bytes in the upload so far: the committed size it was resumed at plus what was written."""

    def read(self, offset: int, length: int) -> bytes:
        """Up to `length` stored bytes from `offset`, below the size the writer was resumed at.

        Called only to rehash an upload another process wrote; may be slow on object storage.
        """

    def write(self, data: bytes) -> None:
        """Append `data`. A driver may buffer (e.g. up to an S3 part); nothing is promised yet."""

    def fileno(self) -> int | None:
        """The descriptor of the local file being written (a reader may follow it with pread: it holds every
        byte written so far), or None for a driver with no local file (object storage). The writer owns it:
        dup it to keep it past `commit` or `abort`."""

    def suspend(self) -> str:
        """End this request, keeping the bytes; the new state for the upload's row.

        When it returns, `resume(upload_id, new_state, self.size)` works from any process or node.
        The bytes need not survive power loss (a 202 is not a promise of durability); if they did
        not, that `resume` raises FileNotFoundError. Object stores keep a tail shorter than a part
        (S3: 5 MiB) as a small object of its own until the next write or the commit. Not valid on
        a `create` writer.
        """

    def commit(self, digest: str) -> None:
        """Make every byte of the upload the blob `digest` (the caller has verified the digest).

        Durable when it returns: the blob is readable at its content address and survives a crash
        (what makes a 201 true). A blob already stored under `digest` is left as it is (same bytes).
        The upload's storage (parts, tail, temporary object) is gone afterwards; a later `cancel`
        of it is harmless. On failure the blob is absent or whole, never partial.
        """

    def abort(self) -> None:
        """Drop what this writer wrote. A resumed upload stays as it was at `resume` (its state is
        still valid); a `create` writer leaves nothing behind. Idempotent; never raises for absence."""


class BlobReader(Protocol):
    """A range of one blob, read in order (one ranged GET on S3, pread on a file)."""

    @property
    def size(self) -> int:
        """The whole blob's size (not the range's)."""

    def read(self, n: int) -> bytes:
        """Up to `n` next bytes of the range; b"" at its end. Short reads may happen anywhere."""

    def close(self) -> None:
        """Release the reader. Idempotent."""


class BlobStore(Protocol):
    # uploads

    def begin(self, upload_id: str) -> str:
        """Start an upload in storage; its initial state, for `resume(upload_id, state, 0)`.

        The registry calls it on the worker thread of the first request that brings bytes, just
        before that `resume` (a POST stores nothing anywhere). A writer that dies after `begin`
        may leave its storage unrecorded: the next writer calls `begin` again, and `cancel` must
        still find both. May store nothing (the filesystem's stores nothing until the first write)."""

    def resume(self, upload_id: str, state: str, size: int) -> UploadWriter:
        """A writer appending at `size`, the upload's committed size, with `state` the state the
        write that reached it returned. Bytes stored past `size` by a writer that failed or was
        killed are discarded. FileNotFoundError when fewer than `size` bytes are stored (the upload
        was lost: cancelled, purged, or not yet written back when the machine crashed)."""

    def create(self, digest: str) -> UploadWriter:
        """A writer for one blob whose digest is known up front (a monolithic upload).

        Its `commit(digest)` is as for an upload; its `abort` (a mismatch, a dropped client) leaves
        nothing, neither at the final key nor as a temporary object or incomplete multipart upload.
        Until `commit` returns, readers of `digest` never see the new bytes, and a blob already
        stored under `digest` stays readable throughout.
        """

    def cancel(self, upload_id: str, state: str) -> None:
        """Delete everything stored for the upload (any state it ever had). Idempotent: absence is
        not an error, and cancelling a committed upload leaves the blob alone."""

    def purge_uploads(self, before: float, live: Container[str]) -> int:
        """Delete the storage of uploads not in `live` and not touched since `before` (a Unix time):
        uploads whose row was never written or is gone, `create` writers of a process that died.
        Returns how many were deleted. Never touches finished blobs."""

    # blobs

    def open(self, digest: str, start: int = 0, end: int | None = None) -> BlobReader:
        """A reader of bytes [start, end) of the blob (end None: to the end; clipped at the end).
        FileNotFoundError when the blob is absent."""

    def stat(self, digest: str) -> int | None:
        """The blob's size, or None when absent."""

    def delete(self, digests: Iterable[str]) -> None:
        """Delete the blobs (S3: batched, 1,000 per request). Absent ones are not an error. When it
        returns none of them is readable. Uploads in progress are not affected."""

    def walk(self, after: str = "", limit: int = 1000) -> list[BlobInfo]:
        """Up to `limit` stored blobs with digests greater than `after`, in digest (string) order:
        page through all blobs for garbage collection by passing the last digest of each page."""

    def local_path(self, digest: str, size: int) -> str | None:
        """The path of a file on this machine holding the whole blob, for a server that sends files
        itself (granian's pathsend); None when the blob is absent, its file is not `size` bytes (damaged
        outside Berth: the streamed read then fails and reports it) or the driver keeps no local files.
        The file is never partial: it appears by an atomic rename, so one that exists is the blob."""

    def url_for(self, digest: str, expires: int) -> str | None:
        """A URL a client may GET the blob from directly for `expires` seconds (a presigned URL),
        or None when the driver has none (the filesystem); the registry then streams the blob."""

