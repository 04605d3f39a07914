"""Background work as rows in the jobs table: enqueue in the caller's transaction, claim with a lease,
retry with backoff, periodic kinds; see berth/db/jobs.py for the SQL and its semantics."""

from berth.db.jobs import Job, NewJob, Retry, enqueue
from berth.jobs.handlers import Handler, Handlers, Kind
from berth.jobs.queue import JobQueue
from berth.jobs.worker import Worker

__all__ = ["Handler", "Handlers", "Job", "JobQueue", "Kind", "NewJob", "Retry", "Worker", "enqueue"]
