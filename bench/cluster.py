"""Berth as 1, 2 and 3 nodes on one PostgreSQL and one radosgw; CNCF distribution on the same radosgw.

    python bench/cluster.py [--nodes 1,2,3] [--images 24] [--layer-mib 2] [--duration 5] [--no-distribution]

Everything is throwaway and on 127.0.0.1: a PostgreSQL cluster (tests/support/servers.py), a one-node Ceph
(tests/support/ceph.py), the nodes (`berth serve --workers 1` each, a database and a bucket per row), all
stopped at the end. A round-robin client sends each request to the next node, as a load balancer would:

- push: 8 threads push images of 3 random layers (HEAD, POST, PUT ?digest per blob, then the manifest);
- pull: 8 threads GET every blob of every image, round-robin, each checked against its digest;
- manifest GET/s: one `wrk -t1 -c16` per node at once (by tag; summed), with the CPU seconds each process
  group used meanwhile: where the time goes;
- statements: PostgreSQL's own log (log_statement=all) counted per pushed and per pulled image, one node.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import re
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.fanout import fan_out  # noqa: E402
from bench.run import Distribution, Failed, S3Target, free_port, relative, request  # noqa: E402
from tests.support.ceph import CephCluster  # noqa: E402
from tests.support.servers import PostgresCluster  # noqa: E402

MiB = 1 << 20
MANIFEST = "application/vnd.oci.image.manifest.v1+json"
CONFIG = "application/vnd.oci.image.config.v1+json"
LAYER = "application/vnd.oci.image.layer.v1.tar+gzip"
THREADS = 8


def sha(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


class Node:
    """One `berth serve` (or distribution) on a port; `conn()` a fresh http.client connection to it."""

    def __init__(self, port: int, proc: subprocess.Popen | None, log: Path) -> None:
        self.port, self.proc, self.log = port, proc, log

    def conn(self):  # noqa: ANN201
        import http.client

        return http.client.HTTPConnection("127.0.0.1", self.port, timeout=300)

    def stop(self) -> None:
        if self.proc is not None:
            import signal

            try:
                os.killpg(self.proc.pid, signal.SIGTERM)
                self.proc.wait(15)
            except (ProcessLookupError, subprocess.TimeoutExpired):
                try:
                    os.killpg(self.proc.pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
            self.proc = None


def start_berth(tmp: Path, i: int, database: str, s3: S3Target) -> Node:
    port = free_port()
    log = tmp / f"node{i}-{port}.log"
    cmd = [sys.executable, "-m", "berth", "serve", "--host", "127.0.0.1", "--port", str(port), "--data-dir",
           str(tmp / f"node{i}-{port}"), "--database-url", database, "--auth", "none", "--workers", "1",
           "--storage-url", f"s3://{s3.bucket}/registry?endpoint={s3.endpoint}&region=us-east-1"]
    env = {**os.environ, "BERTH_CREATE_ON_PUSH": "1", "AWS_ACCESS_KEY_ID": s3.key, "AWS_SECRET_ACCESS_KEY": s3.secret,
           "PYTHONPATH": str(ROOT),
           # the nodes of one database share its master key (each making its own: the second refuses to start)
           "BERTH_MASTER_KEY_FILE": str(tmp / f"master-{hashlib.sha256(database.encode()).hexdigest()[:12]}.key")}
    with open(log, "ab") as out:
        proc = subprocess.Popen(cmd, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
    return Node(port, proc, log)


def wait_up(node: Node, timeout: float = 90) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            status, _, _ = request(node.conn(), "GET", "/v2/")
            if status in (200, 401):
                return
        except OSError:
            time.sleep(0.1)
    raise Failed(f"node on {node.port} did not come up: {node.log.read_text()[-2000:]}")


class Image:
    def __init__(self, layer_bytes: int) -> None:
        self.layers = [os.urandom(layer_bytes) for _ in range(3)]
        self.config = json.dumps({"architecture": "amd64", "os": "linux", "rootfs": {
            "type": "layers", "diff_ids": [sha(b) for b in self.layers]}}).encode()
        self.manifest = json.dumps({"schemaVersion": 2, "mediaType": MANIFEST, "config": {
            "mediaType": CONFIG, "digest": sha(self.config), "size": len(self.config)}, "layers": [
            {"mediaType": LAYER, "digest": sha(b), "size": len(b)} for b in self.layers]}).encode()

    @property
    def blobs(self) -> list[bytes]:
        return [self.config, *self.layers]


class RoundRobin:
    def __init__(self, nodes: list[Node]) -> None:
        self.conns = [n.conn() for n in nodes]
        self.i = 0

    def __call__(self, method: str, path: str, body: bytes | None = None, headers: dict | None = None,
                 expect: tuple[int, ...] = ()) -> tuple[int, dict, bytes]:
        c = self.conns[self.i % len(self.conns)]
        self.i += 1
        return request(c, method, path, body, headers, expect)


def push(rr: RoundRobin, repo: str, img: Image, tag: str) -> None:
    """What skopeo does per blob (HEAD, POST, PUT ?digest with the body), then the manifest."""
    for b in img.blobs:
        d = sha(b)
        if rr("HEAD", f"/v2/{repo}/blobs/{d}")[0] == 200:
            continue
        _, h, _ = rr("POST", f"/v2/{repo}/blobs/uploads/", expect=(202,))
        loc = relative(h["location"])
        rr("PUT", loc + ("&" if "?" in loc else "?") + f"digest={d}", b,
           {"Content-Type": "application/octet-stream"}, expect=(201,))
    rr("PUT", f"/v2/{repo}/manifests/{tag}", img.manifest, {"Content-Type": MANIFEST}, expect=(201,))


def pull(rr: RoundRobin, repo: str, img: Image, tag: str) -> int:
    _, _, body = rr("GET", f"/v2/{repo}/manifests/{tag}", headers={"Accept": MANIFEST}, expect=(200,))
    if body != img.manifest:
        raise Failed("manifest differs")
    n = 0
    for b in img.blobs:
        _, _, got = rr("GET", f"/v2/{repo}/blobs/{sha(b)}", expect=(200,))
        if sha(got) != sha(b):
            raise Failed("blob differs")
        n += len(got)
    return n


def threaded(nodes: list[Node], jobs: list, fn) -> float:  # noqa: ANN001
    """Run fn(rr, job) for every job over THREADS threads, each with its own round-robin; seconds taken.
    A failure stops the others at their next job."""
    lock = threading.Lock()
    stop = threading.Event()
    todo = list(jobs)

    def worker(k: int) -> None:
        rr = RoundRobin(nodes)
        rr.i = k
        while not stop.is_set():
            with lock:
                if not todo:
                    return
                job = todo.pop()
            try:
                fn(rr, job)
            except BaseException:
                stop.set()
                raise

    return fan_out(worker, range(THREADS), Failed)


def group_cpu(pgid: int) -> float:
    """CPU seconds (user + system) used so far by the processes of a process group (or one pid's group)."""
    total = 0.0
    tick = os.sysconf("SC_CLK_TCK")
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[2]) == pgid:  # field 5 of stat: the process group
            total += (int(fields[11]) + int(fields[12])) / tick
    return total


def pid_cpu(pids: list[int]) -> float:
    tick = os.sysconf("SC_CLK_TCK")
    total = 0.0
    for pid in pids:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        total += (int(fields[11]) + int(fields[12])) / tick
    return total


def postgres_pids(pg: PostgresCluster) -> list[int]:
    master = int((pg.dir / "data" / "postmaster.pid").read_text().split()[0])
    kids = subprocess.run(["pgrep", "-P", str(master)], capture_output=True, text=True).stdout.split()
    return [master, *map(int, kids)]


def manifest_rate(nodes: list[Node], repo: str, tag: str, duration: int, where: dict[str, list[int]]
                  ) -> tuple[float, dict[str, float]]:
    """One wrk per node at once; the summed requests/s and the CPU seconds per second of each party."""
    procs = []
    before = {k: pid_cpu(v) for k, v in where.items()}
    nodes_before = sum(group_cpu(n.proc.pid) for n in nodes if n.proc is not None)
    t0 = time.perf_counter()
    for n in nodes:
        procs.append(subprocess.Popen(["wrk", "-t1", "-c16", f"-d{duration}s", "-H", f"Accept: {MANIFEST}",
                                       f"http://127.0.0.1:{n.port}/v2/{repo}/manifests/{tag}"],
                                      stdout=subprocess.PIPE, text=True))
    wrk_cpu = 0.0
    outs = []
    for p in procs:
        out, _ = p.communicate()
        outs.append(out)
    elapsed = time.perf_counter() - t0
    rate = 0.0
    for out in outs:
        if "Non-2xx" in out:
            raise Failed("wrk: non-2xx answers: " + out[-300:])
        m = re.search(r"Requests/sec:\s+([\d.]+)", out)
        if m is None:
            raise Failed("wrk output: " + out[-300:])
        rate += float(m.group(1))
    usage = {k: (pid_cpu(v) - before[k]) / elapsed for k, v in where.items()}
    usage["nodes"] = (sum(group_cpu(n.proc.pid) for n in nodes if n.proc is not None) - nodes_before) / elapsed
    usage["wrk"] = wrk_cpu
    return rate, usage


def berth_row(n: int, tmp: Path, pg: PostgresCluster, ceph: CephCluster, images: list[Image],
              duration: int) -> dict:
    database = pg.new_database()
    s3 = S3Target(ceph.endpoint, ceph.new_bucket(f"bench{n}"), ceph.access_key, ceph.secret_key)
    first = start_berth(tmp, 0, database, s3)  # the first node migrates; the others start at once after
    wait_up(first)
    nodes = [first] + [start_berth(tmp, i, database, s3) for i in range(1, n)]
    try:
        for node in nodes:
            wait_up(node)
        return workloads(nodes, images, duration, {
            "postgres": postgres_pids(pg), "radosgw+osd": list(ceph.pids().values())}, f"berth x{n}")
    finally:
        for node in nodes:
            node.stop()


def workloads(nodes: list[Node], images: list[Image], duration: int, where: dict[str, list[int]], name: str) -> dict:
    repo = "bench/cluster"
    warm = Image(1024)
    push(RoundRobin(nodes), repo, warm, "warm")  # the first object of a bucket is slow on radosgw
    jobs = list(enumerate(images))
    size = sum(len(b) for img in images for b in img.blobs)
    t_push = threaded(nodes, jobs, lambda rr, j: push(rr, repo, j[1], f"v{j[0]}"))
    t_pull = threaded(nodes, jobs, lambda rr, j: pull(rr, repo, j[1], f"v{j[0]}"))
    rate, usage = manifest_rate(nodes, repo, "v0", duration, where)
    row = {"name": name, "push_MBps": size / t_push / 1e6, "pull_MBps": size / t_pull / 1e6,
           "manifest_get_per_s": rate, "cpu_per_s": usage}
    print(json.dumps(row), file=sys.stderr)
    return row


def distribution_row(tmp: Path, ceph: CephCluster, images: list[Image], duration: int) -> dict:
    s3 = S3Target(ceph.endpoint, ceph.new_bucket("benchdist"), ceph.access_key, ceph.secret_key)
    d = Distribution("distribution", tmp, s3)
    d.start()
    try:
        assert d.proc is not None
        node = Node(d.port, None, d.log)
        row = workloads([node], images, duration, {"radosgw+osd": list(ceph.pids().values()),
                                                   "distribution": [d.proc.pid]}, "distribution x1")
        row["cpu_per_s"]["nodes"] = row["cpu_per_s"].pop("distribution")  # the serving process's share
        return row
    finally:
        d.stop()


def statement_counts(tmp: Path, ceph: CephCluster, count: int = 10, verbose: bool = False) -> dict:
    """PostgreSQL statements per pushed and per pulled image (3 layers + config), one node, from the server's
    own log: all statements, and those other than BEGIN/COMMIT/NOTIFY/SET."""
    pg = PostgresCluster(options="-c log_statement=all -c log_min_messages=warning").start()
    try:
        database = pg.new_database()
        s3 = S3Target(ceph.endpoint, ceph.new_bucket("benchsql"), ceph.access_key, ceph.secret_key)
        node = start_berth(tmp, 9, database, s3)
        wait_up(node)
        try:
            rr = RoundRobin([node])
            push(rr, "sql/warm", Image(256), "warm")
            imgs = [Image(4096) for _ in range(count)]
            log = pg.dir / "log"
            time.sleep(1.5)  # the warm-up's background writes (pull times, jobs) settle

            def counted(fn) -> tuple[int, int, int]:  # noqa: ANN001
                start = len(log.read_text(errors="replace").splitlines())
                fn()
                time.sleep(1.5)
                lines = log.read_text(errors="replace").splitlines()[start:]
                stmts = [ln for ln in lines if re.search(r"LOG:\s+(statement|execute [^:]*):", ln)]
                plain = [s for s in stmts if not re.search(r":\s+(BEGIN|COMMIT|NOTIFY|SET LOCAL|SELECT 1)\b", s)]
                if verbose:
                    kinds: dict[str, int] = {}
                    for s in plain:
                        text = re.sub(r"\s+", " ", s.split(":", 3)[-1]).strip()[:90]
                        kinds[text] = kinds.get(text, 0) + 1
                    for text, k in sorted(kinds.items(), key=lambda kv: -kv[1]):
                        print(f"  {k / count:5.1f}  {text}", file=sys.stderr)
                begins = [s for s in stmts if re.search(r":\s+BEGIN\b", s)]
                return len(stmts), len(plain), len(begins)

            pushed = counted(lambda: [push(rr, "sql/app", img, f"v{i}") for i, img in enumerate(imgs)])
            pulled = counted(lambda: [pull(rr, "sql/app", img, f"v{i}") for i, img in enumerate(imgs)])
            again = counted(lambda: [pull(rr, "sql/app", img, f"v{i}") for i, img in enumerate(imgs)])
        finally:
            node.stop()
    finally:
        pg.stop()
    row = {"per_push": [x / count for x in pushed], "per_pull_first": [x / count for x in pulled],
           "per_pull_cached": [x / count for x in again]}
    print(json.dumps({"statements (all, without BEGIN/COMMIT/NOTIFY/SET/SELECT 1)": row}), file=sys.stderr)
    return row


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--nodes", default="1,2,3")
    p.add_argument("--images", type=int, default=24)
    p.add_argument("--layer-mib", type=float, default=2.0)
    p.add_argument("--duration", type=int, default=5, help="seconds of wrk per row")
    p.add_argument("--no-distribution", action="store_true")
    p.add_argument("--no-statements", action="store_true")
    p.add_argument("--list-statements", action="store_true", help="print each kind of statement per image")
    args = p.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="berth-bench-cluster-"))
    print("starting PostgreSQL and a one-node Ceph ...", file=sys.stderr)
    pg = PostgresCluster().start()
    ceph = CephCluster().start()
    rows = []
    try:
        images = [Image(int(args.layer_mib * MiB)) for _ in range(args.images)]
        for n in (int(x) for x in args.nodes.split(",") if x):
            rows.append(berth_row(n, tmp, pg, ceph, images, args.duration))
        if not args.no_distribution and args.nodes:
            rows.append(distribution_row(tmp, ceph, [Image(int(args.layer_mib * MiB)) for _ in images],
                                         args.duration))
        stmts = None if args.no_statements else statement_counts(tmp, ceph, verbose=args.list_statements)
    finally:
        ceph.stop()
        pg.stop()
    mb = args.images * 3 * args.layer_mib
    print(f"\n{args.images} images x 3 layers x {args.layer_mib} MiB ({mb:.0f} MiB), {THREADS} client threads, "
          f"wrk -t1 -c16 -d{args.duration}s per node; {os.cpu_count()} cores for everything\n")
    print("| setup | push MB/s | pull MB/s | manifest GET/s | CPU s/s: nodes | PostgreSQL | radosgw+osd |")
    print("|---|---|---|---|---|---|---|")
    for r in rows:
        u = r["cpu_per_s"]
        print(f"| {r['name']} | {r['push_MBps']:.0f} | {r['pull_MBps']:.0f} | {r['manifest_get_per_s']:.0f} | "
              f"{u.get('nodes', u.get('distribution', 0)):.2f} | {u.get('postgres', 0):.2f} | "
              f"{u['radosgw+osd']:.2f} |")
    if stmts:
        print("\nPostgreSQL statements per image (3 layers + config): all / without BEGIN, COMMIT, NOTIFY, SET, "
              "SELECT 1 / BEGIN lines in the log")
        for what, key in (("push", "per_push"), ("first pull", "per_pull_first"), ("pull again", "per_pull_cached")):
            a, b, c = stmts[key]
            print(f"  {what}: {a:.1f} / {b:.1f} / {c:.1f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
