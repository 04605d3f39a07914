"""The job kinds Berth runs today; app.py registers them. Each handler is idempotent."""

from __future__ import annotations

import logging

from berth.db import images as qi
from berth.db.jobs import Job
from berth.db.store import Backend
from berth.jobs.handlers import Handler
from berth.jobs.queue import JobQueue
from berth.registry.uploads import Uploads

log = logging.getLogger("berth.jobs")

PURGE_UPLOADS = "uploads.purge"
PURGE_UPLOADS_EVERY = 3600.0
PRUNE_JOBS = "jobs.prune"
PRUNE_JOBS_EVERY = 3600.0


def record_pull_time(db: Backend) -> Handler:
    """An image's last pull time, as noted by RegistryService.note_pull; never moved backwards."""
    async def run(job: Job) -> None:
        p = job.payload
        await db.write(qi.record_pulls, [(p["account"], p["region"], p["repository"], p["digest"], float(p["at"]))])
    return run


def purge_uploads(uploads: Uploads) -> Handler:
    async def run(job: Job) -> None:
        if purged := await uploads.purge():
            log.warning("purged %d abandoned uploads", purged)
    return run


def prune_jobs(queue: JobQueue) -> Handler:
    async def run(job: Job) -> None:
        if pruned := await queue.prune():
            log.info("pruned %d finished jobs", pruned)
    return run
