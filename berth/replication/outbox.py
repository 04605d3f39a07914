"""The replication side of a change, in the change's own transaction (berth/registry/changes.py calls these):
a push that stored something enqueues one copy job per destination and marks the image IN_PROGRESS there;
a delete, where a rule asks for it (deleteReplication), one delete job per destination.

One read of the registry's configuration per change (its primary key); nothing when there is none.
A copy made by replication does not come through here: replication is not transitive.
"""

from __future__ import annotations

from collections.abc import Sequence

from berth.db import jobs as qj
from berth.db import replication as q
from berth.db.store import Txn
from berth.replication.rules import Configuration, Destination

COPY_JOB = "replication.copy"
DELETE_JOB = "replication.delete"
BACKFILL_JOB = "replication.backfill"
# A destination that is down is retried for about an hour: 1 s doubling to 60 s, 60 attempts (app.py registers it).
MAX_ATTEMPTS, BACKOFF, MAX_BACKOFF = 60, 1.0, 60.0


def copy_key(account: str, region: str, repository: str, digest: str, dest: Destination) -> str:
    return f"{account}/{region}/{repository}@{digest}>{dest.key()}"


def enqueue_copies(account: str, region: str, repository: str, digest: str, tag: str | None,
                   destinations: Sequence[Destination], now: float, backfill: str | None = None) -> Txn[int]:
    """Queue the copy of one image to each destination (coalesced per image and destination); how many."""
    for dest in destinations:
        yield from q.set_status(account, region, repository, digest, dest.registry_id, dest.region, q.IN_PROGRESS,
                                None, now)
        payload = {"account": account, "region": region, "repository": repository, "digest": digest, "tag": tag,
                   "destAccount": dest.registry_id, "destRegion": dest.region}
        if backfill is not None:
            payload["backfill"] = backfill
        yield from qj.enqueue(COPY_JOB, payload, now, key=copy_key(account, region, repository, digest, dest))
    return len(destinations)


def on_push(account: str, region: str, repository: str, digest: str, tag: str | None, now: float,
            referrer: bool = False) -> Txn[int]:
    text = yield from q.get_config(account, region)
    if text is None:
        return 0
    dests = Configuration.from_json(text).destinations_for(repository, tag, referrer)
    return (yield from enqueue_copies(account, region, repository, digest, tag, dests, now))


def on_delete(account: str, region: str, repository: str, digest: str | None, tags: Sequence[str],
              image_deleted: bool, now: float) -> Txn[int]:
    """An image (with `tags`) deleted, or only a tag removed: the same at each delete-replicating destination."""
    text = yield from q.get_config(account, region)
    if text is None or digest is None:
        return 0
    dests = Configuration.from_json(text).deletes_to(repository)
    for dest in dests:
        payload = {"account": account, "region": region, "repository": repository, "digest": digest,
                   "tags": list(tags), "image": image_deleted, "destAccount": dest.registry_id,
                   "destRegion": dest.region}
        yield from qj.enqueue(DELETE_JOB, payload, now)
    return len(dests)
