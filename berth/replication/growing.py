"""A read handle on the file a BlobStore writer is writing, so the pull-through cache's readers follow the
one copy being stored instead of a spool copy of it (each byte received once, written once, read once).
A store with no local file (S3: `UploadWriter.fileno()` is None) gets a spool copy from the cache instead.
"""

from __future__ import annotations

import os

from berth.storage import UploadWriter


def follow(writer: UploadWriter) -> int | None:
    """A new descriptor of the file `writer` appends to (read it with os.pread; the caller closes it), or None.

    It stays valid whatever the writer does next: after the commit's rename it is the stored blob, after an
    abort an unlinked file (the cache stops its readers before then)."""
    fd = writer.fileno()
    return None if fd is None else os.dup(fd)
