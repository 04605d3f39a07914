"""A worker process for the jobs tests: berth's real Worker and Backend, with probe handlers.

    python -m tests.support.jobs_worker DATABASE LOG [--lease S] [--concurrency N] [--tick-every S]

DATABASE is a postgresql:// URL or a SQLite file path. Each handler appends one line per event to LOG
(O_APPEND, one write per line, so lines from several processes never interleave):
`start|end <job id> <pid> <attempt> <time>`. Runs until SIGTERM (a graceful stop) or SIGKILL.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
import time
from pathlib import Path

from berth.db.postgres import PostgresBackend
from berth.db.sqlite import SqliteBackend
from berth.db.store import Backend
from berth.jobs import Handlers, Job, Worker


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("database")
    p.add_argument("log")
    p.add_argument("--lease", type=float, default=2.0)
    p.add_argument("--concurrency", type=int, default=4)
    p.add_argument("--tick-every", type=float, default=0.0, help="register periodic kind test.tick")
    args = p.parse_args()
    asyncio.run(run(args))


async def run(args: argparse.Namespace) -> None:
    db: Backend
    if args.database.startswith("postgresql://"):
        db = await PostgresBackend.connect(args.database)
    else:
        db = SqliteBackend(Path(args.database))
    fd = os.open(args.log, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)

    def note(what: str, job: Job) -> None:
        os.write(fd, f"{what} {job.id} {os.getpid()} {job.attempts} {time.time():.6f}\n".encode())

    async def record(job: Job) -> None:
        """Runs payload['sleep'] seconds; on the attempts listed in payload['hang_on'], hangs instead."""
        note("start", job)
        if job.attempts in job.payload.get("hang_on", []):
            await asyncio.sleep(3600)
        await asyncio.sleep(job.payload.get("sleep", 0))
        note("end", job)

    async def fail(job: Job) -> None:
        note("start", job)
        raise RuntimeError(f"failing on purpose, attempt {job.attempts}")

    handlers = Handlers()
    handlers.register("test.record", record)
    handlers.register("test.fail", fail, max_attempts=3, backoff=0.2)
    if args.tick_every:
        handlers.periodic("test.tick", args.tick_every, record)
    worker = Worker(db, handlers, concurrency=args.concurrency, lease=args.lease, poll_min=0.01, poll_max=0.1)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    loop.add_signal_handler(signal.SIGTERM, stop.set)
    await worker.start()
    os.write(fd, f"ready - {os.getpid()} - {time.time():.6f}\n".encode())
    await stop.wait()
    await worker.stop()
    await db.close()


if __name__ == "__main__":
    main()
