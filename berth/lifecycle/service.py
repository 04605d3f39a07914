"""Lifecycle policies as a service: store, preview and run them; the archive storage class.

The preview (a job) and the run (a job per repository, or `berth lifecycle run`) both read the repository
snapshot and call berth.lifecycle.evaluate.evaluate with the clock: the preview shows exactly what a run
at that moment does. A run applies each action in a transaction that first re-checks the image,
locked (still there, same tags, same storage class, same push), so an image re-tagged or re-pushed since
the evaluation is left alone; an expiry is berth.registry.changes.delete_image (BatchDeleteImage's change,
with its IMAGE_DELETED event) and its history row, committed together. Actions are committed APPLY_BATCH
at a time (each still re-checked on its own).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Any

from berth.db import archive as qa
from berth.db import jobs as qj
from berth.db import lifecycle as ql
from berth.db import registry as q
from berth.db.events import Event, append_event
from berth.db.registry import DeleteOutcome
from berth.db.store import Backend, Txn
from berth.errors import DomainError
from berth.lifecycle.evaluate import ACTIVATING, ACTIVE, ARCHIVED, Action, Image, evaluate
from berth.lifecycle.policy import Policy, PolicyInvalid, parse
from berth.registry import changes
from berth.registry.model import Repository

log = logging.getLogger("berth.lifecycle")

PREVIEW_JOB = "lifecycle.preview"  # one repository's preview
RUN_JOB = "lifecycle.run"  # one repository's run
SCHEDULE_JOB = "lifecycle.schedule"  # periodic: a run job for every repository with a policy
ACTIVATE_JOB = "lifecycle.activate"  # an image restored from the archive becomes ACTIVE
DEFAULT_INTERVAL = 24 * 3600.0  # ECR evaluates policies about once a day
PREVIEW_RETENTION = 24 * 3600.0  # a COMPLETE preview's results are readable this long, then EXPIRED
APPLY_BATCH = 100  # actions per transaction of a run: short enough not to hold other writers long
MAX_EXCLUSIONS = 100


PLACE_JOB = qa.PLACE_JOB  # berth/lifecycle/archive.py: one blob moved to the store where it belongs


class BlobsInArchive(Exception):
    """An image being restored still has blobs in the archive store: its activation is retried."""


class LifecycleError(DomainError):
    code = "LIFECYCLE"


class PolicyNotFound(LifecycleError):
    code = "POLICY_NOT_FOUND"


class PreviewNotFound(LifecycleError):
    code = "PREVIEW_NOT_FOUND"


class PreviewInProgress(LifecycleError):
    code = "PREVIEW_IN_PROGRESS"


class ImageNotFound(LifecycleError):
    code = "IMAGE_NOT_FOUND"


class StorageClassUpdateRefused(LifecycleError):
    code = "STORAGE_CLASS_UPDATE_REFUSED"


class ExclusionExists(LifecycleError):
    code = "EXCLUSION_EXISTS"


class ExclusionNotFound(LifecycleError):
    code = "EXCLUSION_NOT_FOUND"


class TooManyExclusions(LifecycleError):
    code = "TOO_MANY_EXCLUSIONS"


__all__ = ["Action", "LifecycleService", "PolicyInvalid"]


@dataclass(frozen=True, slots=True)
class PolicyView:
    text: str
    last_evaluated_at: float | None


@dataclass(frozen=True, slots=True)
class PreviewView:
    text: str
    status: str
    actions: list[Action] | None  # when COMPLETE


@dataclass(frozen=True, slots=True)
class Outcome:
    repository: str
    action: Action
    result: str  # expired | transitioned | would expire | would transition | changed | gone | referenced


@dataclass(frozen=True, slots=True)
class HistoryEntry:
    repository: str
    digest: str
    tags: tuple[str, ...]
    rule_priority: int
    action: str
    at: float


def _image(r: ql.SnapshotRow) -> Image:
    return Image(r.digest, r.tags, r.pushed_at, r.last_pulled_at, r.status, r.archived_at, r.children, r.subject)


def _action_dict(a: Action) -> dict[str, Any]:
    d = asdict(a)
    d["tags"] = list(a.tags)
    return d


def _action(d: dict[str, Any]) -> Action:
    return Action(d["digest"], d["kind"], int(d["rule_priority"]), tuple(d["tags"]), float(d["pushed_at"]),
                  d["storage_class"], d.get("target_storage_class"), d.get("referrer_of"))


def _wanted_status(a: Action) -> str:
    return ARCHIVED if a.storage_class == "ARCHIVE" else ACTIVE


def _apply(repo: Repository, a: Action, now: float, cascaded: set[str], place: bool = False) -> Txn[str]:
    """One action, in one transaction, on the image as evaluated (else nothing: 'changed' or 'gone').

    Expiring a subject deletes its referrers with it (RegistryService's delete); their digests go into
    `cascaded`, and a referrer's own expiry found gone that way is recorded as done."""
    current = yield from ql.lock_image(repo.id, a.digest)
    if current is None:
        if a.kind == "EXPIRE" and a.digest in cascaded:
            yield from ql.record_action(repo.account_id, repo.region, repo.name, a.digest, a.tags, a.rule_priority,
                                        a.kind, now)
            return "expired"
        return "gone"
    status, pushed_at, tags = current
    if status != _wanted_status(a) or tags != a.tags or pushed_at != a.pushed_at:
        return "changed"
    if a.kind == "EXPIRE":
        d = yield from changes.delete_image(repo, a.digest, now)
        if d.outcome is DeleteOutcome.REFERENCED:
            return "referenced"
        if d.outcome is not DeleteOutcome.DELETED:
            return "gone"
        cascaded.update(d.referrers)
        result = "expired"
    else:
        yield from _archived(repo, a.digest, now, a.rule_priority, place)
        result = "transitioned"
    yield from ql.record_action(repo.account_id, repo.region, repo.name, a.digest, a.tags, a.rule_priority, a.kind,
                                now)
    return result


def _apply_many(repo: Repository, actions: list[Action], now: float, cascaded: frozenset[str],
                place: bool = False) -> Txn[tuple[list[str], set[str]]]:
    """Up to APPLY_BATCH actions in one transaction (one commit, one fsync), each re-checked as in _apply;
    with the referrers deleted with their subjects so far (a retried transaction starts from `cascaded` again)."""
    out, deleted = [], set(cascaded)
    for a in actions:
        out.append((yield from _apply(repo, a, now, deleted, place)))
    return out, deleted


def _preview_key(repo: Repository) -> str:
    return f"lifecycle-preview/{repo.id}"


def _start_preview(repo: Repository, text: str, now: float) -> Txn[bool]:
    started = yield from ql.start_preview(repo.id, text, now, PREVIEW_JOB, _preview_key(repo))
    if started:
        yield from qj.enqueue(PREVIEW_JOB, {"account": repo.account_id, "region": repo.region,
                                            "repository": repo.name}, now, key=_preview_key(repo))
    return started


def _settle_preview(repo: Repository, started_at: float, now: float) -> Txn[bool]:
    """A preview still IN_PROGRESS whose job has ended (dead, or done without recording it) is FAILED."""
    if (yield from ql.job_live(PREVIEW_JOB, _preview_key(repo))):
        return False
    done: bool = yield from ql.finish_preview(repo.id, started_at, ql.FAILED, None,
                                              "the preview's job ended without a result", now)
    return done


def _archived(repo: Repository, digest: str, now: float, rule_priority: int | None = None,
              place: bool = False) -> Txn[None]:
    """ARCHIVED; with an archive store (`place`), a placement job per blob of the image (berth/lifecycle/archive.py
    moves those that only archived images use)."""
    yield from ql.set_status(repo.id, digest, ARCHIVED, now)
    yield from append_event(Event.IMAGE_ARCHIVED, repo.account_id, repo.region, repo.name, now, digest,
                            payload={"rulePriority": rule_priority} if rule_priority is not None else None)
    if place:
        yield from qa.queue_places((yield from qa.image_blobs(repo.id, digest)), now)


def _activate(repo: Repository, digest: str, now: float, check_archive: bool = False) -> Txn[bool]:
    rows = yield from ql.statuses(repo.id, [digest])
    if rows.get(digest, ("",))[0] != ACTIVATING:
        return False
    if check_archive and (yield from qa.in_archive((yield from qa.image_blobs(repo.id, digest)))):
        raise BlobsInArchive(f"image {digest}: blobs still in the archive store")
    yield from ql.set_status(repo.id, digest, ACTIVE, now)
    yield from append_event(Event.IMAGE_ACTIVATED, repo.account_id, repo.region, repo.name, now, digest)
    return True


def _restore(repo: Repository, digest: str, now: float) -> Txn[str | None]:
    """ARCHIVED -> ACTIVATING (and the job that activates it); the status after, None if no such image. Asked
    again while ACTIVATING, the job is queued again (coalesced with a live one; one that died is replaced)."""
    rows = yield from ql.statuses(repo.id, [digest])
    if digest not in rows:
        return None
    status = rows[digest][0]
    if status in (ARCHIVED, ACTIVATING):
        if status == ARCHIVED:
            yield from ql.set_status(repo.id, digest, ACTIVATING, now)
        yield from qj.enqueue(ACTIVATE_JOB, {"account": repo.account_id, "region": repo.region,
                                             "repository": repo.name, "digest": digest}, now,
                              key=f"lifecycle-activate/{repo.id}/{digest}")
        return ACTIVATING
    return status


def _archive(repo: Repository, digest: str, now: float, place: bool = False) -> Txn[str | None]:
    rows = yield from ql.statuses(repo.id, [digest])
    if digest not in rows:
        return None
    status = rows[digest][0]
    if status == ACTIVE:
        yield from _archived(repo, digest, now, None, place)
        return ARCHIVED
    return status


class LifecycleService:
    def __init__(self, db: Backend, clock: Callable[[], float] = time.time,
                 preview_retention: float = PREVIEW_RETENTION, archive_store: bool = False) -> None:
        self.db = db
        self.clock = clock
        self.preview_retention = preview_retention
        self.archive_store = archive_store  # an archive store is configured: archiving moves blobs there

    # policies

    async def put_policy(self, repo: Repository, text: str) -> str:
        parse(text)  # PolicyInvalid
        if not await self.db.write(ql.put_policy, repo.id, text, self.clock()):
            raise PolicyNotFound(f"The repository with name '{repo.name}' does not exist")
        return text

    async def get_policy(self, repo: Repository) -> PolicyView:
        row = await self.db.read(ql.get_policy, repo.id)
        if row is None:
            raise PolicyNotFound(_no_policy(repo))
        return PolicyView(row.text, row.last_evaluated_at)

    async def delete_policy(self, repo: Repository) -> PolicyView:
        row = await self.db.write(ql.delete_policy, repo.id)
        if row is None:
            raise PolicyNotFound(_no_policy(repo))
        return PolicyView(row.text, row.last_evaluated_at)

    async def policy_of(self, repo: Repository) -> Policy:
        return parse((await self.get_policy(repo)).text)

    # evaluation

    async def evaluate(self, repo: Repository, policy: Policy, now: float) -> list[Action]:
        rows = await self.db.read(ql.snapshot, repo.id)
        return evaluate([_image(r) for r in rows], policy, now)

    # previews

    async def start_preview(self, repo: Repository, text: str | None) -> PreviewView:
        if text is None:
            text = (await self.get_policy(repo)).text
        parse(text)
        if not await self.db.write(_start_preview, repo, text, self.clock()):
            raise PreviewInProgress("Previous lifecycle policy preview request has not completed. Please try again "
                                    "later.")
        return PreviewView(text, ql.IN_PROGRESS, None)

    async def preview(self, repo: Repository) -> PreviewView:
        """The repository's preview, as ECR tells it: IN_PROGRESS; COMPLETE with its results for
        `preview_retention` after it finished, then EXPIRED (no results); FAILED when its evaluation raised
        or its job ended without a result (a dead job: its worker died on every attempt)."""
        row = await self.db.read(ql.get_preview, repo.id)
        if row is None:
            raise PreviewNotFound(f"There is no lifecycle policy preview for the repository with name '{repo.name}' "
                                  f"in the registry with id '{repo.account_id}'")
        now = self.clock()
        if row.status == ql.IN_PROGRESS and not await self.db.read(ql.job_live, PREVIEW_JOB, _preview_key(repo)) \
                and await self.db.write(_settle_preview, repo, row.started_at, now):  # a write only when it died
            return PreviewView(row.text, ql.FAILED, None)
        if row.status == ql.COMPLETE and (row.finished_at or row.started_at) + self.preview_retention <= now:
            return PreviewView(row.text, ql.EXPIRED, None)
        actions = None if row.results is None else [_action(d) for d in row.results]
        return PreviewView(row.text, row.status, actions)

    async def run_preview(self, repo: Repository) -> str | None:
        """Evaluate the repository's preview in progress and record the result; its status, None if none.
        An evaluation that raises ends the preview FAILED (with the error), not retried: it would raise again."""
        row = await self.db.read(ql.get_preview, repo.id)
        if row is None or row.status != ql.IN_PROGRESS:
            return None
        try:
            actions = await self.evaluate(repo, parse(row.text), self.clock())
        except PolicyInvalid as e:
            await self.db.write(ql.finish_preview, repo.id, row.started_at, ql.FAILED, None, e.reason, self.clock())
            return ql.FAILED
        except Exception as e:  # noqa: BLE001 - any failure of the evaluation is the preview's FAILED
            log.exception("lifecycle preview of %s/%s/%s failed", repo.account_id, repo.region, repo.name)
            await self.db.write(ql.finish_preview, repo.id, row.started_at, ql.FAILED, None,
                                f"{type(e).__name__}: {e}"[:1000], self.clock())
            return ql.FAILED
        await self.db.write(ql.finish_preview, repo.id, row.started_at, ql.COMPLETE,
                            [_action_dict(a) for a in actions], None, self.clock())
        return ql.COMPLETE

    # runs

    async def run(self, repo: Repository, dry_run: bool = False) -> list[Outcome]:
        """Evaluate the repository's policy now and apply it (or, dry, say what it would do)."""
        row = await self.db.read(ql.get_policy, repo.id)
        if row is None:
            return []
        now = self.clock()
        actions = await self.evaluate(repo, parse(row.text), now)
        if dry_run:
            return [Outcome(repo.name, a, f"would {a.kind.lower()}") for a in actions]
        results: dict[str, str] = {}
        cascaded: frozenset[str] = frozenset()
        pending = list(actions)
        while pending:  # an index before its children: a child refused while listed is tried again after
            retry = []
            for i in range(0, len(pending), APPLY_BATCH):
                batch = pending[i:i + APPLY_BATCH]
                applied, deleted = await self.db.write(_apply_many, repo, batch, now, cascaded, self.archive_store)
                cascaded = frozenset(deleted)
                for a, result in zip(batch, applied, strict=True):
                    results[a.digest] = result
                    if result == "referenced":
                        retry.append(a)
            if len(retry) == len(pending):
                break
            pending = retry
        await self.db.write(ql.mark_evaluated, repo.id, now)
        done = [Outcome(repo.name, a, results[a.digest]) for a in actions]
        if actions:
            log.info("lifecycle %s/%s/%s: %d actions (%d applied)", repo.account_id, repo.region, repo.name,
                     len(actions), sum(o.result in ("expired", "transitioned") for o in done))
        return done

    async def repositories(self, name: str | None = None) -> list[Repository]:
        out = []
        for p in await self.db.read(ql.repositories_with_policies, name):
            row = await self.db.read(q.get_repository, p.account_id, p.region, p.name)
            if row is not None:
                out.append(Repository.from_row(row))
        return out

    async def run_all(self, name: str | None = None, dry_run: bool = False) -> list[Outcome]:
        out: list[Outcome] = []
        for repo in await self.repositories(name):
            out += await self.run(repo, dry_run)
        return out

    async def history(self, repository: str | None = None, limit: int = 100) -> list[HistoryEntry]:
        rows = await self.db.read(ql.history, None, None, repository, limit)
        return [HistoryEntry(r.repository, r.digest, r.tags, r.rule_priority, r.action, r.at) for r in rows]

    # the archive storage class

    async def update_storage_class(self, repo: Repository, digest: str, target: str) -> str:
        """UpdateImageStorageClass: ARCHIVE archives an active image; STANDARD restores an archived one
        (ACTIVATING, then ACTIVE once the activation job ran). The image's status after."""
        if target == "ARCHIVE":
            status = await self.db.write(_archive, repo, digest, self.clock(), self.archive_store)
        else:
            status = await self.db.write(_restore, repo, digest, self.clock())
        if status is None:
            raise ImageNotFound(f"The image with imageId {{imageDigest:'{digest}'}} does not exist within the "
                                f"repository with name '{repo.name}' in the registry with id '{repo.account_id}'")
        if target == "ARCHIVE" and status == ACTIVATING:
            raise StorageClassUpdateRefused("The image is being restored from the archive; try again when it is "
                                            "ACTIVE")
        return status

    async def activate(self, repo: Repository, digest: str) -> bool:
        """ACTIVATING -> ACTIVE (the activation job); False if the image is not being restored."""
        return await self.db.write(_activate, repo, digest, self.clock(), self.archive_store)

    async def statuses(self, repo: Repository, digests: list[str]) -> dict[str, tuple[str, float | None, float | None]]:
        return await self.db.read(ql.statuses, repo.id, digests)

    # pull-time exclusions

    async def add_exclusion(self, account: str, principal: str) -> float:
        now = self.clock()
        outcome = await self.db.write(ql.add_exclusion, account, principal, now, MAX_EXCLUSIONS)
        if outcome == "exists":
            raise ExclusionExists(f"The principal '{principal}' is already excluded from pull time updates")
        if outcome == "full":
            raise TooManyExclusions(f"The registry already has {MAX_EXCLUSIONS} pull time update exclusions")
        return now

    async def remove_exclusion(self, account: str, principal: str) -> None:
        if not await self.db.write(ql.remove_exclusion, account, principal):
            raise ExclusionNotFound(f"The principal '{principal}' is not excluded from pull time updates")

    async def exclusions(self, account: str) -> list[tuple[str, float]]:
        return await self.db.read(ql.exclusions, account)


def _no_policy(repo: Repository) -> str:
    return (f"Lifecycle policy does not exist for the repository with name '{repo.name}' in the registry with id "
            f"'{repo.account_id}'")
