"""Replication contract, on SQLite and PostgreSQL, in-process (no worker: the tests run the jobs themselves).

- a push enqueues its copy jobs in its own transaction, one per destination, keyed per image and
  destination (a second push of the same image coalesces), and a registry without a configuration
  enqueues nothing;
- a copy is idempotent: the same job run twice at once, from two processes, gives one image with its tags;
- a back-fill: PREPARING -> STOPPED when stopped before it prepares; IN_PROGRESS -> STOPPING -> STOPPED
  when stopped with copies queued; COMPLETE when its copies are done.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from berth.db import jobs as qj
from berth.db.jobs import Job
from berth.db.store import Q
from berth.replication import outbox
from berth.replication.rules import Destination
from berth.replication.service import ReplicationService, Replicator
from tests.contract import test_metadata as metadata_contract
from tests.contract.test_concurrency import OCI_MANIFEST, World, at_once, digest_of, image_manifest, link, run_many
from tests.contract.test_metadata import ACCOUNT, REGION, Harness

db = metadata_contract.db
postgres_url = metadata_contract.postgres_url
sqlite_template = metadata_contract.sqlite_template

WEST = Destination("us-west-2", ACCOUNT)
EU = Destination("eu-west-1", ACCOUNT)


def rules(*dests: Destination, prefix: str | None = None) -> dict[str, Any]:
    rule: dict[str, Any] = {"destinations": [{"region": d.region, "registryId": d.registry_id} for d in dests]}
    if prefix:
        rule["repositoryFilters"] = [{"filter": prefix, "filterType": "PREFIX_MATCH"}]
    return {"rules": [rule]}


async def queued(w: World, kind: str = outbox.COPY_JOB) -> list[Job]:
    return [j for j in await w.db.read(qj.list_jobs, "queued", kind, 1000)]


async def push(w: World, name: str, seed: str, tag: str | None) -> str:
    repo, _ = await w.registry.create_repository(ACCOUNT, REGION, name)
    config = digest_of(f"config-{seed}".encode())
    layer = digest_of(f"layer-{seed}".encode())
    await link(w, repo.id, config, layer)
    body = image_manifest(seed, config, (layer,))
    m = await w.registry.put_manifest(repo, tag or digest_of(body), body, OCI_MANIFEST)
    return m.digest


def replicator(w: World) -> Replicator:
    return Replicator(w.db, w.registry, ("us-east-1", "us-west-2", "eu-west-1"))


def test_a_push_enqueues_one_copy_per_destination_in_its_transaction(db: Harness, tmp_path: Path) -> None:
    async def body(ws: list[World]) -> None:
        w = ws[0]
        await push(w, "prod/before", "0", "v1")
        assert await queued(w) == []  # no configuration: nothing
        service = ReplicationService(w.db)
        await service.put_configuration(ACCOUNT, REGION, rules(WEST, EU, prefix="prod/"))
        digest = await push(w, "prod/app", "1", "v1")
        await push(w, "dev/app", "2", "v1")  # outside the filter
        jobs = await queued(w)
        assert sorted(j.key for j in jobs) == sorted(
            f"{ACCOUNT}/{REGION}/prod/app@{digest}>{d.key()}" for d in (WEST, EU))
        assert {j.payload["destRegion"] for j in jobs} == {"us-west-2", "eu-west-1"}
        repo = await w.registry.repository(ACCOUNT, REGION, "prod/app")
        assert [(s.dest_region, s.status) for s in await service.statuses(repo, digest)] == \
            [("eu-west-1", "IN_PROGRESS"), ("us-west-2", "IN_PROGRESS")]
        # the same image under another tag: coalesced into the live jobs, newest payload
        await w.registry.put_manifest(repo, "v2", image_manifest("1", digest_of(b"config-1"),
                                                                 (digest_of(b"layer-1"),)), OCI_MANIFEST)
        again = await queued(w)
        assert sorted(j.id for j in again) == sorted(j.id for j in jobs)
        assert {j.payload["tag"] for j in again} == {"v2"}

    run_many(db, tmp_path, body, n=1)


def test_the_same_copy_twice_at_once_gives_one_image_with_its_tags(db: Harness, tmp_path: Path) -> None:
    async def body(ws: list[World]) -> None:
        await ReplicationService(ws[0].db).put_configuration(ACCOUNT, REGION, rules(WEST))
        digest = await push(ws[0], "team/app", "x", "v1")
        src = await ws[0].registry.repository(ACCOUNT, REGION, "team/app")
        await ws[0].registry.put_manifest(src, "latest", (await ws[0].registry.get_manifest(src, digest)).body,
                                          OCI_MANIFEST)
        results = await at_once([replicator(w).copy(ACCOUNT, REGION, "team/app", digest, WEST) for w in ws[:2]])
        for r in results:
            assert not isinstance(r, BaseException), r
        dst = await ws[0].registry.repository(ACCOUNT, "us-west-2", "team/app")
        assert (await ws[0].registry.get_manifest(dst, "v1")).digest == digest
        assert sorted(await ws[0].registry.list_tags(dst, "", None)) == ["latest", "v1"]
        # the copy shares the blobs: linked to the destination, one blob row each
        rows = await ws[0].db.read(lambda: (yield Q("SELECT COUNT(*) FROM blobs", (), "one")))
        assert int(rows[0]) == 2
        again = await replicator(ws[0]).copy(ACCOUNT, REGION, "team/app", digest, WEST)
        assert again.manifests == 0  # already there: nothing written

    run_many(db, tmp_path, body, n=2)


def test_backfill_states(db: Harness, tmp_path: Path) -> None:
    async def body(ws: list[World]) -> None:
        w = ws[0]
        service = ReplicationService(w.db)
        digests = [await push(w, "legacy/app", str(i), f"v{i}") for i in range(3)]
        await service.put_configuration(ACCOUNT, REGION, rules(WEST))
        # stopped before it prepared: STOPPED, nothing queued
        running, first = await service.start_backfill(ACCOUNT, REGION, WEST)
        assert running is None and first.status == "PREPARING"
        again, _ = await service.start_backfill(ACCOUNT, REGION, WEST)
        assert again == first.id  # one at a time per destination
        stopped = await service.stop_backfill(ACCOUNT, REGION, first.id)
        assert stopped is not None and stopped.status == "STOPPED" and stopped.ended_at is not None
        prepare = [j for j in await queued(w, outbox.BACKFILL_JOB) if j.payload["id"] == first.id]
        await replicator(w).run_backfill(prepare[0])
        assert await queued(w) == []
        # prepared, then stopped with its copies queued: STOPPING until they finish, then STOPPED
        _, second = await service.start_backfill(ACCOUNT, REGION, WEST)
        prepare = [j for j in await queued(w, outbox.BACKFILL_JOB) if j.payload["id"] == second.id]
        await replicator(w).run_backfill(prepare[0])
        row = await service.backfill(ACCOUNT, REGION, second.id)
        assert row is not None and (row.status, row.total, row.completed) == ("IN_PROGRESS", 3, 0)
        row = await service.stop_backfill(ACCOUNT, REGION, second.id)
        assert row is not None and row.status == "STOPPING"
        copies = await queued(w)
        assert sorted(j.payload["digest"] for j in copies) == sorted(digests)
        for job in copies:
            await replicator(w).run_copy(job)
        row = await service.backfill(ACCOUNT, REGION, second.id)
        assert row is not None and (row.status, row.completed, row.failed) == ("STOPPED", 3, 0)
        # a third runs to COMPLETE
        _, third = await service.start_backfill(ACCOUNT, REGION, WEST)
        prepare = [j for j in await queued(w, outbox.BACKFILL_JOB) if j.payload["id"] == third.id]
        await replicator(w).run_backfill(prepare[0])
        for job in await queued(w):
            await replicator(w).run_copy(job)
        row = await service.backfill(ACCOUNT, REGION, third.id)
        assert row is not None and (row.status, row.total, row.completed) == ("COMPLETE", 3, 3)
        listed = await service.backfills(ACCOUNT, REGION, None, 10)
        assert [b.id for b in listed] == [third.id, second.id, first.id]

    run_many(db, tmp_path, body, n=1)
