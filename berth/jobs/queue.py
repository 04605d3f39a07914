"""The queue as the rest of Berth sees it: enqueue in a transaction of its own, inspect, retry, prune.

To enqueue inside another operation's transaction (the outbox), `yield from berth.db.jobs.enqueue(...)`
in that operation instead; this class is for work that has no change of its own to commit with.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from berth.db import jobs as q
from berth.db.jobs import Job, KindStats, NewJob, Retry
from berth.db.store import Backend

DONE_RETENTION = 24 * 3600.0  # done rows are kept a day (for `berth jobs list`), then pruned
DEAD_RETENTION = 30 * 24 * 3600.0  # dead rows a month, for inspection and `berth jobs retry`


class JobQueue:
    def __init__(self, db: Backend, clock: Callable[[], float] = time.time) -> None:
        self.db = db
        self.clock = clock

    async def enqueue(self, kind: str, payload: Mapping[str, Any] | None = None, key: str | None = None,
                      run_at: float | None = None) -> int:
        return await self.db.write(q.enqueue, kind, payload or {}, self.clock(), key, run_at)

    async def enqueue_many(self, jobs: Sequence[NewJob]) -> list[int]:
        return await self.db.write(q.enqueue_many, jobs, self.clock())

    async def get(self, job_id: int) -> Job | None:
        return await self.db.read(q.get_job, job_id)

    async def list_jobs(self, state: str | None = None, kind: str | None = None, limit: int = 50) -> list[Job]:
        return await self.db.read(q.list_jobs, state, kind, limit)

    async def stats(self) -> list[KindStats]:
        return await self.db.read(q.stats)

    async def retry(self, job_id: int) -> Retry:
        return await self.db.write(q.retry, job_id, self.clock())

    async def prune(self) -> int:
        now = self.clock()
        total = 0
        while (n := await self.db.write(q.prune, now - DONE_RETENTION, now - DEAD_RETENTION)) > 0:
            total += n
        return total
