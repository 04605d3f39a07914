"""The access log's cost: manifest GET/s and server CPU per request, with the log on and off.

    python bench/access_log.py [--rounds 5] [--duration 5] [--connections 16]

Two `berth serve --workers 1` (embedded default, --auth none), one with the access log (to a file, as
an operator's stderr would be), one with `--no-access-log`, run at once and measured in turn, round
after round (interleaved: the machine is shared, so both see the same load); wrk drives
`GET /v2/bench/app/manifests/latest`. Reported: the median of the rounds' requests/s and of the
server's CPU microseconds per request (user + system of every process of the server's session, from
/proc): CPU per request is the figure that holds on a busy machine.

The server helpers here (BerthProc, cpu_seconds, push_image) are used by bench/audit.py too.
"""

from __future__ import annotations

import argparse
import hashlib
import http.client
import json
import os
import re
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

MANIFEST = "application/vnd.oci.image.manifest.v1+json"
TICKS = os.sysconf("SC_CLK_TCK")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class BerthProc:
    """A `berth serve` in a session of its own, stopped by its process group."""

    def __init__(self, tmp: Path, name: str, args: list[str] | None = None, env: dict[str, str] | None = None) -> None:
        self.dir = tmp / name
        self.dir.mkdir(mode=0o700)
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.args = args or []
        self.env = {"BERTH_CREATE_ON_PUSH": "1", "BERTH_AUTH": "none", **(env or {})}
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self, timeout: float = 60.0) -> BerthProc:
        cmd = [sys.executable, "-m", "berth", "serve", "--host", "127.0.0.1", "--port", str(self.port),
               "--data-dir", str(self.dir / "data"), "--workers", "1", *self.args]
        log = open(self.dir / "stderr.log", "wb")  # noqa: SIM115 - the child keeps it
        # cwd: not the checkout `python -m` would put first on sys.path, so PYTHONPATH picks the berth measured
        self.proc = subprocess.Popen(cmd, env={**os.environ, **self.env}, stdout=log, stderr=log,
                                     start_new_session=True, cwd=self.dir)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"berth exited: {(self.dir / 'stderr.log').read_text()[-2000:]}")
            try:
                c = http.client.HTTPConnection("127.0.0.1", self.port, timeout=2)
                c.request("GET", "/healthz")
                if c.getresponse().status == 200:
                    return self
            except OSError:
                time.sleep(0.1)
        raise RuntimeError("berth did not start")

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait()

    def cpu_seconds(self) -> float:
        assert self.proc is not None
        return cpu_seconds(self.proc.pid)


def cpu_seconds(session: int) -> float:
    """User + system CPU of every live process in a session, and of the children they reaped."""
    total = 0
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            stat = Path(f"/proc/{entry}/stat").read_text()
        except OSError:
            continue
        fields = stat[stat.rindex(")") + 2:].split()
        if int(fields[3]) == session:  # field 6, the session id
            total += sum(int(x) for x in fields[11:15])  # utime stime cutime cstime
    return total / TICKS


def request(c: http.client.HTTPConnection, method: str, path: str, body: bytes | None = None,
            headers: dict[str, str] | None = None) -> tuple[int, dict[str, str], bytes]:
    c.request(method, path, body=body, headers=headers or {})
    r = c.getresponse()
    return r.status, {k.lower(): v for k, v in r.getheaders()}, r.read()


def push_image(port: int, repo: str, tag: str, layer: bytes | None = None) -> None:
    """A config and one layer, monolithic POST+PUT each, then the manifest; raises on any refusal."""
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    layer = layer if layer is not None else os.urandom(512)
    config = json.dumps({"architecture": "amd64", "os": "linux", "tag": tag}).encode()
    descs = []
    for data in (config, layer):
        digest = "sha256:" + hashlib.sha256(data).hexdigest()
        status, headers, _ = request(c, "POST", f"/v2/{repo}/blobs/uploads/")
        if status != 202:
            raise RuntimeError(f"upload start: {status}")
        loc = headers["location"]
        loc = loc[loc.index("/v2/"):] if "://" in loc else loc
        sep = "&" if "?" in loc else "?"
        status, _, text = request(c, "PUT", f"{loc}{sep}digest={digest}", data,
                                  {"Content-Type": "application/octet-stream"})
        if status != 201:
            raise RuntimeError(f"blob put: {status} {text[:200]!r}")
        descs.append({"digest": digest, "size": len(data)})
    manifest = json.dumps({"schemaVersion": 2, "mediaType": MANIFEST,
                           "config": {"mediaType": "application/vnd.oci.image.config.v1+json", **descs[0]},
                           "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar", **descs[1]}]}).encode()
    status, _, text = request(c, "PUT", f"/v2/{repo}/manifests/{tag}", manifest, {"Content-Type": MANIFEST})
    if status != 201:
        raise RuntimeError(f"manifest put: {status} {text[:200]!r}")
    c.close()


def wrk(url: str, seconds: int, connections: int) -> tuple[float, int]:
    """(requests/s, requests) of a wrk run; raises if any answer was not 2xx."""
    out = subprocess.run(["wrk", "-t1", f"-c{connections}", f"-d{seconds}s", "-H", f"Accept: {MANIFEST}", url],
                         capture_output=True, text=True, check=True).stdout
    if "Non-2xx" in out or "Socket errors" in out:
        raise RuntimeError(out)
    rate = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))  # type: ignore[union-attr]
    count = int(re.search(r"(\d+) requests in", out).group(1))  # type: ignore[union-attr]
    return rate, count


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--duration", type=int, default=5)
    ap.add_argument("--connections", type=int, default=16)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="berth-bench-log-") as t:
        tmp = Path(t)
        servers = {"log on": BerthProc(tmp, "on"), "log off": BerthProc(tmp, "off", ["--no-access-log"])}
        try:
            for s in servers.values():
                s.start()
                push_image(s.port, "bench/app", "latest")
            figures: dict[str, list[tuple[float, float]]] = {k: [] for k in servers}
            for rnd in range(args.rounds):
                order = list(servers.items()) if rnd % 2 == 0 else list(reversed(servers.items()))
                for name, s in order:
                    cpu = s.cpu_seconds()
                    rate, count = wrk(f"{s.url}/v2/bench/app/manifests/latest", args.duration, args.connections)
                    figures[name].append((rate, (s.cpu_seconds() - cpu) / count * 1e6))
            lines = sum(1 for _ in open(servers["log on"].dir / "stderr.log", "rb"))
        finally:
            for s in servers.values():
                s.stop()
    print(f"manifest GET, {args.rounds} rounds of {args.duration:g} s, {args.connections} connections, "
          f"--workers 1 ({lines} lines logged)")
    print(f"{'':10s} {'GET/s (median)':>15s} {'CPU us/request (median)':>24s}")
    for name, rows in figures.items():
        print(f"{name:10s} {statistics.median(r for r, _ in rows):15.0f} {statistics.median(c for _, c in rows):24.1f}")
    deltas = [on[1] - off[1] for on, off in zip(figures["log on"], figures["log off"], strict=True)]
    print(f"the log's CPU per request, median of the rounds' differences: {statistics.median(deltas):.1f} us "
          f"(rounds: {', '.join(f'{d:.1f}' for d in deltas)})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
