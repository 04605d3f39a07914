"""`berth jobs …`: Rich tables over the queue. Each function returns the command's exit code."""

from __future__ import annotations

import time

from rich.console import Console
from rich.table import Table

from berth.db.jobs import STATES, Retry
from berth.db.store import Backend
from berth.jobs.queue import JobQueue


def _when(t: float | None) -> str:
    return "" if t is None else time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(t))


def _age(seconds: float) -> str:
    seconds = max(0.0, seconds)
    if seconds < 120:
        return f"{seconds:.0f}s"
    if seconds < 7200:
        return f"{seconds / 60:.0f}m"
    return f"{seconds / 3600:.1f}h"


async def list_jobs(db: Backend, state: str | None, kind: str | None, limit: int) -> int:
    jobs = await JobQueue(db).list_jobs(state, kind, limit)
    table = Table("id", "kind", "key", "state", "attempts", "run at (UTC)", "updated (UTC)", "last error",
                  title=f"jobs ({len(jobs)} shown, newest first)")
    for j in jobs:
        table.add_row(str(j.id), j.kind, j.key or "", j.state, f"{j.attempts}/{j.max_attempts}", _when(j.run_at),
                      _when(j.updated_at), (j.last_error or "")[:80])
    Console(width=200).print(table)
    return 0


async def retry_job(db: Backend, job_id: int) -> int:
    outcome = await JobQueue(db).retry(job_id)
    console = Console(stderr=outcome is not Retry.QUEUED)
    messages = {
        Retry.QUEUED: f"job {job_id} queued again",
        Retry.UNKNOWN: f"no job {job_id}",
        Retry.LIVE: f"job {job_id} is still queued or running",
        Retry.DUPLICATE: f"job {job_id}: another live job has the same key",
    }
    console.print(f"berth: {messages[outcome]}")
    return 0 if outcome is Retry.QUEUED else 1


async def job_stats(db: Backend) -> int:
    stats = await JobQueue(db).stats()
    now = time.time()
    table = Table("kind", *STATES, "oldest queued", title="jobs per kind and state")
    for ks in stats:
        table.add_row(ks.kind, *(str(ks.counts.get(s, 0)) for s in STATES),
                      "" if ks.oldest_queued is None else _age(now - ks.oldest_queued))
    Console(width=200).print(table)
    return 0
