"""The BlobStore port: content-addressed blobs plus in-progress uploads.

Methods are blocking; callers run them in worker threads. Digests reach a driver already
validated (``algorithm:hex``); drivers still refuse anything that could escape their root.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Protocol


class UploadWriter(Protocol):
    def write(self, data: bytes) -> None: ...
    def close(self, sync: bool = False) -> None:
        """Close; with sync=True the data is durable when this returns."""


class BlobStore(Protocol):
    # finished blobs
    def stat(self, digest: str) -> int | None:
        """Size of the blob, or None when absent."""

    def read(self, digest: str, offset: int, length: int) -> bytes:
        """Up to `length` bytes from `offset` (short only at the end of the blob)."""

    def delete(self, digest: str) -> bool: ...

    def digests(self) -> Iterator[str]: ...

    # uploads in progress
    def upload_create(self, upload_id: str) -> None: ...

    def upload_size(self, upload_id: str) -> int | None:
        """Bytes received so far, or None when the upload does not exist."""

    def upload_open(self, upload_id: str, offset: int) -> UploadWriter:
        """A writer appending at `offset`; anything past `offset` is discarded first."""

    def upload_read(self, upload_id: str, offset: int, length: int) -> bytes: ...

    def upload_commit(self, upload_id: str, digest: str) -> None:
        """Make the upload's bytes durable and atomically the blob `digest`, then drop the upload."""

    def upload_delete(self, upload_id: str) -> None: ...

    def uploads(self) -> Iterator[tuple[str, float]]:
        """(upload id, last modification time) for every upload in progress."""
