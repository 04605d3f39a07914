"""Counts for /metrics (berth/observe): upload sessions open, blobs and bytes stored. Reads only."""

from __future__ import annotations

from dataclasses import dataclass

from berth.db.store import Q, Txn


@dataclass(frozen=True, slots=True)
class StoreCounts:
    uploads_open: int  # sessions not ended (tombstones have size -1)
    blobs: int
    blob_bytes: int


def store_counts() -> Txn[StoreCounts]:
    uploads = yield Q("SELECT COUNT(*) FROM uploads WHERE size >= 0", (), "one")
    blobs = yield Q("SELECT COUNT(*), COALESCE(SUM(size), 0) FROM blobs", (), "one")
    return StoreCounts(int(uploads[0]), int(blobs[0]), int(blobs[1]))
