"""The job kinds Berth runs today; app.py registers them. Each handler is idempotent."""

from __future__ import annotations

import logging
import re

from berth.db import images as qi
from berth.db import lifecycle as ql
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
    """An image's last pull time, as noted by RegistryService.note_pull: at most once a day, never moved
    backwards, and not for a principal excluded from pull-time updates."""
    async def run(job: Job) -> None:
        p = job.payload
        principal = p.get("principal")
        if principal and await db.read(ql.excluded_any, p["account"], exclusion_names(principal)):
            return
        await db.write(qi.record_pulls, [(p["account"], p["region"], p["repository"], p["digest"], float(p["at"]))])
    return run


def exclusion_names(principal: str) -> list[str]:
    """The ARNs an exclusion may name a principal by: itself, and an assumed-role session's role."""
    names = [principal]
    m = re.fullmatch(r"arn:(aws[a-z-]*):sts::(\d{12}):assumed-role/([^/]+)/.+", principal)
    if m:
        names.append(f"arn:{m[1]}:iam::{m[2]}:role/{m[3]}")
    return names


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
