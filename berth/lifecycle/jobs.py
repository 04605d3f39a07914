"""The lifecycle job kinds; berth/app.py registers them. Each handler is idempotent."""

from __future__ import annotations

import logging

from berth.db import archive as qa
from berth.db import registry as q
from berth.db.jobs import Job, NewJob
from berth.db.store import Backend
from berth.jobs.handlers import Handler
from berth.jobs.queue import JobQueue
from berth.lifecycle.archive import Archiver, PlacementBusy
from berth.lifecycle.service import ACTIVATE_JOB, DEFAULT_INTERVAL, PREVIEW_JOB, RUN_JOB, SCHEDULE_JOB, LifecycleService
from berth.registry.model import Repository

log = logging.getLogger("berth.lifecycle")

__all__ = ["ACTIVATE_JOB", "DEFAULT_INTERVAL", "PREVIEW_JOB", "RUN_JOB", "SCHEDULE_JOB", "activate", "run_preview",
           "run_repository", "schedule"]


async def _repository(db: Backend, job: Job) -> Repository | None:
    p = job.payload
    row = await db.read(q.get_repository, p["account"], p["region"], p["repository"])
    return None if row is None else Repository.from_row(row)


def run_preview(db: Backend, service: LifecycleService) -> Handler:
    async def run(job: Job) -> None:
        repo = await _repository(db, job)
        if repo is not None:
            await service.run_preview(repo)
    return run


def run_repository(db: Backend, service: LifecycleService) -> Handler:
    async def run(job: Job) -> None:
        repo = await _repository(db, job)
        if repo is not None:
            await service.run(repo)
    return run


def schedule(service: LifecycleService, queue: JobQueue) -> Handler:
    """The periodic kind (one node enqueues it per interval): one run job per repository with a policy,
    coalesced by repository, so the runs spread over the workers and retry one by one."""
    async def run(job: Job) -> None:
        repos = await service.repositories()
        if repos:
            await queue.enqueue_many([NewJob(RUN_JOB, {"account": r.account_id, "region": r.region,
                                                       "repository": r.name}, key=f"lifecycle-run/{r.id}")
                                      for r in repos])
            log.info("lifecycle: %d repositories to evaluate", len(repos))
    return run


def activate(db: Backend, service: LifecycleService, archiver: Archiver | None = None) -> Handler:
    """ACTIVATING -> ACTIVE; with an archive store, once the image's blobs are back in the main store (a blob
    another placement holds: the job is retried)."""
    async def run(job: Job) -> None:
        repo = await _repository(db, job)
        if repo is None:
            return
        digest = str(job.payload["digest"])
        if archiver is not None:
            status = (await service.statuses(repo, [digest])).get(digest, ("",))[0]
            if status == "ACTIVATING" and not await archiver.restore(await db.read(qa.image_blobs, repo.id, digest)):
                raise PlacementBusy(f"image {digest}: a blob is being moved; its restore is retried")
        await service.activate(repo, digest)
    return run
