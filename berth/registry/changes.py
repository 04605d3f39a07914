"""Every change to the registry's content, with the event that records it, in one transaction.

The services write content only through these, so a push, a tag move, a delete, a repository
created or deleted appends its event row (berth/db/events.py) beside the change whichever face
asked for it (OCI /v2 or the ECR API): the event exists if and only if the change committed.
Later capabilities enqueue their jobs here too (scan on push, replication, webhooks), in the same
transaction, so no job refers to a change that did not commit.

Event rules:
- IMAGE_PUSHED for a push that stored something new (the manifest, or where its tag points);
  pushing the same manifest under the same tag again changes nothing and records nothing.
- TAG_MOVED as well when the push moved an existing tag off another manifest (`previousDigest`).
- IMAGE_DELETED for an image deleted (with the tags it had), and for each referrer deleted with it
  (`subject`); TAG_DELETED for a tag removed whose
  image stays.
- REPOSITORY_CREATED (CreateRepository, or create-on-push) and REPOSITORY_DELETED (its images go
  with it; no event per image).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from berth.db import registry as q
from berth.db import repositories as qr
from berth.db.events import Event, append_event
from berth.db.registry import Created, DeleteOutcome, Deletion, NewManifest, PutOutcome, PutResult, RepoRow
from berth.db.repositories import RepoChange, RepoOutcome
from berth.db.store import Txn
from berth.registry.model import Repository
from berth.replication import outbox
from berth.scanning.onpush import on_push


def push(repo: Repository, m: NewManifest, tag: str | None, locked: bool, now: float,
         only_new: bool, replicate: bool = True) -> Txn[PutResult]:
    """`replicate` False: a copy made by replication itself (not transitive: no replication jobs)."""
    result = yield from q.put_manifest(repo.id, m, tag, locked, now, only_new)
    if result.outcome is PutOutcome.STORED and result.changed:
        yield from append_event(Event.IMAGE_PUSHED, repo.account_id, repo.region, repo.name, now, m.digest, tag,
                                {"mediaType": m.media_type, "artifactType": m.artifact_type})
        if replicate:
            yield from outbox.on_push(repo.account_id, repo.region, repo.name, m.digest, tag, now,
                                      m.subject_digest is not None)
        if result.previous is not None:
            yield from append_event(Event.TAG_MOVED, repo.account_id, repo.region, repo.name, now, m.digest, tag,
                                    {"previousDigest": result.previous})
        yield from on_push(repo.id, repo.account_id, repo.region, repo.name, repo.scan_on_push, m.digest,
                           m.media_type, m.artifact_type, tag, now)
    return result


def _deleted(repo: Repository, d: Deletion, now: float, replicate: bool = True) -> Txn[Deletion]:
    if d.outcome is DeleteOutcome.DELETED:
        yield from append_event(Event.IMAGE_DELETED, repo.account_id, repo.region, repo.name, now, d.digest,
                                payload={"tags": list(d.tags)})
        for referrer in d.referrers:  # deleted with their subject
            yield from append_event(Event.IMAGE_DELETED, repo.account_id, repo.region, repo.name, now, referrer,
                                    payload={"tags": [], "subject": d.digest})
    elif d.outcome is DeleteOutcome.UNTAGGED:
        yield from append_event(Event.TAG_DELETED, repo.account_id, repo.region, repo.name, now, d.digest,
                                d.tags[0] if d.tags else None)
    if replicate and d.outcome in (DeleteOutcome.DELETED, DeleteOutcome.UNTAGGED):
        yield from outbox.on_delete(repo.account_id, repo.region, repo.name, d.digest, d.tags,
                                    d.outcome is DeleteOutcome.DELETED, now)
    return d


def delete_image(repo: Repository, digest: str, now: float, replicate: bool = True) -> Txn[Deletion]:
    d = yield from q.delete_image(repo.id, digest)
    return (yield from _deleted(repo, d, now, replicate))


def remove_tag(repo: Repository, tag: str, expected: str | None, last_takes_image: bool,
               now: float, replicate: bool = True) -> Txn[Deletion]:
    d = yield from q.remove_tag(repo.id, tag, expected, last_takes_image)
    return (yield from _deleted(repo, d, now, replicate))


def create_repository(account: str, region: str, name: str, now: float) -> Txn[Created]:
    """Create-on-push and RegistryService.create_repository: default settings."""
    created = yield from q.create_repository(account, region, name, now)
    if created.created:
        yield from append_event(Event.REPOSITORY_CREATED, account, region, name, now)
    return created


def create_with_tags(account: str, region: str, name: str, now: float, tag_mutability: str,
                     exclusion_filters: Sequence[Mapping[str, str]], scan_on_push: bool,
                     encryption: Mapping[str, str], tags: Sequence[tuple[str, str]]) -> Txn[RepoRow | None]:
    """CreateRepository with its settings; None (nothing written, no event) if it exists."""
    repo = yield from qr.create_with_tags(account, region, name, now, tag_mutability, exclusion_filters,
                                          scan_on_push, encryption, tags)
    if repo is not None:
        yield from append_event(Event.REPOSITORY_CREATED, account, region, name, now)
    return repo


def delete_repository(account: str, region: str, name: str, force: bool, now: float) -> Txn[RepoChange]:
    change = yield from qr.delete_repository(account, region, name, force)
    if change.outcome is RepoOutcome.DONE:
        yield from append_event(Event.REPOSITORY_DELETED, account, region, name, now, payload={"force": force})
    return change
