"""A read handle on the file a BlobStore writer is writing, so the pull-through cache's readers follow the
one copy being stored instead of a spool copy of it (each byte received once, written once, read once).

This is the storage hook `UploadWriter.fileno() -> int | None` ("the local file being written, or None")
kept outside berth/storage/ for now: the filesystem writer keeps its file in `_fd`; drivers with no local
file (S3) have none, and the cache spools for them. tests/unit/test_pullthrough_fill.py fails if the
filesystem writer stops being followed.
"""

from __future__ import annotations

import os

from berth.storage import UploadWriter


def follow(writer: UploadWriter) -> int | None:
    """A new descriptor of the file `writer` appends to (read it with os.pread; the caller closes it), or None.

    It stays valid whatever the writer does next: after the commit's rename it is the stored blob, after an
    abort an unlinked file (the cache stops its readers before then)."""
    fd = getattr(writer, "_fd", None)
    if not isinstance(fd, int) or fd < 0:
        return None
    return os.dup(fd)
