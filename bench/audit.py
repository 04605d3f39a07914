"""The audit trail's cost: pushes/s and ECR calls/s, and server CPU per operation, with the trail on and off.

    python bench/audit.py [--backends sqlite,postgres] [--rounds 5] [--seconds 4] [--clients 8]

For each backend two `berth serve --workers 1` run at once (--auth none), one with the audit trail
(the default), one with BERTH_AUDIT=0; on PostgreSQL each has a database of its own in one throwaway
cluster (tests/support/servers.py). Round after round, interleaved (the machine is shared: both see the
same load), `--clients` threads on connections of their own run, for `--seconds` each:
- push: a small image (config + one 512-byte layer, POST+PUT each, then the manifest): 5 audited
  writes, one per request;
- ecr: PutImageTagMutability then DescribeRepositories (each audited).
Reported: the median over rounds of operations/s and of the server's CPU microseconds per operation
(user + system of the server's processes, /proc): CPU per operation is the figure that holds on a
busy machine.
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from access_log import BerthProc, push_image  # noqa: E402

TARGET = "AmazonEC2ContainerRegistry_V20150921."


def ecr_call(c: http.client.HTTPConnection, op: str, body: dict) -> None:
    c.request("POST", "/", body=json.dumps(body).encode(),
              headers={"X-Amz-Target": TARGET + op, "Content-Type": "application/x-amz-json-1.1"})
    r = c.getresponse()
    data = r.read()
    if r.status != 200:
        raise RuntimeError(f"{op}: {r.status} {data[:200]!r}")


def run_clients(fn, clients: int, seconds: float) -> int:  # type: ignore[no-untyped-def]
    """Run fn(client, i) in `clients` threads until `seconds` pass; the operations done."""
    counts = [0] * clients
    errors: list[BaseException] = []
    stop = time.monotonic() + seconds

    def loop(k: int) -> None:
        try:
            i = 0
            while time.monotonic() < stop:
                fn(k, i)
                i += 1
            counts[k] = i
        except BaseException as e:  # noqa: BLE001 - reported below
            errors.append(e)

    threads = [threading.Thread(target=loop, args=(k,)) for k in range(clients)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    if errors:
        raise errors[0]
    return sum(counts)


def workload(kind: str, s: BerthProc, clients: int, rnd: int):  # type: ignore[no-untyped-def]
    if kind == "push":
        def push(k: int, i: int) -> None:
            push_image(s.port, f"bench/push{k}", f"r{rnd}-{i}")
        return push
    conns = [http.client.HTTPConnection("127.0.0.1", s.port, timeout=30) for _ in range(clients)]

    def ecr(k: int, i: int) -> None:
        ecr_call(conns[k], "PutImageTagMutability", {"repositoryName": f"bench/ecr{k}",
                                                     "imageTagMutability": "MUTABLE" if i % 2 else "IMMUTABLE"})
        ecr_call(conns[k], "DescribeRepositories", {"repositoryNames": [f"bench/ecr{k}"]})
    return ecr


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--backends", default="sqlite,postgres")
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--seconds", type=float, default=4.0)
    ap.add_argument("--clients", type=int, default=8)
    args = ap.parse_args()
    ops_per = {"push": 5, "ecr": 2}  # audited requests per unit of work
    results: list[str] = []
    for backend in args.backends.split(","):
        cluster = None
        with tempfile.TemporaryDirectory(prefix="berth-bench-audit-") as t:
            tmp = Path(t)
            os.chmod(tmp, 0o755)
            urls = ["", ""]
            if backend == "postgres":
                from tests.support.servers import PostgresCluster

                cluster = PostgresCluster().start()
                urls = [cluster.new_database(), cluster.new_database()]
            servers = {"audit on": BerthProc(tmp, "on", ["--database-url", urls[0]] if urls[0] else []),
                       "audit off": BerthProc(tmp, "off", ["--database-url", urls[1]] if urls[1] else [],
                                              {"BERTH_AUDIT": "0"})}
            try:
                for s in servers.values():
                    s.start()
                    for k in range(args.clients):
                        push_image(s.port, f"bench/ecr{k}", "seed")
                figures: dict[tuple[str, str], list[tuple[float, float]]] = {}
                for rnd in range(args.rounds):
                    for kind in ("push", "ecr"):
                        order = list(servers.items())
                        if rnd % 2:
                            order.reverse()
                        for name, s in order:
                            fn = workload(kind, s, args.clients, rnd)
                            cpu, start = s.cpu_seconds(), time.monotonic()
                            n = run_clients(fn, args.clients, args.seconds)
                            elapsed, used = time.monotonic() - start, s.cpu_seconds() - cpu
                            ops = n * ops_per[kind]
                            figures.setdefault((kind, name), []).append((ops / elapsed, used / ops * 1e6))
            finally:
                for s in servers.values():
                    s.stop()
                if cluster is not None:
                    cluster.stop()
        for (kind, name), rows in figures.items():
            rate = statistics.median(r for r, _ in rows)
            cpu_us = statistics.median(c for _, c in rows)
            results.append(f"{backend:9s} {kind:5s} {name:10s} {rate:10.0f} {cpu_us:16.0f}")
    print(f"{args.rounds} rounds of {args.seconds:g} s, {args.clients} clients, --workers 1; "
          "an op is one audited request (push: 5 a push; ecr: 2 a pair)")
    print(f"{'backend':9s} {'work':5s} {'':10s} {'ops/s':>10s} {'CPU us/op':>16s}")
    print("\n".join(results))
    return 0


if __name__ == "__main__":
    sys.exit(main())
