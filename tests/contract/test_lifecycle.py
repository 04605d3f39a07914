"""Lifecycle contract, on SQLite and on PostgreSQL, through the services: policies stored and refused, one
preview at a time, a preview equal to the run that follows, runs that emit events and record history,
the archive storage class, pull-time exclusions."""

from __future__ import annotations

import json
import uuid
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings

from berth.db import images as qi
from berth.db import jobs as qj
from berth.db import lifecycle as ql
from berth.db import registry as q
from berth.db.events import Event, read_events
from berth.db.jobs import Job
from berth.jobs import JobQueue, tasks
from berth.lifecycle import jobs as lifecycle_jobs
from berth.lifecycle.evaluate import DAY, Image, evaluate
from berth.lifecycle.policy import Policy, PolicyInvalid
from berth.lifecycle.service import (
    ACTIVATE_JOB,
    PREVIEW_JOB,
    ExclusionExists,
    ExclusionNotFound,
    LifecycleService,
    PolicyNotFound,
    PreviewInProgress,
    PreviewNotFound,
    TooManyExclusions,
)
from berth.registry.errors import BlobUnknown, ManifestUnknown
from berth.registry.model import ImageId, Repository
from tests.contract import test_metadata as metadata_contract
from tests.contract.test_concurrency import (
    OCI_INDEX,
    OCI_MANIFEST,
    World,
    at_once,
    digest_of,
    image_manifest,
    index_manifest,
    link,
    run_many,
)
from tests.contract.test_metadata import ACCOUNT, REGION, Harness
from tests.unit import test_lifecycle_evaluate as evaluate_props

db = metadata_contract.db
postgres_url = metadata_contract.postgres_url
sqlite_template = metadata_contract.sqlite_template

NOW = 1_800_000_000.0
SIG = "application/vnd.dev.cosign.artifact.sig.v1+json"


class Clock:
    def __init__(self, t: float) -> None:
        self.t = t

    def __call__(self) -> float:
        return self.t


def text(*rules: dict[str, Any], **top: Any) -> str:
    return json.dumps({"rules": list(rules), **top}).ljust(100)


def untagged_older_than(days: int, priority: int = 1) -> dict[str, Any]:
    return {"rulePriority": priority, "selection": {"tagStatus": "untagged", "countType": "sinceImagePushed",
                                                    "countUnit": "days", "countNumber": days},
            "action": {"type": "expire"}}


def keep_last(prefix: str, n: int, priority: int = 1) -> dict[str, Any]:
    return {"rulePriority": priority, "selection": {"tagStatus": "tagged", "tagPrefixList": [prefix],
                                                    "countType": "imageCountMoreThan", "countNumber": n},
            "action": {"type": "expire"}}


def one(h: Harness, tmp_path: Path, body: Any) -> Any:
    async def single(ws: list[World]) -> Any:
        return await body(ws[0])

    return run_many(h, tmp_path, single, n=1)


async def push(w: World, clock: Clock, repo: Repository, seed: str, tag: str | None, days_ago: float,
               subject: str | None = None) -> str:
    config = digest_of(b"config")
    await link(w, repo.id, config)
    clock.t = NOW - days_ago * DAY
    w.registry.clock = clock
    doc = json.loads(image_manifest(seed, config))
    if subject is not None:
        doc["subject"] = {"mediaType": OCI_MANIFEST, "digest": subject, "size": 10}
        doc["artifactType"] = SIG
    body = json.dumps(doc).encode()
    m = await w.registry.put_manifest(repo, tag or digest_of(body), body, OCI_MANIFEST)
    clock.t = NOW
    return m.digest


def test_policies_are_stored_returned_and_deleted(db: Harness, tmp_path: Path) -> None:
    async def body(w: World) -> None:
        repo = await w.repos.create(ACCOUNT, REGION, "team/app")
        life = LifecycleService(w.db, Clock(NOW))
        with pytest.raises(PolicyNotFound):
            await life.get_policy(repo)
        with pytest.raises(PolicyNotFound):
            await life.delete_policy(repo)
        with pytest.raises(PolicyInvalid):
            await life.put_policy(repo, text(untagged_older_than(0)))
        first = text(untagged_older_than(14))
        assert await life.put_policy(repo, first) == first
        second = text(keep_last("prod", 3))
        await life.put_policy(repo, second)  # replaces
        got = await life.get_policy(repo)
        assert (got.text, got.last_evaluated_at) == (second, None)
        assert (await life.delete_policy(repo)).text == second
        with pytest.raises(PolicyNotFound):
            await life.get_policy(repo)
        await life.put_policy(repo, first)
        await w.repos.delete(ACCOUNT, REGION, "team/app", force=True)  # the policy goes with its repository
        assert await w.db.read(ql.repositories_with_policies, None) == []
        assert await w.db.read(ql.get_policy, repo.id) is None

    one(db, tmp_path, body)


def test_one_preview_at_a_time_and_it_equals_the_run(db: Harness, tmp_path: Path) -> None:
    async def body(ws: list[World]) -> None:
        w = ws[0]
        clock = Clock(NOW)
        repo = await w.repos.create(ACCOUNT, REGION, "team/app")
        old = await push(w, clock, repo, "old", None, 30)
        sig = await push(w, clock, repo, "sig", None, 1, subject=old)
        await push(w, clock, repo, "young", None, 1)
        kept = await push(w, clock, repo, "tagged", "v1", 60)
        lives = [LifecycleService(x.db, clock) for x in ws]
        with pytest.raises(PolicyNotFound):
            await lives[0].start_preview(repo, None)
        with pytest.raises(PreviewNotFound):
            await lives[0].preview(repo)
        await lives[0].put_policy(repo, text(untagged_older_than(14)))
        results = await at_once([life.start_preview(repo, None) for life in lives])
        started = [r for r in results if not isinstance(r, BaseException)]
        assert len(started) == 1, results
        assert all(isinstance(r, PreviewInProgress) for r in results if isinstance(r, BaseException))
        jobs = await w.db.read(qj.list_jobs, None, PREVIEW_JOB, 10)
        assert len(jobs) == 1
        assert (await lives[0].preview(repo)).status == "IN_PROGRESS"
        assert await lives[0].run_preview(repo) == "COMPLETE"
        preview = await lives[0].preview(repo)
        assert preview.status == "COMPLETE" and preview.actions is not None
        assert [(a.digest, a.kind, a.rule_priority) for a in preview.actions] == [(old, "EXPIRE", 1),
                                                                                   (sig, "EXPIRE", 1)]
        await lives[0].start_preview(repo, text(untagged_older_than(100)))  # complete: a new one may start
        mark = (await w.db.read(read_events, 0, 1000))[-1].id
        outcomes = await lives[0].run(repo)
        assert [o.action for o in outcomes] == preview.actions  # the run did what the preview showed
        assert [o.result for o in outcomes] == ["expired", "expired"]
        assert await w.db.read(q.present_manifests, repo.id, [old, sig, kept]) == {kept}
        deleted = [e for e in await w.db.read(read_events, mark, 1000) if e.kind is Event.IMAGE_DELETED]
        assert sorted(e.digest or "" for e in deleted) == sorted([old, sig])
        assert (await lives[0].get_policy(repo)).last_evaluated_at == NOW
        history = await lives[0].history("team/app")
        assert sorted((h.digest, h.action, h.rule_priority) for h in history) == sorted(
            [(old, "EXPIRE", 1), (sig, "EXPIRE", 1)])
        assert await lives[0].run(repo) == []  # nothing left to do

    run_many(db, tmp_path, body, n=4)


def test_preview_statuses_complete_expired_and_failed(db: Harness, tmp_path: Path,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    """COMPLETE for the retention, then EXPIRED (no results) and a new one may start; FAILED when the
    evaluation raises, and when the preview's job ended dead (a worker that died on every attempt): at
    once, not after an hour, and a new preview may start at once."""
    async def body(w: World) -> None:
        clock = Clock(NOW)
        repo = await w.repos.create(ACCOUNT, REGION, "team/app")
        await push(w, clock, repo, "old", None, 30)
        life = LifecycleService(w.db, clock, preview_retention=600)
        await life.put_policy(repo, text(untagged_older_than(14)))
        await life.start_preview(repo, None)
        assert await life.run_preview(repo) == "COMPLETE"
        clock.t = NOW + 599
        assert (await life.preview(repo)).status == "COMPLETE"
        clock.t = NOW + 600
        expired = await life.preview(repo)
        assert (expired.status, expired.actions) == ("EXPIRED", None)
        await life.start_preview(repo, None)  # an expired preview is replaced

        async def broken(*args: Any) -> Any:
            raise RuntimeError("disk on fire")

        with monkeypatch.context() as m:  # fault injection: the evaluation raises
            m.setattr(life, "evaluate", broken)
            assert await life.run_preview(repo) == "FAILED"
        failed = await life.preview(repo)
        assert (failed.status, failed.actions) == ("FAILED", None)
        row = await w.db.read(ql.get_preview, repo.id)
        assert row is not None and row.error == "RuntimeError: disk on fire"

        await life.start_preview(repo, None)  # its job is queued (the evaluation's one is done)
        with pytest.raises(PreviewInProgress):
            await life.start_preview(repo, None)
        [job] = await w.db.write(qj.claim, "w1", clock.t, 30, 10, [PREVIEW_JOB])
        assert (await life.preview(repo)).status == "IN_PROGRESS"  # running: in progress
        assert await w.db.write(qj.fail, "w1", job.id, "killed", clock.t, clock.t, 1) == qj.DEAD
        assert (await life.preview(repo)).status == "FAILED"  # its job is dead: FAILED now
        await life.start_preview(repo, None)
        [job] = await w.db.write(qj.claim, "w1", clock.t, 30, 10, [PREVIEW_JOB])
        assert await w.db.write(qj.fail, "w1", job.id, "killed", clock.t, clock.t, 1) == qj.DEAD
        await life.start_preview(repo, None)  # a preview whose job died is replaced at once, unread
        assert await life.run_preview(repo) == "COMPLETE"
        assert (await life.preview(repo)).status == "COMPLETE"

    one(db, tmp_path, body)


def test_a_run_leaves_an_image_changed_since_the_evaluation(db: Harness, tmp_path: Path) -> None:
    async def body(w: World) -> None:
        clock = Clock(NOW)
        repo = await w.repos.create(ACCOUNT, REGION, "team/app")
        life = LifecycleService(w.db, clock)
        a = await push(w, clock, repo, "a", None, 30)
        await life.put_policy(repo, text(untagged_older_than(14)))
        [action] = await life.evaluate(repo, (await life.policy_of(repo)), NOW)
        await w.registry.put_manifest(repo, "now-tagged", image_manifest("a", digest_of(b"config")), OCI_MANIFEST)
        from berth.lifecycle.service import _apply

        assert await w.db.write(_apply, repo, action, NOW, set()) == "changed"
        assert await w.db.read(q.present_manifests, repo.id, [a]) == {a}

    one(db, tmp_path, body)


def test_indexes_keep_their_children_and_dry_runs_change_nothing(db: Harness, tmp_path: Path) -> None:
    async def body(w: World) -> None:
        clock = Clock(NOW)
        repo = await w.repos.create(ACCOUNT, REGION, "team/multi")
        life = LifecycleService(w.db, clock)
        c1 = await push(w, clock, repo, "c1", None, 30)
        c2 = await push(w, clock, repo, "c2", None, 30)
        body1 = image_manifest("c1", digest_of(b"config"))
        clock.t = NOW - 30 * DAY
        old_index = await w.registry.put_manifest(repo, "old", index_manifest("i1", [(c1, len(body1)), (c2, 10)]),
                                                  OCI_INDEX)
        await w.registry.remove_tag(repo, "old")  # untagged now
        kept_index = await w.registry.put_manifest(repo, "v2", index_manifest("i2", [(c2, 10)]), OCI_INDEX)
        clock.t = NOW
        await life.put_policy(repo, text(untagged_older_than(7)))
        dry = await life.run(repo, dry_run=True)
        assert {o.action.digest: o.result for o in dry} == {old_index.digest: "would expire", c1: "would expire"}
        assert await w.db.read(q.present_manifests, repo.id, [c1, c2, old_index.digest]) == {c1, c2,
                                                                                            old_index.digest}
        done = await life.run(repo)
        assert {o.action.digest: o.result for o in done} == {old_index.digest: "expired", c1: "expired"}
        left = await w.db.read(q.present_manifests, repo.id, [c1, c2, old_index.digest, kept_index.digest])
        assert left == {c2, kept_index.digest}

    one(db, tmp_path, body)


def test_archive_transition_restore_and_the_90_day_minimum(db: Harness, tmp_path: Path) -> None:
    async def body(w: World) -> None:
        clock = Clock(NOW)
        repo = await w.repos.create(ACCOUNT, REGION, "team/cold")
        life = LifecycleService(w.db, clock)
        cold = await push(w, clock, repo, "cold", "v1", 200)
        warm = await push(w, clock, repo, "warm", "v2", 1)
        # archive tagged images pushed 100 days ago; expire archived ones 30 days after (the 90-day minimum holds)
        await life.put_policy(repo, text(
            {"rulePriority": 1, "selection": {"tagStatus": "tagged", "tagPrefixList": ["v"],
                                              "countType": "sinceImagePushed", "countUnit": "days",
                                              "countNumber": 100},
             "action": {"type": "transition", "targetStorageClass": "archive"}},
            {"rulePriority": 2, "selection": {"tagStatus": "any", "storageClass": "archive",
                                              "countType": "sinceImageTransitioned", "countUnit": "days",
                                              "countNumber": 30}, "action": {"type": "expire"}}))
        done = await life.run(repo)
        assert [(o.action.digest, o.result) for o in done] == [(cold, "transitioned")]
        status = await life.statuses(repo, [cold, warm])
        assert status[cold][:2] == ("ARCHIVED", NOW) and status[warm][0] == "ACTIVE"
        clock.t = NOW + 60 * DAY  # past the rule's 30 days, not the archive's 90
        assert await life.run(repo) == []
        clock.t = NOW + 91 * DAY
        assert [(o.action.digest, o.result) for o in await life.run(repo)] == [(cold, "expired")]

        again = await push(w, clock, repo, "again", "v3", 1)
        clock.t = NOW
        assert await life.update_storage_class(repo, again, "ARCHIVE") == "ARCHIVED"
        assert await life.update_storage_class(repo, again, "ARCHIVE") == "ARCHIVED"  # idempotent
        assert await life.update_storage_class(repo, again, "STANDARD") == "ACTIVATING"
        [job] = await w.db.read(qj.list_jobs, None, ACTIVATE_JOB, 10)
        mark = (await w.db.read(read_events, 0, 1000))[-1].id
        await lifecycle_jobs.activate(w.db, life)(job)
        await lifecycle_jobs.activate(w.db, life)(job)  # idempotent
        assert (await life.statuses(repo, [again]))[again][0] == "ACTIVE"
        assert [(e.kind, e.digest) for e in await w.db.read(read_events, mark, 1000)] == [
            (Event.IMAGE_ACTIVATED, again)]
        archived = [e for e in await w.db.read(read_events, 0, 1000) if e.kind is Event.IMAGE_ARCHIVED]
        assert [(e.digest, e.payload) for e in archived] == [(cold, {"rulePriority": 1}), (again, None)]

    one(db, tmp_path, body)


def test_pull_time_exclusions(db: Harness, tmp_path: Path) -> None:
    async def body(w: World) -> None:
        await w.identity.ensure_account(ACCOUNT)
        life = LifecycleService(w.db, Clock(NOW))
        arn = f"arn:aws:iam::{ACCOUNT}:role/scanner"
        assert await life.add_exclusion(ACCOUNT, arn) == NOW
        with pytest.raises(ExclusionExists):
            await life.add_exclusion(ACCOUNT, arn)
        for i in range(99):
            await life.add_exclusion(ACCOUNT, f"arn:aws:iam::{ACCOUNT}:user/u{i:02d}")
        with pytest.raises(TooManyExclusions):
            await life.add_exclusion(ACCOUNT, f"arn:aws:iam::{ACCOUNT}:user/one-too-many")
        assert len(await life.exclusions(ACCOUNT)) == 100
        await life.remove_exclusion(ACCOUNT, arn)
        with pytest.raises(ExclusionNotFound):
            await life.remove_exclusion(ACCOUNT, arn)
        assert await w.db.read(ql.excluded, ACCOUNT, f"arn:aws:iam::{ACCOUNT}:user/u00")

    one(db, tmp_path, body)


def test_archived_images_are_not_pullable_listed_by_status_and_restored_by_a_push(db: Harness,
                                                                                  tmp_path: Path) -> None:
    async def body(w: World) -> None:
        clock = Clock(NOW)
        repo = await w.repos.create(ACCOUNT, REGION, "team/arch")
        life = LifecycleService(w.db, clock)
        layer, shared = digest_of(b"archived layer"), digest_of(b"shared layer")
        await link(w, repo.id, layer, shared, digest_of(b"config"))
        clock.t = NOW - 10 * DAY
        digest = (await w.registry.put_manifest(repo, "v1", image_manifest("arch", digest_of(b"config"),
                                                                           (layer, shared)), OCI_MANIFEST)).digest
        other = (await w.registry.put_manifest(repo, "v2", image_manifest("other", digest_of(b"config"), (shared,)),
                                               OCI_MANIFEST)).digest
        clock.t = NOW
        assert await w.registry.blob_size(repo, layer) == 1
        await life.update_storage_class(repo, digest, "ARCHIVE")
        with pytest.raises(BlobUnknown):  # used only by the archived image
            await w.registry.blob_size(repo, layer)
        assert await w.registry.blob_size(repo, shared) == 1  # an active image uses it too
        for ref in ("v1", digest):
            with pytest.raises(ManifestUnknown):
                await w.registry.get_manifest(repo, ref)
        found, failures = await w.images.get(repo, [ImageId(tag="v1"), ImageId(tag="v2")], None)
        assert [m.digest for _, m in found] == [other]
        assert [(f.image_id, f.code) for f in failures] == [(ImageId(tag="v1"), "ImageInaccessible")]
        assert [v.digest for v in await w.images.list_views(repo, "ANY", "", 10)] == [other]  # ACTIVE by default
        [archived] = await w.images.list_views(repo, "ANY", "", 10, "ARCHIVED")
        assert (archived.digest, archived.status, archived.archived_at) == (digest, "ARCHIVED", NOW)
        assert await w.images.list_ids(repo, "TAGGED", ("", ""), 10, "ARCHIVED") == [(digest, "v1")]
        assert len(await w.images.list_ids(repo, "ANY", ("", ""), 10, "ANY")) == 2
        [described] = await w.images.describe(repo, [ImageId(digest)])  # named: shown whatever its status
        assert described.status == "ARCHIVED"

        await w.registry.put_manifest(repo, "v1", image_manifest("arch", digest_of(b"config"), (layer, shared)),
                                      OCI_MANIFEST)
        assert (await w.registry.get_manifest(repo, "v1")).digest == digest  # a re-push restores it
        assert await w.registry.blob_size(repo, layer) == 1
        assert (await life.statuses(repo, [digest]))[digest][0] == "ACTIVE"

    one(db, tmp_path, body)


def _job(payload: dict[str, Any]) -> Job:
    return Job(1, "registry.pull_time", None, payload, "running", 1, 5, NOW, None, None, None, NOW, NOW)


def test_pull_time_is_refreshed_daily_and_not_for_excluded_principals(db: Harness, tmp_path: Path) -> None:
    async def body(w: World) -> None:
        clock = Clock(NOW)
        await w.identity.ensure_account(ACCOUNT)
        repo = await w.repos.create(ACCOUNT, REGION, "team/pulls")
        life = LifecycleService(w.db, clock)
        digest = await push(w, clock, repo, "p", "v1", 10)
        record = tasks.record_pull_time(w.db)

        async def pulled() -> float | None:
            [v] = await w.images.describe(repo, [ImageId(digest)])
            return v.last_pulled_at

        def pull(at: float, principal: str | None = None) -> dict[str, Any]:
            return {"account": ACCOUNT, "region": REGION, "repository": "team/pulls", "digest": digest, "at": at,
                    **({"principal": principal} if principal else {})}

        await record(_job(pull(NOW)))
        assert await pulled() == NOW
        await record(_job(pull(NOW + 23 * 3600)))  # within a day: not refreshed
        assert await pulled() == NOW
        await record(_job(pull(NOW + DAY)))
        assert await pulled() == NOW + DAY

        scanner = f"arn:aws:iam::{ACCOUNT}:role/scanner"
        await life.add_exclusion(ACCOUNT, scanner)
        await record(_job(pull(NOW + 3 * DAY, scanner)))
        await record(_job(pull(NOW + 3 * DAY, f"arn:aws:sts::{ACCOUNT}:assumed-role/scanner/session-1")))
        assert await pulled() == NOW + DAY  # the excluded role, directly or as a session, changes nothing
        await record(_job(pull(NOW + 3 * DAY, f"arn:aws:iam::{ACCOUNT}:user/dev")))
        assert await pulled() == NOW + 3 * DAY

    one(db, tmp_path, body)


# preview == applied, on the real backends, for random repositories and policies

@settings(max_examples=12, suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(images=evaluate_props.repositories(), pol=evaluate_props.policies())
def test_the_preview_is_what_the_run_does(db: Harness, tmp_path: Path, images: list[Image], pol: Policy) -> None:
    name = f"prop/{uuid.uuid4().hex[:10]}"
    now = evaluate_props.NOW
    policy_text = json.dumps(_policy_doc(pol)).ljust(100)

    async def body(w: World) -> None:
        clock = Clock(now)
        w.registry.clock = clock
        repo = await w.repos.create(ACCOUNT, REGION, name)
        life = LifecycleService(w.db, clock)
        config = digest_of(b"config")
        await link(w, repo.id, config)
        real: dict[str, str] = {}
        for i in images:
            clock.t = i.pushed_at
            if i.children:
                doc = json.loads(index_manifest(i.digest, [(real[c], 10) for c in i.children]))
                media = OCI_INDEX
            else:
                doc = json.loads(image_manifest(i.digest, config))
                if i.subject is not None:
                    doc["subject"] = {"mediaType": OCI_MANIFEST, "digest": real[i.subject], "size": 10}
                media = OCI_MANIFEST
            data = json.dumps(doc).encode()
            refs = list(i.tags) or [digest_of(data)]
            for ref in refs:
                real[i.digest] = (await w.registry.put_manifest(repo, ref, data, media)).digest
            if i.last_pulled_at is not None:
                await w.db.write(qi.record_pulls, [(ACCOUNT, REGION, name, real[i.digest], i.last_pulled_at)])
            if i.status != "ACTIVE":
                await w.db.write(ql.set_status, repo.id, real[i.digest], i.status,
                                 i.archived_at if i.archived_at is not None else now)
        clock.t = now
        await life.put_policy(repo, policy_text)
        snapshot = await w.db.read(ql.snapshot, repo.id)
        model = [Image(r.digest, r.tags, r.pushed_at, r.last_pulled_at, r.status, r.archived_at, r.children, r.subject)
                 for r in snapshot]
        await life.start_preview(repo, None)
        assert await life.run_preview(repo) == "COMPLETE"
        preview = await life.preview(repo)
        assert preview.actions == evaluate(model, pol, now)
        outcomes = await life.run(repo)
        assert [o.action for o in outcomes] == preview.actions
        assert all(o.result in ("expired", "transitioned") for o in outcomes), outcomes
        left = {r.digest: r.status for r in await w.db.read(ql.snapshot, repo.id)}
        assert left == {i.digest: i.status for i in evaluate_props.apply(model, preview.actions)}

    one(db, tmp_path, body)


def _policy_doc(pol: Policy) -> dict[str, Any]:
    """The document a parsed policy came from (enough of it to parse back to the same rules)."""
    rules = []
    for r in pol.rules:
        s = r.selection
        sel: dict[str, Any] = {"tagStatus": s.tag_status, "countType": s.count_type, "countNumber": s.count_number}
        if s.count_unit:
            sel["countUnit"] = s.count_unit
        for key, values in (("tagPrefixList", s.prefixes), ("tagPatternList", s.patterns),
                            ("tagRegexList", s.regexes)):
            if values:
                sel[key] = list(values)
        if s.storage_class != "standard":
            sel["storageClass"] = s.storage_class
        action: dict[str, Any] = {"type": r.action}
        if r.target_storage_class:
            action["targetStorageClass"] = r.target_storage_class
        rules.append({"rulePriority": r.priority, "selection": sel, "action": action})
    doc: dict[str, Any] = {"rules": rules}
    if pol.protect_pulled_within_days is not None:
        doc["protectPulledWithinDays"] = pol.protect_pulled_within_days
    return doc


def test_the_periodic_job_runs_every_repository_with_a_policy(db: Harness, tmp_path: Path) -> None:
    async def body(w: World) -> None:
        clock = Clock(NOW)
        life = LifecycleService(w.db, clock)
        queue = JobQueue(w.db, clock)
        repos = [await w.repos.create(ACCOUNT, REGION, f"team/sched-{i}") for i in range(3)]
        old = [await push(w, clock, r, f"old-{r.name}", None, 30) for r in repos]
        for r in repos[:2]:
            await life.put_policy(r, text(untagged_older_than(7)))
        await lifecycle_jobs.schedule(life, queue)(_job({}))
        await lifecycle_jobs.schedule(life, queue)(_job({}))  # again before they ran: coalesced
        runs = await w.db.read(qj.list_jobs, None, lifecycle_jobs.RUN_JOB, 10)
        assert sorted(j.payload["repository"] for j in runs) == ["team/sched-0", "team/sched-1"]
        for j in runs:
            await lifecycle_jobs.run_repository(w.db, life)(j)
            await lifecycle_jobs.run_repository(w.db, life)(j)  # idempotent
        assert [await w.db.read(q.present_manifests, r.id, [d]) for r, d in zip(repos, old, strict=True)] == [
            set(), set(), {old[2]}]
        assert {h.repository for h in await life.history()} == {"team/sched-0", "team/sched-1"}

    one(db, tmp_path, body)


def test_concurrent_runs_act_on_each_image_once(db: Harness, tmp_path: Path) -> None:
    async def body(ws: list[World]) -> None:
        w = ws[0]
        clock = Clock(NOW)
        repo = await w.repos.create(ACCOUNT, REGION, "team/race")
        old = [await push(w, clock, repo, f"old-{i}", None, 30) for i in range(12)]
        kept = await push(w, clock, repo, "kept", "v1", 30)
        lives = [LifecycleService(x.db, clock) for x in ws]
        await lives[0].put_policy(repo, text(untagged_older_than(7)))
        results = await at_once([life.run(repo) for life in lives])
        assert not [r for r in results if isinstance(r, BaseException)], results
        for digest in old:  # exactly one run expired it; the others found it gone (or changed under them)
            outcomes = [o.result for r in results for o in r if o.action.digest == digest]
            assert outcomes.count("expired") == 1, (digest, outcomes)
        history = await lives[0].history("team/race", 1000)
        assert sorted(h.digest for h in history) == sorted(old)  # one history row per image
        deleted = [e for e in await w.db.read(read_events, 0, 10_000) if e.kind is Event.IMAGE_DELETED]
        assert sorted(e.digest or "" for e in deleted) == sorted(old)  # one event per image
        assert await w.db.read(q.present_manifests, repo.id, [*old, kept]) == {kept}

    run_many(db, tmp_path, body, n=4)
