"""The jobs queue and events on every backend: the outbox rolls back with its transaction, unique keys
coalesce, leases, backoff to dead, periodic schedules, and the in-process worker loop."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

import pytest

from berth.db import jobs as q
from berth.db.events import Event, append_event, read_events
from berth.db.store import Backend, Q, Txn
from berth.jobs import Handlers, Job, JobQueue, NewJob, Retry, Worker
from tests.contract import test_metadata as metadata_contract
from tests.contract.test_metadata import Harness

NOW = 1_700_000_000.0
ACCOUNT, REGION = "123456789012", "us-east-1"
Body = Callable[[Backend], Awaitable[Any]]


# the backend fixtures of the metadata contract: every test here runs on SQLite and on PostgreSQL
db = metadata_contract.db
postgres_url = metadata_contract.postgres_url
sqlite_template = metadata_contract.sqlite_template


class Boom(Exception):
    pass


def _change_then(fail: bool) -> Txn[int]:
    """A stand-in for a registry operation: a change, its job and its event in one transaction."""
    yield Q("INSERT INTO repositories (account_id, region, name, created_at) VALUES (?, ?, ?, ?)",
            (ACCOUNT, REGION, "team/app", NOW))
    job_id = yield from q.enqueue("scan", {"repository": "team/app"}, NOW, key="team/app")
    yield from append_event(Event.REPOSITORY_CREATED, ACCOUNT, REGION, "team/app", NOW)
    if fail:
        raise Boom("the operation fails after enqueueing")
    return job_id


def test_enqueue_and_event_roll_back_with_their_transaction(db: Harness) -> None:
    async def body(db: Backend) -> None:
        with pytest.raises(Boom):
            await db.write(_change_then, True)
        assert await db.read(q.list_jobs) == []
        assert await db.read(read_events) == []
        assert await db.read(q.stats) == []
        job_id = await db.write(_change_then, False)
        [job] = await db.read(q.list_jobs)
        assert (job.id, job.kind, job.key, job.payload, job.state) == (job_id, "scan", "team/app",
                                                                      {"repository": "team/app"}, "queued")
        [event] = await db.read(read_events)
        assert (event.kind, event.repository, event.digest, event.tag) == (Event.REPOSITORY_CREATED, "team/app",
                                                                           None, None)

    db.run(body)


def test_events_in_id_order_with_payload(db: Harness) -> None:
    async def body(db: Backend) -> None:
        d = "sha256:" + "a" * 64
        ids = [await db.write(append_event, Event.IMAGE_PUSHED, ACCOUNT, REGION, "r", NOW, d, "v1", {"size": 3}),
               await db.write(append_event, Event.TAG_MOVED, ACCOUNT, REGION, "r", NOW + 1, d, "latest"),
               await db.write(append_event, Event.IMAGE_DELETED, "210987654321", REGION, "r", NOW + 2, d)]
        assert ids == sorted(ids)
        events = await db.read(read_events)
        assert [e.kind for e in events] == [Event.IMAGE_PUSHED, Event.TAG_MOVED, Event.IMAGE_DELETED]
        assert events[0].payload == {"size": 3} and events[0].tag == "v1" and events[1].payload is None
        assert [e.id for e in await db.read(read_events, ids[0])] == ids[1:]
        assert [e.id for e in await db.read(read_events, 0, 100, ACCOUNT, REGION)] == ids[:2]

    db.run(body)


def test_unique_keys_coalesce_into_the_live_job(db: Harness) -> None:
    async def body(db: Backend) -> None:
        a = await db.write(q.enqueue, "pull", {"at": 1}, NOW, "img", NOW + 50)
        b = await db.write(q.enqueue, "pull", {"at": 2}, NOW + 1, "img", NOW + 10)
        c = await db.write(q.enqueue, "pull", {"at": 3}, NOW + 2, "img", NOW + 30)
        other = await db.write(q.enqueue, "misc", {"at": 9}, NOW, "other-img")
        unkeyed = [await db.write(q.enqueue, "misc", {}, NOW) for _ in range(2)]
        assert a == b == c and len({a, other, *unkeyed}) == 4
        job = await db.read(q.get_job, a)
        assert job.payload == {"at": 3}  # the newest payload wins
        assert job.run_at == NOW + 10  # the earliest run_at wins
        # running: a new enqueue marks it to run again with the new payload, never a second live row
        [claimed] = await db.write(q.claim, "w1", NOW + 10, 30, 1, ["pull"])
        assert claimed.id == a
        assert await db.write(q.enqueue, "pull", {"at": 4}, NOW + 11, "img") == a
        assert await db.write(q.complete, "w1", [a], NOW + 12) == 1
        job = await db.read(q.get_job, a)
        assert (job.state, job.payload, job.attempts) == ("queued", {"at": 4}, 0)
        [again] = await db.write(q.claim, "w1", NOW + 13, 30, 5, ["pull"])
        assert again.id == a and again.payload == {"at": 4}
        await db.write(q.complete, "w1", [a], NOW + 14)
        assert (await db.read(q.get_job, a)).state == "done"
        # once finished, the same key queues a new job
        fresh = await db.write(q.enqueue, "pull", {"at": 5}, NOW + 15, "img")
        assert fresh != a and (await db.read(q.get_job, fresh)).state == "queued"
        assert await db.write(q.enqueue, "push", {}, NOW, "img") != fresh  # keys are per kind

    db.run(body)


def test_outbox_many_enqueue_in_one_transaction(db: Harness) -> None:
    async def body(db: Backend) -> None:
        ids = await db.write(q.enqueue_many, [NewJob("k", {"n": i}, key=str(i % 3)) for i in range(7)], NOW)
        assert len(set(ids)) == 3
        assert sorted(j.payload["n"] for j in await db.read(q.list_jobs)) == [4, 5, 6]

    db.run(body)


def test_claim_honours_run_at_kinds_and_leases(db: Harness) -> None:
    async def body(db: Backend) -> None:
        soon = await db.write(q.enqueue, "k", {}, NOW)
        later = await db.write(q.enqueue, "k", {}, NOW, None, NOW + 100)
        elsewhere = await db.write(q.enqueue, "other", {}, NOW)
        assert await db.read(q.any_due, NOW, ["k"])
        assert not await db.read(q.any_due, NOW - 1, ["k"])
        [a] = await db.write(q.claim, "w1", NOW, 10, 10, ["k"])
        assert (a.id, a.state, a.attempts, a.lease_owner, a.lease_until) == (soon, "running", 1, "w1", NOW + 10)
        assert await db.write(q.claim, "w2", NOW + 1, 10, 10, ["k"]) == []  # leased; `later` not due
        assert not await db.read(q.any_due, NOW + 1, ["k"])
        assert [j.id for j in await db.write(q.claim, "w2", NOW + 1, 10, 10, None)] == [elsewhere]
        assert await db.write(q.heartbeat, "w1", [soon], NOW + 5, 10) == 1  # now leased until NOW + 15
        assert await db.write(q.heartbeat, "w2", [soon], NOW + 5, 10) == 0  # not its job
        assert await db.write(q.reap, NOW + 10) == 0
        assert await db.write(q.reap, NOW + 16) == 2  # w1's and w2's leases both ran out
        job = await db.read(q.get_job, soon)
        assert job.state == "queued" and job.attempts == 1 and "lease expired (worker w1 lost)" in job.last_error
        [b] = await db.write(q.claim, "w2", NOW + 17, 10, 10, ["k"])
        assert (b.id, b.attempts) == (soon, 2)
        assert await db.write(q.complete, "w1", [soon], NOW + 18) == 0  # a lost lease cannot complete
        assert await db.write(q.complete, "w2", [soon], NOW + 18) == 1
        [c] = await db.write(q.claim, "w2", NOW + 100, 10, 10, ["k"])
        assert c.id == later
        assert await db.write(q.release, "w2", NOW + 101) == 1
        job = await db.read(q.get_job, later)
        assert (job.state, job.attempts, job.lease_owner) == ("queued", 0, None)

    db.run(body)


def test_fail_backs_off_then_dead_then_retry(db: Harness) -> None:
    async def body(db: Backend) -> None:
        job_id = await db.write(q.enqueue, "k", {}, NOW, "key")
        t = NOW
        for attempt in (1, 2):
            [job] = await db.write(q.claim, "w", t, 10, 1)
            assert job.attempts == attempt
            assert await db.write(q.fail, "w", job_id, f"error {attempt}", t, t + 5, 3) == "queued"
            assert await db.write(q.claim, "w", t + 4, 10, 1) == []  # backing off
            t += 5
        [job] = await db.write(q.claim, "w", t, 10, 1)
        assert await db.write(q.fail, "other", job_id, "not mine", t, t + 5, 3) is None
        assert await db.write(q.fail, "w", job_id, "error 3", t, t + 5, 3) == "dead"
        job = await db.read(q.get_job, job_id)
        assert (job.state, job.attempts, job.max_attempts, job.last_error) == ("dead", 3, 3, "error 3")
        assert await db.write(q.claim, "w", t + 1000, 10, 1) == []
        twin = await db.write(q.enqueue, "k", {}, t, "key")  # a dead job does not hold its key
        assert twin != job_id
        assert await db.write(q.retry, job_id, t) is Retry.DUPLICATE
        assert await db.write(q.retry, twin, t) is Retry.LIVE
        assert await db.write(q.retry, 999_999, t) is Retry.UNKNOWN
        [claimed] = await db.write(q.claim, "w", t, 10, 1)
        await db.write(q.complete, "w", [claimed.id], t)
        assert await db.write(q.retry, job_id, t + 1) is Retry.QUEUED
        job = await db.read(q.get_job, job_id)
        assert (job.state, job.attempts, job.run_at, job.last_error) == ("queued", 0, t + 1, "error 3")

    db.run(body)


def test_periodic_tick_one_winner_per_interval(db: Harness) -> None:
    async def body(db: Backend) -> None:
        await db.write(q.ensure_periodic, [("gc", 60.0), ("purge", 10.0)], NOW)
        await db.write(q.ensure_periodic, [("gc", 60.0)], NOW + 5)  # a second node: nothing moves
        assert await db.read(q.next_periodic, ["gc", "purge"]) == NOW
        results = await asyncio.gather(*(db.write(q.tick_periodic, f"n{i}", ["gc", "purge"], NOW + 1)
                                         for i in range(3)))
        assert sorted(k for r in results for k in r) == ["gc", "purge"]
        assert await db.write(q.tick_periodic, "n0", ["gc", "purge"], NOW + 5) == []
        assert await db.write(q.tick_periodic, "n0", ["gc", "purge"], NOW + 11) == ["purge"]
        # the earlier purge job is still queued: the new run coalesced into it
        assert sorted(j.kind for j in await db.read(q.list_jobs)) == ["gc", "purge"]
        assert await db.read(q.next_periodic, ["gc"]) == NOW + 61
        await db.write(q.ensure_periodic, [("gc", 20.0)], NOW + 12)  # a shorter interval takes effect
        assert await db.read(q.next_periodic, ["gc"]) == NOW + 32

    db.run(body)


def test_stats_list_and_prune(db: Harness) -> None:
    async def body(db: Backend) -> None:
        queue = JobQueue(db, clock=lambda: NOW)
        for i in range(3):
            await queue.enqueue("a", {"i": i})
        await queue.enqueue("b", {})
        [j] = await db.write(q.claim, "w", NOW, 10, 1, ["b"])
        await db.write(q.complete, "w", [j.id], NOW)
        stats = {s.kind: s for s in await queue.stats()}
        assert stats["a"].counts == {"queued": 3} and stats["a"].oldest_queued == NOW
        assert stats["b"].counts == {"done": 1} and stats["b"].oldest_queued is None
        assert [x.payload["i"] for x in await queue.list_jobs(kind="a")] == [2, 1, 0]
        assert [x.kind for x in await queue.list_jobs(state="done")] == ["b"]
        assert len(await queue.list_jobs(limit=2)) == 2
        assert await JobQueue(db, clock=lambda: NOW + 3600).prune() == 0
        assert await JobQueue(db, clock=lambda: NOW + 25 * 3600).prune() == 1
        assert [s.kind for s in await queue.stats()] == ["a"]

    db.run(body)


# the worker loop, in this process

def test_worker_runs_jobs_and_a_failing_handler_ends_dead(db: Harness) -> None:
    async def body(db: Backend) -> None:
        seen: list[tuple[int, int]] = []

        async def ok(job: Job) -> None:
            seen.append((job.payload["n"], job.attempts))
            await asyncio.sleep(0.01)

        async def broken(job: Job) -> None:
            seen.append((-1, job.attempts))
            raise RuntimeError(f"broken on attempt {job.attempts}")

        handlers = Handlers()
        handlers.register("ok", ok)
        handlers.register("broken", broken, max_attempts=4, backoff=0.05)
        queue = JobQueue(db)
        await queue.enqueue_many([NewJob("ok", {"n": n}) for n in range(20)])
        bad = await queue.enqueue("broken", {})
        worker = Worker(db, handlers, concurrency=4, lease=5, poll_min=0.01, poll_max=0.05)
        await worker.start()
        try:
            for _ in range(400):
                job = await queue.get(bad)
                if job is not None and job.state == "dead" and not await queue.list_jobs(state="queued"):
                    break
                await asyncio.sleep(0.02)
        finally:
            await worker.stop()
        assert sorted(n for n, _ in seen if n >= 0) == list(range(20))  # each ran once
        assert [a for n, a in seen if n < 0] == [1, 2, 3, 4]
        job = await queue.get(bad)
        assert job is not None
        assert (job.state, job.attempts, job.last_error) == ("dead", 4, "RuntimeError: broken on attempt 4")
        stats = {s.kind: s.counts for s in await queue.stats()}
        assert stats == {"ok": {"done": 20}, "broken": {"dead": 1}}

    db.run(body)


def test_worker_stop_releases_running_jobs(db: Harness) -> None:
    async def body(db: Backend) -> None:
        started = asyncio.Event()

        async def slow(job: Job) -> None:
            started.set()
            await asyncio.sleep(60)

        handlers = Handlers()
        handlers.register("slow", slow)
        queue = JobQueue(db)
        job_id = await queue.enqueue("slow", {})
        worker = Worker(db, handlers, lease=30, poll_min=0.01, grace=0.1)
        await worker.start()
        await asyncio.wait_for(started.wait(), 10)
        assert (await queue.get(job_id)).state == "running"
        await worker.stop()
        job = await queue.get(job_id)
        assert (job.state, job.attempts, job.lease_owner) == ("queued", 0, None)

    db.run(body)


def test_worker_enqueues_periodic_kinds(db: Harness) -> None:
    async def body(db: Backend) -> None:
        runs: list[float] = []

        async def tick(job: Job) -> None:
            runs.append(job.created_at)

        handlers = Handlers()
        handlers.periodic("tick", 3600, tick)
        worker = Worker(db, handlers, poll_min=0.01, poll_max=0.05)
        await worker.start()
        try:
            for _ in range(200):
                if runs:
                    break
                await asyncio.sleep(0.02)
            await asyncio.sleep(0.2)
        finally:
            await worker.stop()
        assert len(runs) == 1  # due at once on a new schedule, then not for an hour

    db.run(body)


def test_concurrent_enqueues_of_one_key_make_one_live_job(db: Harness) -> None:
    async def body(db: Backend) -> None:
        for rnd in range(5):
            ids = await asyncio.gather(*(db.write(q.enqueue, "pull", {"n": i}, NOW + i, f"img{rnd}")
                                         for i in range(12)))
            assert len(set(ids)) == 1
        jobs = await db.read(q.list_jobs)
        assert len(jobs) == 5 and all(j.state == "queued" and j.run_at == NOW for j in jobs)

    db.run(body)
