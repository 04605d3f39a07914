"""Jobs queue throughput: no-op jobs enqueued and completed per second, SQLite and PostgreSQL, 1 and 4 workers.

    python bench/jobs.py [--jobs 20000] [--workers 1,4] [--backends sqlite,postgres] [--concurrency 32]

Enqueue: the jobs are written by one process in transactions of --per-txn jobs (the outbox shape: a
change's jobs ride in its transaction), and, separately, one job per transaction (one producer, then
16 concurrent producers: on SQLite they share one writer, on PostgreSQL they commit in parallel). Complete: worker
processes (berth.jobs.Worker, a no-op handler, --concurrency jobs at once, claims in batches of as many)
drain the queue; the clock runs from the moment every job becomes due (run_at, the workers already idle)
until the last is done. SQLite is a file on disk (synchronous=FULL, as served); PostgreSQL is a throwaway
local cluster (fsync off, as in the test suite). Each (backend, workers) pair starts from an empty database.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from berth.db import jobs as q  # noqa: E402
from berth.db.migrate import sqlalchemy_url, upgrade  # noqa: E402
from berth.db.postgres import PostgresBackend  # noqa: E402
from berth.db.sqlite import SqliteBackend  # noqa: E402
from berth.db.store import Backend, Q, Txn  # noqa: E402
from berth.jobs import Handlers, Job, NewJob, Worker  # noqa: E402

KIND = "bench.noop"


async def open_db(url: str) -> Backend:
    if url.startswith("postgresql://"):
        return await PostgresBackend.connect(url)
    return SqliteBackend(Path(url))


def done_count() -> Txn[int]:
    row = yield Q("SELECT COUNT(*) FROM jobs WHERE state = 'done'", (), "one")
    return int(row[0])


async def worker_main(url: str, concurrency: int) -> None:
    async def noop(job: Job) -> None:
        return None

    db = await open_db(url)
    handlers = Handlers()
    handlers.register(KIND, noop)
    worker = Worker(db, handlers, concurrency=concurrency, lease=30, poll_min=0.005, poll_max=0.05)
    stop = asyncio.Event()
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
    await worker.start()
    print("ready", flush=True)
    await stop.wait()
    await worker.stop()
    await db.close()


async def enqueue_phase(url: str, n: int, per_txn: int, run_at: float, producers: int = 1) -> float:
    """`producers` tasks share the work, each writing transactions of `per_txn` jobs."""
    db = await open_db(url)
    try:
        starts = list(range(0, n, per_txn))

        async def produce(k: int) -> None:
            for i in starts[k::producers]:
                batch = [NewJob(KIND, {"i": j}, run_at=run_at) for j in range(i, min(n, i + per_txn))]
                await db.write(q.enqueue_many, batch, time.time())

        start = time.perf_counter()
        await asyncio.gather(*(produce(k) for k in range(producers)))
        return n / (time.perf_counter() - start)
    finally:
        await db.close()


async def wait_done(url: str, n: int, due: float, timeout: float = 600) -> float:
    db = await open_db(url)
    try:
        while time.time() < due:
            await asyncio.sleep(0.001)
        start = time.perf_counter()
        while await db.read(done_count) < n:
            if time.perf_counter() - start > timeout:
                raise TimeoutError("the workers did not finish")
            await asyncio.sleep(0.02)
        return n / (time.perf_counter() - start)
    finally:
        await db.close()


def run_case(url: str, n: int, per_txn: int, workers: int, concurrency: int) -> tuple[float, float, float, float]:
    procs = [subprocess.Popen([sys.executable, __file__, "--worker", url, "--concurrency", str(concurrency)],
                              stdout=subprocess.PIPE, text=True, start_new_session=True) for _ in range(workers)]
    try:
        for p in procs:
            assert p.stdout is not None and p.stdout.readline().strip() == "ready"
        single = asyncio.run(enqueue_phase(url, min(n, 1000), 1, time.time() + 3600))  # parked: not due
        clear(url)
        parallel = asyncio.run(enqueue_phase(url, min(n, 2000), 1, time.time() + 3600, producers=16))
        clear(url)
        due = time.time() + 3600
        batched = asyncio.run(enqueue_phase(url, n, per_txn, due))
        set_due(url, time.time() + 0.5)
        completed = asyncio.run(wait_done(url, n, time.time() + 0.5))
        return single, parallel, batched, completed
    finally:
        for p in procs:
            p.send_signal(signal.SIGTERM)
        for p in procs:
            p.wait(30)


def clear(url: str) -> None:
    async def main() -> None:
        db = await open_db(url)

        def txn() -> Txn[None]:
            yield Q("DELETE FROM jobs")
        await db.write(txn)
        await db.close()
    asyncio.run(main())


def set_due(url: str, when: float) -> None:
    async def main() -> None:
        db = await open_db(url)

        def txn() -> Txn[None]:
            yield Q("UPDATE jobs SET run_at = ?", (when,))
        await db.write(txn)
        await db.close()
    asyncio.run(main())


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--jobs", type=int, default=20_000)
    p.add_argument("--per-txn", type=int, default=100)
    p.add_argument("--workers", default="1,4")
    p.add_argument("--backends", default="sqlite,postgres")
    p.add_argument("--concurrency", type=int, default=32)
    p.add_argument("--worker", help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.worker:
        asyncio.run(worker_main(args.worker, args.concurrency))
        return

    rows = []
    cluster = None
    tmp = Path(tempfile.mkdtemp(prefix="berth-bench-jobs-", dir=os.environ.get("BENCH_DIR", "/var/tmp")))
    try:
        for backend in args.backends.split(","):
            for w in (int(x) for x in args.workers.split(",")):
                if backend == "postgres":
                    if cluster is None:
                        from tests.support.servers import PostgresCluster

                        cluster = PostgresCluster().start()
                    url = cluster.new_database()
                    upgrade(sqlalchemy_url(url, Path("unused")))
                else:
                    path = tmp / f"jobs-{w}.db"
                    upgrade(sqlalchemy_url("", path))
                    url = str(path)
                single, parallel, batched, completed = run_case(url, args.jobs, args.per_txn, w, args.concurrency)
                rows.append((backend, w, single, parallel, batched, completed))
                print(f"{backend:8} workers={w}: enqueue {single:,.0f}/s (1/txn), {parallel:,.0f}/s (1/txn, 16 "
                      f"producers), {batched:,.0f}/s "
                      f"({args.per_txn}/txn); complete {completed:,.0f}/s", file=sys.stderr, flush=True)
    finally:
        if cluster is not None:
            cluster.stop()
        import shutil

        shutil.rmtree(tmp, ignore_errors=True)
    print(f"\n{args.jobs:,} no-op jobs, {args.concurrency} at once per worker process\n")
    print(f"| backend | workers | enqueue, 1 job/txn | 1 job/txn, 16 producers | enqueue, {args.per_txn} jobs/txn "
          "| complete (claim+run+done) |")
    print("|---|---|---|---|---|---|")
    for backend, w, single, parallel, batched, completed in rows:
        print(f"| {backend} | {w} | {single:,.0f}/s | {parallel:,.0f}/s | {batched:,.0f}/s | {completed:,.0f}/s |")


if __name__ == "__main__":
    main()
