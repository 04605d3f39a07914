"""Three `berth serve` nodes and two `berth worker`s on one PostgreSQL: the jobs a push causes run once.

The nodes serve with `--job-workers 0` (the split deployment of compose.yaml and deploy/k8s), so every job
runs in one of the two workers. One repository scans on push and replicates to the deployment's other
region. Images are pushed round-robin through the nodes; then the database and the workers' lease records
prove that each pushed digest got exactly one scan run and one replication run, and that no job was ever
run by two workers at once. A worker SIGKILLed while it holds running jobs loses nothing: the leases
expire, another worker runs those jobs, and every image ends scanned and replicated.

Storage: one filesystem directory shared by all five processes (what a shared volume gives; the S3 path of
the nodes is covered by test_cluster.py, and a job reads blobs through the same BlobStore interface).

The lease records: each worker runs at log level debug, where berth/jobs/worker.py logs
`job ID (KIND) attempt N: started|finished by OWNER at UNIXTIME` for every run.
"""

from __future__ import annotations

import base64
import gzip
import io
import itertools
import os
import re
import subprocess
import sys
import tarfile
import threading
import time
from collections import defaultdict
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from tests.support import aws
from tests.support import osv_fixtures as fx
from tests.support.cluster import RoundRobin, Worker, push_image_rr, query, start_together, stop_all
from tests.support.oci import OCI_CONFIG, OCI_LAYER, OCI_MANIFEST, Image, descriptor, dumps, sha256
from tests.support.scan_images import trimmed_status
from tests.support.servers import BerthServer, PostgresCluster, shared_master_key

pytestmark = pytest.mark.integration

KEY_ID, SECRET = "AKIACLUSTERJOBS00001", "cluster-jobs-admin-secret-0123456789abcd"
ACCOUNT, EAST, WEST = "123456789012", "us-east-1", "us-west-2"
REPO = "jobs/app"
SCAN, COPY = "scanning.scan", "replication.copy"
LEASE = 3  # seconds: a killed worker's jobs are claimed again after this
PER_ROUND = 30
RUN = re.compile(r"job (\d+) \((\S+)\) attempt (\d+): (started|finished) by (\S+) at ([\d.]+)")
OS_RELEASE = b'PRETTY_NAME="Debian GNU/Linux 12 (bookworm)"\nNAME="Debian GNU/Linux"\nVERSION_ID="12"\n' \
             b'VERSION="12 (bookworm)"\nVERSION_CODENAME=bookworm\nID=debian\n'


@dataclass
class Deployment:
    nodes: list[BerthServer]
    database: str
    token: str
    worker_env: dict[str, str]
    storage: str
    base: Path
    workers: list[Worker] = field(default_factory=list)

    def rr(self) -> RoundRobin:
        rr = RoundRobin(self.nodes, 120)
        auth = "Basic " + base64.b64encode(f"AWS:{self.token}".encode()).decode()
        for c in rr.clients:
            c.headers["Authorization"] = auth
        return rr

    def worker(self, name: str) -> Worker:
        """A `berth worker` started and claiming (its log says so at level info)."""
        w = Worker(self.base / name, self.database, env=self.worker_env, args=["--storage-url", self.storage])
        self.workers.append(w.start())
        deadline = time.monotonic() + 60
        while "at a time, kinds" not in (w.log.read_text(errors="replace") if w.log.exists() else ""):
            assert w.proc is not None and w.proc.poll() is None and time.monotonic() < deadline, \
                w.log.read_text(errors="replace")[-2000:] if w.log.exists() else "no log"
            time.sleep(0.05)
        return w


@pytest.fixture(scope="module")
def deployment(postgres: PostgresCluster, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Deployment]:
    database = postgres.new_database()
    base = tmp_path_factory.mktemp("cluster-jobs")
    storage = f"file://{base / 'blobs'}"
    env = {"BERTH_ADMIN_ACCESS_KEY_ID": KEY_ID, "BERTH_ADMIN_SECRET_ACCESS_KEY": SECRET,
           "BERTH_REGIONS": f"{EAST},{WEST}"}
    nodes = [BerthServer(base / f"node{i}", database_url=database, env=env,
                         args=["--auth", "iam", "--storage-url", storage, "--job-workers", "0"]) for i in range(3)]
    d: Deployment | None = None
    try:
        failures = start_together(nodes)
        assert failures == [], "\n".join(failures)
        ecr = aws.client("ecr", nodes[0].url, KEY_ID, SECRET, region=EAST)
        ecr.create_repository(repositoryName=REPO, imageScanningConfiguration={"scanOnPush": True})
        ecr.put_replication_configuration(replicationConfiguration={"rules": [
            {"destinations": [{"region": WEST, "registryId": ACCOUNT}]}]})
        worker_env = {"BERTH_MASTER_KEY_FILE": str(shared_master_key(database)), "BERTH_REGIONS": f"{EAST},{WEST}",
                      "BERTH_LOG_LEVEL": "debug", "BERTH_JOB_LEASE_SECONDS": str(LEASE)}
        # advisories first: a scan before any import ends FINDINGS_UNAVAILABLE, this test wants COMPLETE runs
        imported = subprocess.run([sys.executable, "-m", "berth", "vulndb", "import", "--no-progress",
                                   str(fx.write_tree(base / "osv")), "--database-url", database],
                                  capture_output=True, text=True, timeout=300, env={**os.environ, **worker_env})
        assert imported.returncode == 0, imported.stderr
        d = Deployment(nodes, database, aws.registry_token(ecr), worker_env, storage, base)
        d.worker("w0")
        d.worker("w1")
        yield d
    finally:
        stop_all(d.workers if d else [])
        stop_all(nodes)


def debian_image(i: int) -> Image:
    """A one-layer image the BASIC scan completes on: Debian's os-release and a real dpkg status, plus a file of
    its own (every digest unique)."""
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w") as tar:
        for name, data in (("etc/os-release", OS_RELEASE), ("var/lib/dpkg/status", trimmed_status(("libc6", "tar"))),
                           (f"srv/image-{i}-{time.time_ns()}", b"x" * 64)):
            info = tarfile.TarInfo(name)
            info.size, info.mtime = len(data), 0
            tar.addfile(info, io.BytesIO(data))
    layer = gzip.compress(raw.getvalue(), mtime=0)
    config = dumps({"architecture": "amd64", "os": "linux",
                    "rootfs": {"type": "layers", "diff_ids": [sha256(raw.getvalue())]}})
    doc = {"schemaVersion": 2, "mediaType": OCI_MANIFEST, "config": descriptor(OCI_CONFIG, config),
           "layers": [descriptor(OCI_LAYER, layer)]}
    return Image(config, [layer], OCI_MANIFEST, dumps(doc), [OCI_CONFIG, OCI_LAYER])


def push_round(d: Deployment, first: int, pushers: int = 3) -> list[str]:
    """PER_ROUND images, `pushers` clients at once, each request to the next node; their digests."""
    digests: list[str] = []
    errors: list[str] = []
    lock = threading.Lock()

    def pusher(k: int) -> None:
        with d.rr() as rr:
            for i in range(first + k, first + PER_ROUND, pushers):
                try:
                    digest = push_image_rr(rr, REPO, debian_image(i), f"v{i}")
                except Exception as e:  # noqa: BLE001 - reported below
                    with lock:
                        errors.append(f"v{i}: {e}")
                    continue
                with lock:
                    digests.append(digest)

    threads = [threading.Thread(target=pusher, args=(k,)) for k in range(pushers)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(300)
    assert errors == [], errors[:5]
    return digests


def settle(d: Deployment, timeout: float = 60.0) -> None:
    """Every scan and copy job done (or dead: the assertions say which)."""
    deadline = time.monotonic() + timeout
    while query(d.database, "SELECT 1 FROM jobs WHERE kind = ANY($1) AND state IN ('queued', 'running') LIMIT 1",
                [SCAN, COPY]):
        assert time.monotonic() < deadline, query(d.database, "SELECT id, kind, state, lease_owner FROM jobs "
                                                              "WHERE state IN ('queued', 'running')")
        time.sleep(0.1)


@dataclass
class Run:
    job: int
    kind: str
    attempt: int
    owner: str
    start: float
    end: float | None  # None: never finished (its worker was killed)


def runs(d: Deployment) -> dict[int, list[Run]]:
    """Every run of a scan or copy job, from the workers' lease records, by job id, in start order."""
    open_: dict[tuple[int, int, str], Run] = {}
    out: dict[int, list[Run]] = defaultdict(list)
    for w in d.workers:
        for m in RUN.finditer(w.log.read_text(errors="replace")):
            job, kind, attempt, what, owner, at = int(m[1]), m[2], int(m[3]), m[4], m[5], float(m[6])
            if kind not in (SCAN, COPY):
                continue
            if what == "started":
                r = Run(job, kind, attempt, owner, at, None)
                open_[(job, attempt, owner)] = r
                out[job].append(r)
            else:
                open_.pop((job, attempt, owner)).end = at
    for rs in out.values():
        rs.sort(key=lambda r: r.start)
    return out


def jobs_of(d: Deployment, digests: list[str]) -> dict[tuple[str, str], Any]:
    """(kind, digest) -> the one job row of that image (asserted: exactly one)."""
    rows = query(d.database, "SELECT id, kind, payload::json->>'digest' AS digest, state, attempts, last_error "
                             "FROM jobs WHERE kind = ANY($1) AND payload::json->>'digest' = ANY($2)",
                 [SCAN, COPY], digests)
    by: dict[tuple[str, str], list[Any]] = defaultdict(list)
    for r in rows:
        by[(r["kind"], r["digest"])].append(r)
    many = {k: len(v) for k, v in by.items() if len(v) != 1}
    assert many == {}, many
    assert set(by) == {(k, dg) for k in (SCAN, COPY) for dg in digests}, "an image without its scan or copy job"
    return {k: v[0] for k, v in by.items()}


def outcomes(d: Deployment, digests: list[str]) -> tuple[dict[str, int], dict[str, Any], dict[str, Any]]:
    """Per digest: IMAGE_SCANNED events, the scan row, the replication status row."""
    events = {r["digest"]: int(r["n"]) for r in query(
        d.database, "SELECT digest, count(*) AS n FROM events WHERE kind = 'image.scanned' AND repository = $1 "
                    "GROUP BY digest", REPO)}
    scans = {r["digest"]: r for r in query(
        d.database, "SELECT s.digest, s.status FROM image_scans s JOIN repositories r ON r.id = s.repository_id "
                    "WHERE r.name = $1 AND r.region = $2 AND s.digest = ANY($3)", REPO, EAST, digests)}
    copies = {r["digest"]: r for r in query(
        d.database, "SELECT digest, status, attempts FROM replication_status WHERE repository = $1 AND region = $2 "
                    "AND dest_region = $3 AND digest = ANY($4)", REPO, EAST, WEST, digests)}
    return events, scans, copies


def assert_no_overlap(all_runs: dict[int, list[Run]], killed_at: float | None = None) -> None:
    """No two runs of one job at once: each run starts after the previous one ended (a killed worker's run
    ends when it was killed)."""
    for job, rs in all_runs.items():
        for a, b in itertools.pairwise(rs):
            end = a.end if a.end is not None else killed_at
            assert end is not None, f"job {job}: a run that never finished, and no worker was killed: {rs}"
            assert b.start >= end, f"job {job} ran twice at once: {a} and {b}"


def destination_digests(d: Deployment) -> set[str]:
    return {r["digest"] for r in query(d.database, "SELECT m.digest FROM manifests m JOIN repositories r ON "
                                                   "r.id = m.repository_id WHERE r.name = $1 AND r.region = $2",
                                       REPO, WEST)}


def test_every_push_through_three_nodes_gets_one_scan_run_and_one_replication_run(deployment: Deployment) -> None:
    d = deployment
    digests = push_round(d, 0)
    assert len(set(digests)) == PER_ROUND
    settle(d)
    jobs = jobs_of(d, digests)
    bad = {k: (r["state"], r["attempts"]) for k, r in jobs.items() if (r["state"], r["attempts"]) != ("done", 1)}
    assert bad == {}, bad  # each claimed once, done once
    all_runs = runs(d)
    for (kind, digest), r in jobs.items():
        rs = all_runs[r["id"]]
        assert [(x.attempt, x.end is not None) for x in rs] == [(1, True)], (kind, digest, rs)
    assert_no_overlap(all_runs)
    owners = {x.owner for rs in all_runs.values() for x in rs}
    assert len(owners) == 2, owners  # both workers took part
    events, scans, copies = outcomes(d, digests)
    assert {dg: events.get(dg) for dg in digests} == {dg: 1 for dg in digests}  # one scan run recorded each
    assert {dg: scans[dg]["status"] for dg in digests} == {dg: "COMPLETE" for dg in digests}
    assert {dg: (copies[dg]["status"], copies[dg]["attempts"]) for dg in digests} == {
        dg: ("COMPLETE", 1) for dg in digests}  # one replication run recorded each
    assert set(digests) <= destination_digests(d)
    total = query(d.database, "SELECT count(*) AS n FROM jobs WHERE kind = $1", SCAN)[0]["n"]
    assert total == len(digests)  # the copies in us-west-2 are not scanned again (that region scans manually)


def test_a_worker_killed_mid_run_leaves_every_job_run_once_to_completion(deployment: Deployment) -> None:
    """While a round is pushed, worker 0 is SIGKILLed as soon as it holds running jobs. Those stay `running`
    under its lease until the lease expires; worker 1 then claims them (attempt 2, the reaper's note in
    last_error) and completes them. Every job ends done; no run of a job overlaps another; each image ends
    scanned and replicated once; a run that the killed worker had finished but not yet recorded runs again,
    and its effect is the same (idempotent)."""
    d = deployment
    victim = d.workers[0]
    assert victim.proc is not None
    pid = victim.proc.pid
    pushed: list[str] = []
    caught = threading.Event()

    def pusher() -> None:  # rounds until the kill caught the victim mid-run (one round, nearly always)
        for r in range(4):
            pushed.extend(push_round(d, 1000 + 100 * r))
            if caught.is_set():
                return

    pushing = threading.Thread(target=pusher)
    pushing.start()
    held: list[Any] = []
    killed_at = 0.0
    try:
        while not held:
            assert pushing.is_alive(), "worker 0 never held a running job while images were pushed"
            if query(d.database, "SELECT 1 FROM jobs WHERE state = 'running' AND lease_owner LIKE $1 AND "
                                 "kind = ANY($2) LIMIT 1", f"%:{pid}:%", [SCAN, COPY]):
                victim.proc.kill()  # SIGKILL, now: mid-run
                killed_at = time.time()
                victim.proc.wait(10)
                victim.proc = None
                held = query(d.database, "SELECT id, lease_until FROM jobs WHERE state = 'running' AND "
                                         "lease_owner LIKE $1 AND kind = ANY($2)", f"%:{pid}:%", [SCAN, COPY])
                if not held:  # it finished them between the look and the kill: a new worker 0, and again
                    victim = d.worker(f"w0-{len(d.workers)}")  # (the dead one's log still counts)
                    assert victim.proc is not None
                    pid = victim.proc.pid
            else:
                time.sleep(0.005)
        caught.set()
    finally:
        caught.set()
        pushing.join(300)
    assert len(set(pushed)) == len(pushed) and len(pushed) % PER_ROUND == 0
    settle(d, 60 + LEASE)
    jobs = jobs_of(d, pushed)
    assert {k: r["state"] for k, r in jobs.items()} == {k: "done" for k in jobs}
    all_runs = runs(d)
    assert_no_overlap(all_runs, killed_at)
    held_ids = {int(r["id"]): float(r["lease_until"]) for r in held}

    by_id = {r["id"]: (k, r) for k, r in jobs.items()}
    for (kind, digest), r in jobs.items():
        rs = all_runs[r["id"]]
        finished = [x for x in rs if x.end is not None and str(pid) not in x.owner.split(":")]
        if r["id"] in held_ids:
            # claimed again only after the dead worker's lease expired, once, and completed
            assert r["attempts"] == 2 and "lease expired" in (r["last_error"] or ""), (kind, digest, r)
            # [2] alone: the dead worker was killed between its claim and its "started" line
            assert [x.attempt for x in rs] in ([1, 2], [2]), rs
            assert len(rs) == 1 or f":{pid}:" in rs[0].owner, rs
            assert rs[-1].start >= held_ids[r["id"]], (rs, held_ids[r["id"]])
            assert len(finished) == 1, rs
        else:
            assert r["attempts"] == 1 and len(rs) == 1 and rs[0].end is not None, (kind, digest, r, rs)
    assert set(held_ids) <= set(by_id)
    events, scans, copies = outcomes(d, pushed)
    # a held job the killed worker had finished (its completion not yet recorded) ran again: its effect twice,
    # the same effect; one it had not finished ran to completion once (or, killed between its last write and
    # its log line, twice)
    reran = {by_id[i][0] for i in held_ids if len(all_runs[i]) == 2 and all_runs[i][0].end is not None}
    unsure = {by_id[i][0] for i in held_ids} - reran
    for dg in pushed:
        assert scans[dg]["status"] == "COMPLETE", (dg, scans[dg])
        assert copies[dg]["status"] == "COMPLETE", (dg, copies[dg])
        for kind, got in ((SCAN, events.get(dg)), (COPY, copies[dg]["attempts"])):
            want = {2} if (kind, dg) in reran else {1, 2} if (kind, dg) in unsure else {1}
            assert got in want, (kind, dg, got, want)
    assert set(pushed) <= destination_digests(d)
    survivor = d.workers[1]
    assert survivor.proc is not None and survivor.proc.poll() is None, survivor.log.read_text()[-2000:]
