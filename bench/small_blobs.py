"""Small-blob pushes (run.py's workload: POST + PUT of 4-64 KiB blobs, 16 clients), in interleaved rounds.

    python bench/small_blobs.py [--rounds 5] [--before DIR] [--blobs 500] [--clients 16]

Each round starts every server afresh on an empty data dir (distribution, Berth from this checkout,
and with --before a Berth from another source tree, e.g. `git archive <rev> berth | tar -x -C DIR`),
in an order that rotates from round to round, and pushes the same blobs to each. Prints blobs/s per
round, the median and spread, each Berth's ratio to distribution per round, and the servers' CPU
time per blob (the figure that decides the rate when the two cores are shared).

Measured here (2 shared cores, load 2-9 from other work; 16 clients unless said): Berth 2.5-3.5x
distribution both before and after the signed-id / DB-claim rework (distribution ran 80-240
blobs/s at 7.6-9.2 CPU ms per blob); the rework's gain is clearer in-process than over HTTP.
"""

from __future__ import annotations

import argparse
import http.client
import os
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import run as bench  # noqa: E402 - the workload and servers of bench/run.py


def small_blobs(s: bench.Server, blobs: list[tuple[str, bytes]], clients: int) -> float:
    """run.py's w_small_blobs with a number of clients: POST, then PUT with the whole blob; blobs/s."""
    def push(c: http.client.HTTPConnection, item: tuple[str, bytes]) -> None:
        location = bench.start_upload(c)
        _, h, _ = bench.request(c, "PUT", bench.with_digest(location, item[0]), body=item[1],
                                headers={"Content-Type": bench.OCTET}, expect=(201,))
        bench.check_response_digest(h, item[0])

    elapsed = bench.run_clients(s, blobs, push, clients)
    for digest, data in blobs[:: max(1, len(blobs) // 50)]:
        bench.check_blob(s, digest, len(data))
    return len(blobs) / elapsed


def cpu_seconds(server: bench.Server) -> float:
    """User + system CPU time of the server's process group so far."""
    assert server.proc is not None
    out = subprocess.run(["pgrep", "-g", str(server.proc.pid)], capture_output=True, text=True).stdout
    total = 0
    for pid in out.split():
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        total += int(fields[11]) + int(fields[12])  # utime, stime
    return total / os.sysconf("SC_CLK_TCK")


class BerthAt(bench.Berth):
    """A Berth served from the source tree `src` (PYTHONPATH first)."""

    def __init__(self, tmp: Path, name: str, src: Path) -> None:
        super().__init__(tmp, workers=1)
        self.name = name
        self.src = src

    def command(self) -> tuple[list[str], dict[str, str]]:
        cmd, env = super().command()
        return cmd, {**env, "PYTHONPATH": str(self.src)}


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--rounds", type=int, default=5)
    p.add_argument("--blobs", type=int, default=bench.SMALL_BLOBS)
    p.add_argument("--clients", type=int, default=bench.CLIENTS)
    p.add_argument("--before", type=Path, help="a second Berth source tree to compare with this one")
    p.add_argument("--tmp-dir", help="where the data dirs go (default: the system temp dir)")
    args = p.parse_args()
    here = Path(__file__).resolve().parent.parent
    kinds = ["distribution", "berth"] + (["before"] if args.before else [])
    rnd = random.Random(1)
    fx = {"small": [bench.blob(os.urandom(rnd.randint(4 * 1024, 64 * 1024))) for _ in range(args.blobs)]}
    results: dict[str, list[float]] = {k: [] for k in kinds}
    cpu: dict[str, list[float]] = {k: [] for k in kinds}  # server CPU ms per blob
    for round_ in range(args.rounds):
        order = kinds[round_ % len(kinds):] + kinds[:round_ % len(kinds)]
        for kind in order:
            tmp = Path(tempfile.mkdtemp(prefix="berth-small-", dir=args.tmp_dir))
            server: bench.Server
            if kind == "distribution":
                server = bench.Distribution(kind, tmp)
            else:
                server = BerthAt(tmp, kind, args.before if kind == "before" else here)
            try:
                server.start()
                os.sync()
                before = cpu_seconds(server)
                rate = small_blobs(server, fx["small"], args.clients)
                cpu[kind].append((cpu_seconds(server) - before) / args.blobs * 1000)
            finally:
                server.stop()
                shutil.rmtree(tmp, ignore_errors=True)
            results[kind].append(rate)
            print(f"round {round_ + 1}: {kind:12s} {rate:7.0f} blobs/s, {cpu[kind][-1]:.2f} CPU ms/blob",
                  file=sys.stderr)
    print(f"{args.blobs} small blobs (4-64 KiB), {args.clients} clients, POST + PUT; {args.rounds} rounds, "
          f"{os.cpu_count()} CPUs, load {os.getloadavg()[0]:.1f} at end\n")
    print("| server | blobs/s per round | median | ratio to distribution per round | median ratio "
          "| server CPU ms/blob (median) |")
    print("|---|---|---:|---|---:|---:|")
    dist = results["distribution"]
    for kind in kinds:
        rates = results[kind]
        ratios = [r / d for r, d in zip(rates, dist, strict=True)]
        print(f"| {kind} | {' '.join(f'{r:.0f}' for r in rates)} | {statistics.median(rates):.0f} | "
              f"{' '.join(f'{x:.2f}' for x in ratios)} | {statistics.median(ratios):.2f}× | "
              f"{statistics.median(cpu[kind]):.2f} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
