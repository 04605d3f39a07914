"""Events: one row per change to the registry's content, appended in the transaction that makes it.

`append_event` is meant to be `yield from`-ed inside the operation that changes the content (the same
transaction: the event exists if and only if the change committed). Readers follow `id` order.
On PostgreSQL ids are taken when a row is inserted, not when it commits, so a reader that remembers
the last id it saw must allow for a lower id committing later (re-read a short window behind it).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from berth.db.store import Q, Txn


class Event(StrEnum):
    IMAGE_PUSHED = "image.pushed"  # a manifest committed (with the tag it was pushed with, if any)
    TAG_MOVED = "tag.moved"  # an existing tag now names another manifest
    TAG_DELETED = "tag.deleted"  # a tag removed, its manifest kept (OCI DELETE by tag)
    IMAGE_DELETED = "image.deleted"
    REPOSITORY_CREATED = "repository.created"
    REPOSITORY_DELETED = "repository.deleted"
    IMAGE_ARCHIVED = "image.archived"  # moved to the archive storage class (lifecycle, UpdateImageStorageClass)
    IMAGE_ACTIVATED = "image.activated"  # restored from the archive: pullable again
    IMAGE_SCANNED = "image.scanned"  # a scan finished (payload: status, severity counts)
    SCAN_FINDINGS_CHANGED = "image.scan.findings"  # re-matching found findings appear or disappear


@dataclass(frozen=True, slots=True)
class EventRow:
    id: int
    created_at: float
    account_id: str
    region: str
    repository: str
    kind: Event
    digest: str | None
    tag: str | None
    payload: dict[str, Any] | None


def append_event(kind: Event, account: str, region: str, repository: str, now: float, digest: str | None = None,
                 tag: str | None = None, payload: Mapping[str, Any] | None = None) -> Txn[int]:
    """Append one event; its id. `yield from` it inside the change's own transaction."""
    text = None if payload is None else json.dumps(payload, separators=(",", ":"), sort_keys=True)
    row = yield Q("INSERT INTO events (created_at, account_id, region, repository, kind, digest, tag, payload) "
                  "VALUES (?, ?, ?, ?, ?, ?, ?, ?) RETURNING id",
                  (now, account, region, repository, kind.value, digest, tag, text), "one")
    return int(row[0])


def read_events(after: int = 0, limit: int = 100, account: str | None = None,
                region: str | None = None) -> Txn[list[EventRow]]:
    """Events with id > `after`, in id order (of one account and region, when given)."""
    where = "id > ?"
    params: list[Any] = [after]
    if account is not None and region is not None:
        where += " AND account_id = ? AND region = ?"
        params += [account, region]
    rows = yield Q("SELECT id, created_at, account_id, region, repository, kind, digest, tag, payload FROM events "
                   f"WHERE {where} ORDER BY id LIMIT ?", (*params, limit), "all")
    return [EventRow(int(r[0]), float(r[1]), r[2], r[3], r[4], Event(r[5]), r[6], r[7],
                     None if r[8] is None else json.loads(r[8])) for r in rows]
