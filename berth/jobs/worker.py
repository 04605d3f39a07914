"""The worker loop: claim due jobs with a lease, run them (a bounded number at once), record the outcome.

- Idle: a cheap read asks whether anything is due, backing off from `poll_min` to `poll_max`.
- Running: a heartbeat extends the leases every lease/3; a process that dies (SIGKILL) stops renewing,
  and any node's reaper queues its jobs again once the lease has expired.
- Done: completions are batched into one transaction (group commit) by a flusher task.
- Failure: a handler's exception -> queued again after an exponential backoff with jitter, or dead.
- Stop: no new claims; running jobs get `grace` seconds, then are cancelled; leases still held are
  released (queued at once, the interrupted attempt not counted).
- Periodic kinds: every node ticks the schedules; a conditional update lets exactly one enqueue per interval.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import random
import secrets
import socket
import time
from collections.abc import Callable

from berth.db import jobs as q
from berth.db.jobs import Job
from berth.db.store import Backend
from berth.jobs.handlers import Handlers

log = logging.getLogger("berth.jobs")

TICK = 1.0  # how often a node looks at the periodic schedules, seconds


class Worker:
    def __init__(self, db: Backend, handlers: Handlers, concurrency: int = 2, lease: float = 30.0,
                 batch: int | None = None, poll_min: float = 0.05, poll_max: float = 1.0, grace: float = 10.0,
                 owner: str | None = None, clock: Callable[[], float] = time.time) -> None:
        if concurrency < 1:
            raise ValueError("a worker runs at least one job at a time")
        self.db = db
        self.handlers = handlers
        self.concurrency = concurrency
        self.lease = lease
        self.batch = batch or concurrency
        self.poll_min, self.poll_max = poll_min, poll_max
        self.grace = grace
        self.owner = owner or f"{socket.gethostname()}:{os.getpid()}:{secrets.token_hex(3)}"
        self.clock = clock
        self.kinds = handlers.kinds()
        self.periodic_kinds = [k for k, _ in handlers.schedules()]
        self._running: dict[int, asyncio.Task[None]] = {}
        self._done: list[int] = []
        self._flush_lock = asyncio.Lock()
        self._wake = asyncio.Event()  # a slot freed, or stop
        self._flush_wake = asyncio.Event()
        self._stopping = False
        self._loops: list[asyncio.Task[None]] = []

    async def start(self) -> None:
        await self.db.write(q.ensure_periodic, self.handlers.schedules(), self.clock())
        loop = asyncio.get_running_loop()
        self._loops = [loop.create_task(self._claim_loop()), loop.create_task(self._heartbeat_loop()),
                       loop.create_task(self._flush_loop())]
        log.info("job worker %s: %d at a time, kinds %s", self.owner, self.concurrency, ", ".join(self.kinds))

    async def stop(self) -> None:
        self._stopping = True
        self._wake.set()
        if self._loops:
            await asyncio.gather(self._loops[0], return_exceptions=True)
        running = list(self._running.values())
        if running:
            _, late = await asyncio.wait(running, timeout=self.grace)
            for task in late:
                task.cancel()
            await asyncio.gather(*running, return_exceptions=True)
        await self._flush()
        try:
            released = await self.db.write(q.release, self.owner, self.clock())
            if released:
                log.warning("job worker %s: released %d unfinished jobs", self.owner, released)
        except Exception:
            log.exception("job worker %s: releasing leases failed (they expire in %.0fs)", self.owner, self.lease)
        for task in self._loops[1:]:
            task.cancel()
        await asyncio.gather(*self._loops, return_exceptions=True)
        self._loops = []

    # claiming

    async def _claim_loop(self) -> None:
        idle = self.poll_min
        next_reap = next_tick = 0.0
        while not self._stopping:
            claimed: list[Job] = []
            try:
                now = self.clock()
                if now >= next_reap:
                    if n := await self.db.write(q.reap, now):
                        log.warning("requeued %d jobs whose lease expired", n)
                    next_reap = now + self.lease / 4
                if self.periodic_kinds and now >= next_tick:
                    await self._tick(now)
                    next_tick = now + TICK
                free = self.concurrency - len(self._running)
                if free <= 0:
                    self._wake.clear()
                    await self._wake.wait()
                    continue
                if await self.db.read(q.any_due, now, self.kinds):
                    claimed = await self.db.write(q.claim, self.owner, now, self.lease, min(free, self.batch),
                                                  self.kinds)
            except Exception:
                log.exception("job worker %s: claiming failed", self.owner)
                idle = self.poll_max
            loop = asyncio.get_running_loop()
            for job in claimed:
                self._running[job.id] = loop.create_task(self._run(job))
            if claimed:
                idle = self.poll_min
                continue
            self._wake.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), idle)
            idle = min(idle * 2, self.poll_max)

    async def _tick(self, now: float) -> None:
        due = await self.db.read(q.next_periodic, self.periodic_kinds)
        if due is not None and due <= now:
            for kind in await self.db.write(q.tick_periodic, self.owner, self.periodic_kinds, now):
                log.info("job worker %s: periodic %s enqueued", self.owner, kind)

    # running

    async def _run(self, job: Job) -> None:
        kind = self.handlers.get(job.kind)
        # the run's lease record, for an operator (and the cluster test) at log level debug: who ran which attempt when
        log.debug("job %d (%s) attempt %d: started by %s at %.6f", job.id, job.kind, job.attempts, self.owner,
                  self.clock())
        try:
            if kind is None:  # claimed only for registered kinds; a guard, not a path
                raise LookupError(f"no handler for job kind {job.kind!r}")
            await kind.run(job)
        except asyncio.CancelledError:
            return  # stopping: the lease is released in stop()
        except Exception as e:
            await self._fail(job, f"{type(e).__name__}: {e}")
        else:
            log.debug("job %d (%s) attempt %d: finished by %s at %.6f", job.id, job.kind, job.attempts, self.owner,
                      self.clock())
            self._done.append(job.id)
            self._flush_wake.set()
        finally:
            self._running.pop(job.id, None)
            self._wake.set()

    async def _fail(self, job: Job, error: str) -> None:
        kind = self.handlers.get(job.kind)
        now = self.clock()
        delay = kind.retry_delay(job.attempts, random.random()) if kind is not None else self.poll_max
        limit = kind.max_attempts if kind is not None else job.max_attempts
        try:
            state = await self.db.write(q.fail, self.owner, job.id, error, now, now + delay, limit)
        except Exception:
            log.exception("job %d (%s): recording its failure failed", job.id, job.kind)
            return
        if state == q.DEAD:
            log.error("job %d (%s) is dead after %d attempts: %s", job.id, job.kind, job.attempts, error)
        else:
            log.warning("job %d (%s) attempt %d failed, retry in %.1fs: %s", job.id, job.kind, job.attempts,
                        delay, error)

    async def _flush_loop(self) -> None:
        while True:
            await self._flush_wake.wait()
            self._flush_wake.clear()
            await self._flush()

    async def _flush(self) -> None:
        async with self._flush_lock:
            while self._done:
                ids, self._done = self._done[:500], self._done[500:]
                try:
                    await self.db.write(q.complete, self.owner, ids, self.clock())
                except Exception:
                    log.exception("job worker %s: recording %d completions failed", self.owner, len(ids))
                    self._done[:0] = ids
                    if self._stopping:
                        return  # their leases expire; the jobs run again (handlers are idempotent)
                    await asyncio.sleep(self.poll_max)

    async def _heartbeat_loop(self) -> None:
        while True:
            await asyncio.sleep(self.lease / 3)
            ids = list(self._running)
            if not ids:
                continue
            try:
                held = await self.db.write(q.heartbeat, self.owner, ids, self.clock(), self.lease)
            except Exception:
                log.exception("job worker %s: heartbeat failed", self.owner)
                continue
            if held < len(ids):
                log.warning("job worker %s: lost the lease of %d running jobs", self.owner, len(ids) - held)
