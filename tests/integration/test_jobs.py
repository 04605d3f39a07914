"""The jobs queue across real processes, on SQLite and on a real PostgreSQL: a SIGKILLed worker's job
runs once afterwards, two workers never run one job at once, a failing job ends dead with its error,
a periodic kind runs on one of three processes per interval; the `berth jobs` commands and
`berth worker` (with `serve --job-workers 0`) against a real database."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from berth.db import jobs as q
from berth.db.migrate import sqlalchemy_url, upgrade
from berth.db.postgres import PostgresBackend
from berth.db.sqlite import SqliteBackend
from berth.db.store import Backend
from berth.jobs import JobQueue, NewJob
from tests.support.oci import OciClient, random_image
from tests.support.servers import BerthServer

ROOT = Path(__file__).resolve().parents[2]


@dataclass
class Db:
    kind: str
    data_dir: Path
    url: str  # the worker's DATABASE argument: a URL, or the SQLite file
    database_url: str  # for `berth … --database-url` ("" on SQLite: the file under --data-dir)

    def run(self, body: Callable[[Backend], Awaitable[Any]]) -> Any:
        async def main() -> Any:
            db: Backend = await PostgresBackend.connect(self.url) if self.kind == "postgres" \
                else SqliteBackend(Path(self.url))
            try:
                return await body(db)
            finally:
                await db.close()

        return asyncio.run(main())

    def cli_args(self) -> list[str]:
        args = ["--data-dir", str(self.data_dir)]
        return args + (["--database-url", self.database_url] if self.database_url else [])


@pytest.fixture(params=["sqlite", "postgres"])
def database(request: pytest.FixtureRequest, tmp_path: Path) -> Db:
    data_dir = tmp_path / "data"
    data_dir.mkdir()
    if request.param == "postgres":
        url = request.getfixturevalue("postgres").new_database()
        upgrade(sqlalchemy_url(url, Path("unused")))
        return Db("postgres", data_dir, url, url)
    path = data_dir / "berth.db"
    upgrade(sqlalchemy_url("", path))
    return Db("sqlite", data_dir, str(path), "")


class Workers:
    """Worker processes (tests/support/jobs_worker.py) sharing one log; stopped by PID."""

    def __init__(self, db: Db, log: Path) -> None:
        self.db = db
        self.log = log
        self.procs: list[subprocess.Popen[bytes]] = []

    def start(self, *args: str) -> subprocess.Popen[bytes]:
        before = self.ready()
        proc = subprocess.Popen([sys.executable, "-m", "tests.support.jobs_worker", self.db.url, str(self.log), *args],
                                cwd=ROOT, start_new_session=True)
        self.procs.append(proc)
        deadline = time.monotonic() + 30
        while proc.pid not in self.ready() - before:
            assert proc.poll() is None, "worker exited"
            assert time.monotonic() < deadline, "worker not ready"
            time.sleep(0.02)
        return proc

    def ready(self) -> set[int]:
        return {int(line[2]) for line in self.lines() if line[0] == "ready"}

    def lines(self) -> list[list[str]]:
        if not self.log.exists():
            return []
        return [line.split() for line in self.log.read_text().splitlines()]

    def events(self, what: str) -> list[tuple[int, int, int, float]]:
        """(job id, pid, attempt, time) of every `what` line."""
        return [(int(x[1]), int(x[2]), int(x[3]), float(x[4])) for x in self.lines() if x[0] == what]

    def stop_all(self) -> None:
        for p in self.procs:
            if p.poll() is None:
                p.send_signal(signal.SIGTERM)
        for p in self.procs:
            try:
                p.wait(15)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait(5)


@pytest.fixture
def workers(database: Db, tmp_path: Path) -> Iterator[Workers]:
    w = Workers(database, tmp_path / "jobs.log")
    try:
        yield w
    finally:
        w.stop_all()


def wait_for(check: Callable[[], bool], timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.05)


def job_states(db: Db) -> dict[int, q.Job]:
    async def body(b: Backend) -> dict[int, q.Job]:
        return {j.id: j for j in await b.read(q.list_jobs, None, None, 100_000)}
    return db.run(body)


def enqueue(db: Db, jobs: list[NewJob]) -> list[int]:
    async def body(b: Backend) -> list[int]:
        return await JobQueue(b).enqueue_many(jobs)
    return db.run(body)


def test_a_sigkilled_workers_job_runs_once_afterwards(database: Db, workers: Workers) -> None:
    [job_id] = enqueue(database, [NewJob("test.record", {"hang_on": [1]})])
    first = workers.start("--lease", "1.5")
    wait_for(lambda: any(e[0] == job_id for e in workers.events("start")))
    os.kill(first.pid, signal.SIGKILL)
    first.wait(10)
    assert job_states(database)[job_id].state == "running"  # its lease outlives the process
    second = workers.start("--lease", "1.5")
    wait_for(lambda: job_states(database)[job_id].state == "done")
    time.sleep(2)  # longer than a lease: nothing runs it a third time
    starts, ends = workers.events("start"), workers.events("end")
    assert [(pid, attempt) for _, pid, attempt, _ in starts] == [(first.pid, 1), (second.pid, 2)]
    assert [(jid, pid) for jid, pid, _, _ in ends] == [(job_id, second.pid)]
    job = job_states(database)[job_id]
    assert (job.state, job.attempts, job.lease_owner) == ("done", 2, None)
    assert job.last_error is not None and "lease expired" in job.last_error


def test_two_worker_processes_never_run_one_job_at_once(database: Db, workers: Workers) -> None:
    n = 300
    ids = enqueue(database, [NewJob("test.record", {"sleep": (i % 4) * 0.005}) for i in range(n)])
    a = workers.start("--concurrency", "4")
    b = workers.start("--concurrency", "4")
    wait_for(lambda: len(workers.events("end")) >= n, 60)
    time.sleep(0.3)
    starts, ends = workers.events("start"), workers.events("end")
    assert sorted(e[0] for e in starts) == sorted(ids)  # every job started exactly once ...
    assert sorted(e[0] for e in ends) == sorted(ids)  # ... and ended exactly once
    by_job = {jid: (pid, t) for jid, pid, _, t in starts}
    for jid, pid, _, t in ends:  # on the process that started it, after it started
        assert by_job[jid][0] == pid and by_job[jid][1] <= t
    assert {pid for _, pid, _, _ in starts} == {a.pid, b.pid}  # both took a share
    wait_for(lambda: all(j.state == "done" for j in job_states(database).values()), 15)
    assert all(j.attempts == 1 for j in job_states(database).values())


def test_a_failing_job_backs_off_and_ends_dead_with_its_error(database: Db, workers: Workers) -> None:
    [job_id] = enqueue(database, [NewJob("test.fail", {})])
    workers.start()
    wait_for(lambda: job_states(database)[job_id].state == "dead")
    job = job_states(database)[job_id]
    assert (job.attempts, job.max_attempts) == (3, 3)
    assert job.last_error == "RuntimeError: failing on purpose, attempt 3"
    times = [t for _, _, _, t in workers.events("start")]
    assert len(times) == 3
    # backoff 0.2 s doubling, with jitter that keeps at least half: >= 0.1 s, then >= 0.2 s
    assert times[1] - times[0] >= 0.1 and times[2] - times[1] >= 0.2


def test_a_periodic_kind_runs_on_one_of_three_processes_per_interval(database: Db, workers: Workers) -> None:
    procs = [workers.start("--tick-every", "1") for _ in range(3)]
    time.sleep(5.5)
    workers.stop_all()
    runs = sorted((t, pid) for _, pid, _, t in workers.events("start"))
    assert 4 <= len(runs) <= 7, runs
    gaps = [b[0] - a[0] for a, b in zip(runs, runs[1:], strict=False)]
    assert min(gaps) > 0.8, runs  # never two in one interval
    assert {pid for _, pid in runs} <= {p.pid for p in procs}
    assert len(workers.events("end")) == len(runs)


def berth(*args: str, ok: bool = True) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("BERTH_") or k == "BERTH_STRICT"}
    proc = subprocess.run([sys.executable, "-m", "berth", *args], capture_output=True, text=True, timeout=120,
                          cwd=ROOT, env=env)
    assert (proc.returncode == 0) is ok, proc.stdout + proc.stderr
    return proc


def test_jobs_cli_list_stats_retry(database: Db) -> None:
    async def setup(b: Backend) -> int:
        queue = JobQueue(b)
        await queue.enqueue_many([NewJob("scan", {"n": i}) for i in range(3)])
        dead = await queue.enqueue("replicate", {}, key="team/app")
        [job] = await b.write(q.claim, "tester", time.time(), 30, 1, ["replicate"])
        assert await b.write(q.fail, "tester", job.id, "peer unreachable", time.time(), 0, 1) == "dead"
        return dead

    dead = database.run(setup)
    out = berth("jobs", "list", *database.cli_args()).stdout
    assert "replicate" in out and "scan" in out and "peer unreachable" in out and "team/app" in out
    out = berth("jobs", "list", "--state", "dead", *database.cli_args()).stdout
    assert "replicate" in out and "scan" not in out
    out = berth("jobs", "list", "--kind", "scan", "--limit", "2", *database.cli_args()).stdout
    assert out.count("scan") == 2
    assert "unknown state" in berth("jobs", "list", "--state", "lost", *database.cli_args(), ok=False).stderr
    stats = berth("jobs", "stats", *database.cli_args()).stdout
    rows = {line.split("│")[1].strip(): [c.strip() for c in line.split("│")[2:-1]]
            for line in stats.splitlines() if line.count("│") >= 7 and "kind" not in line}
    assert rows["scan"][:4] == ["3", "0", "0", "0"] and rows["scan"][4].endswith("s")
    assert rows["replicate"][:4] == ["0", "0", "0", "1"] and rows["replicate"][4] == ""
    assert "queued again" in berth("jobs", "retry", str(dead), *database.cli_args()).stdout
    assert "still queued" in berth("jobs", "retry", str(dead), *database.cli_args(), ok=False).stderr
    assert "no job" in berth("jobs", "retry", "999999", *database.cli_args(), ok=False).stderr
    job = job_states(database)[dead]
    assert (job.state, job.attempts) == ("queued", 0)


def test_berth_worker_runs_what_serve_enqueues(database: Db, tmp_path: Path) -> None:
    """`serve --job-workers 0` queues pull times and runs nothing; a `berth worker` process records them
    and runs the periodic upload purge."""
    server = BerthServer(database.data_dir, database_url=database.database_url,
                         args=["--job-workers", "0"]).start()
    worker: subprocess.Popen[bytes] | None = None
    try:
        image = random_image()
        with OciClient(server.url) as oci:
            assert oci.push_image("team/app", image, "v1").status_code == 201
            assert oci.get_manifest("team/app", "v1").status_code == 200

        def pull_jobs() -> list[q.Job]:
            return [j for j in job_states(database).values() if j.kind == "registry.pull_time"]

        wait_for(lambda: len(pull_jobs()) == 1, 10)
        time.sleep(1)
        [job] = pull_jobs()
        assert job.state == "queued" and job.payload["digest"] == image.digest
        assert job.payload["repository"] == "team/app"

        env = {k: v for k, v in os.environ.items() if not k.startswith("BERTH_") or k == "BERTH_STRICT"}
        log = open(tmp_path / "worker.log", "wb")  # noqa: SIM115 - closed with the process below
        worker = subprocess.Popen([sys.executable, "-m", "berth", "worker", *database.cli_args(), "--job-workers",
                                   "0"], cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT,
                                  start_new_session=True)
        log.close()
        wait_for(lambda: pull_jobs()[0].state == "done", 30)
        kinds = {j.kind: j.state for j in job_states(database).values()}
        wait_for(lambda: {j.kind: j.state for j in job_states(database).values()}.get("uploads.purge") == "done", 30)

        async def pulled_at(b: Backend) -> Any:
            from berth.db.store import Q

            def txn() -> Any:
                row = yield Q("SELECT last_pulled_at FROM manifests WHERE digest = ?", (image.digest,), "one")
                return row[0]
            return await b.read(txn)

        when = database.run(pulled_at)
        assert when is not None and abs(when - job.payload["at"]) < 1e-6
        assert kinds["registry.pull_time"] == "done"
        worker.send_signal(signal.SIGTERM)
        assert worker.wait(20) == 0  # a graceful stop
        worker = None
    finally:
        if worker is not None:
            worker.kill()
            worker.wait(10)
        server.stop()
