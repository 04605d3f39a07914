"""Berth and CNCF distribution side by side on 127.0.0.1: the same workloads, one table.

    python bench/run.py [--size-mib 1024] [--only distribution|berth] [--berth-workers 1] [--duration 10]
                        [--rounds 3] [--workloads push_monolithic,pull] [--quick]
    python bench/run.py --storage s3     # both on one throwaway radosgw (tests/support/ceph.py)

Both servers start on free ports with empty data dirs in one temporary directory and are stopped by
process group at the end, even on error. Each workload runs --rounds times, the servers alternating
(distribution then Berth, then Berth then distribution, ...; never both at once: the machine has two
cores); a cell is the median with the spread, a ratio the median of the rounds' ratios, and the load
average is printed with them. A row whose correctness check fails reads FAILED, never a number.
--quick (smaller blobs, fewer tags, 2 s of wrk) stays under two minutes.

With --storage s3 both store blobs on the SAME radosgw (one bucket each): distribution through its
`s3` driver (`regionendpoint` = the radosgw URL, path style), Berth through --storage-url s3://….
Each also runs a sibling on the same storage with redirects on (distribution's default on S3;
Berth's --storage-redirect), for the "pull, redirected" row: GET, 307, then GET from radosgw.
"""

from __future__ import annotations

import abc
import argparse
import gzip
import hashlib
import http.client
import io
import json
import os
import queue
import random
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tarfile
import tempfile
import threading
import time
from datetime import datetime
from pathlib import Path
from urllib.parse import urlsplit

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run as a script: the repository root too
from bench.fanout import fan_out  # noqa: E402

REPO = "bench/app"
OCTET = "application/octet-stream"
MANIFEST = "application/vnd.oci.image.manifest.v1+json"
MiB = 1 << 20
CLIENTS = 16
SMALL_BLOBS = 500
TAGS = 10_000
DISTRIBUTION = "/usr/bin/docker-registry"


class Failed(Exception):
    pass


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Server(abc.ABC):
    def __init__(self, name: str, tmp: Path) -> None:
        self.name, self.port = name, free_port()
        self.data = tmp / f"{name}-data"
        self.log = tmp / f"{name}.log"
        self.proc: subprocess.Popen | None = None
        self.peak_rss_kib = 0
        self.peak_pss_kib = 0  # sampled by a thread while the server runs
        self._watch: threading.Thread | None = None
        self.headers: dict[str, str] = {}  # sent with every request (a registry token under --berth-auth iam)
        self.data.mkdir(mode=0o700)  # Berth warns about a data dir others can read

    @abc.abstractmethod
    def command(self) -> tuple[list[str], dict[str, str]]:
        """The server's command line and extra environment."""

    drop_env: tuple[str, ...] = ()  # variables the server must not inherit

    def start(self, timeout: float = 60.0) -> None:
        cmd, env = self.command()
        env = {k: v for k, v in {**os.environ, **env}.items() if k not in self.drop_env}
        with open(self.log, "ab") as log:
            self.proc = subprocess.Popen(cmd, env=env, stdout=log, stderr=subprocess.STDOUT,
                                         stdin=subprocess.DEVNULL, start_new_session=True)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise Failed(f"{self.name} exited with {self.proc.returncode}: {self.log_tail()}")
            try:
                status, _, _ = request(self.conn(5), "GET", "/v2/")
                if status in (200, 401):
                    self._watch = threading.Thread(target=self._sample_pss, args=(self.proc,), daemon=True)
                    self._watch.start()
                    return
            except OSError:
                pass
            time.sleep(0.05)
        raise Failed(f"{self.name} did not answer /v2/ within {timeout:.0f} s: {self.log_tail()}")

    def stop(self) -> None:
        if self.proc is None:
            return
        for sig, wait in ((signal.SIGTERM, 10), (signal.SIGKILL, 10)):
            try:
                os.killpg(self.proc.pid, sig)
            except ProcessLookupError:
                break
            try:
                self.proc.wait(wait)
                break
            except subprocess.TimeoutExpired:
                continue
        self.proc = None

    def conn(self, timeout: float = 300.0) -> http.client.HTTPConnection:
        return _Conn(self.headers, "127.0.0.1", self.port, timeout=timeout)

    def group(self) -> list[str]:
        """The PIDs of the server's process group (its workers too)."""
        if self.proc is None:
            return []
        return subprocess.run(["pgrep", "-g", str(self.proc.pid)], capture_output=True, text=True).stdout.split()

    def cpu_seconds(self) -> float:
        """User + system CPU time used so far by the server's processes: a cost per byte that, unlike
        a rate, holds up on a busy machine."""
        total = 0
        for pid in self.group():
            try:
                fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            total += int(fields[11]) + int(fields[12])  # utime, stime
        return total / os.sysconf("SC_CLK_TCK")

    def _sample_pss(self, proc: subprocess.Popen) -> None:
        """Summed PSS every 50 ms: the memory the server costs. Summing resident sets would count
        twice the pages a granian worker shares with the supervisor it was forked from."""
        while self.proc is proc and proc.poll() is None:
            total = 0
            for pid in self.group():
                try:
                    m = re.search(r"^Pss:\s+(\d+) kB", Path(f"/proc/{pid}/smaps_rollup").read_text(), re.M)
                except OSError:
                    continue
                total += int(m.group(1)) if m else 0
            self.peak_pss_kib = max(self.peak_pss_kib, total)
            time.sleep(0.05)

    def sample_rss(self) -> None:
        """Sum of VmHWM over the process group; keep the maximum seen (exited workers are lost)."""
        if self.proc is None:
            return
        out = " ".join(self.group())
        total = 0
        for pid in out.split():
            try:
                status = Path(f"/proc/{pid}/status").read_text()
            except OSError:
                continue
            m = re.search(r"^VmHWM:\s+(\d+) kB", status, re.M)
            total += int(m.group(1)) if m else 0
        self.peak_rss_kib = max(self.peak_rss_kib, total)

    def log_tail(self, lines: int = 15) -> str:
        text = self.log.read_text(errors="replace") if self.log.exists() else ""
        return "\n    ".join(text.strip().splitlines()[-lines:])


class _Conn(http.client.HTTPConnection):
    """A connection that adds the server's extra headers (auth) to every request."""

    def __init__(self, extra: dict[str, str], *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.extra = extra

    def putrequest(self, method: str, url: str, *args, **kwargs) -> None:
        super().putrequest(method, url, *args, **kwargs)
        for k, v in self.extra.items():
            self.putheader(k, v)


class S3Target:
    """A bucket on the benchmark's radosgw."""

    def __init__(self, endpoint: str, bucket: str, key: str, secret: str) -> None:
        self.endpoint, self.bucket, self.key, self.secret = endpoint, bucket, key, secret


class Distribution(Server):
    # aws-sdk-go refuses to start with a custom CA bundle and distribution's own transport (plain http here)
    drop_env = ("AWS_CA_BUNDLE",)

    def __init__(self, name: str, tmp: Path, s3: S3Target | None = None, redirect: bool = False) -> None:
        super().__init__(name, tmp)
        self.s3, self.redirect = s3, redirect
        self.sibling: Server | None = None  # the same storage with redirects on (--storage s3)

    def command(self) -> tuple[list[str], dict[str, str]]:
        cfg = self.data.parent / f"{self.name}.yml"
        if self.s3 is None:
            storage = f"storage:\n  filesystem:\n    rootdirectory: {self.data}\n"
        else:
            t = self.s3
            storage = ("storage:\n  s3:\n"
                       f"    accesskey: {t.key}\n    secretkey: {t.secret}\n    region: us-east-1\n"
                       f"    regionendpoint: {t.endpoint}\n    bucket: {t.bucket}\n    secure: false\n"
                       "    v4auth: true\n    rootdirectory: /registry\n"
                       f"  redirect:\n    disable: {'false' if self.redirect else 'true'}\n")
        cfg.write_text(
            "version: 0.1\nlog:\n  level: error\n  accesslog:\n    disabled: true\n"
            f"{storage}  delete:\n    enabled: true\n"
            f"http:\n  addr: 127.0.0.1:{self.port}\n")
        return [DISTRIBUTION, "serve", str(cfg)], {}


class Berth(Server):
    KEY, SECRET = "AKIABERTHBENCH000001", "berth-bench-secret-0123456789"

    def __init__(self, tmp: Path, workers: int, auth: str = "none", s3: S3Target | None = None,
                 redirect: bool = False, name: str = "berth", database: Path | None = None) -> None:
        super().__init__(name, tmp)
        self.workers = workers
        self.auth = auth
        self.s3, self.redirect = s3, redirect
        self.database = database  # a sibling shares its SQLite file
        self.sibling: Server | None = None

    def command(self) -> tuple[list[str], dict[str, str]]:
        """By default no auth, like the distribution it is compared with; with --berth-auth iam every request
        carries a registry token, as docker's would. Repositories are created on first push."""
        cmd = [sys.executable, "-m", "berth", "serve", "--host", "127.0.0.1", "--port", str(self.port),
               "--data-dir", str(self.data), "--workers", str(self.workers)]
        env = {"BERTH_CREATE_ON_PUSH": "1", "BERTH_AUTH": self.auth,
               "BERTH_ADMIN_ACCESS_KEY_ID": self.KEY, "BERTH_ADMIN_SECRET_ACCESS_KEY": self.SECRET}
        if self.database is not None:  # and the master key its secrets were sealed with
            cmd += ["--database-url", f"sqlite:///{self.database}"]
            env["BERTH_MASTER_KEY_FILE"] = str(self.database.parent / "keys" / "master.key")
        if self.s3 is not None:
            t = self.s3
            cmd += ["--storage-url", f"s3://{t.bucket}/registry?endpoint={t.endpoint}&region=us-east-1"]
            env.update(AWS_ACCESS_KEY_ID=t.key, AWS_SECRET_ACCESS_KEY=t.secret)
            if self.redirect:
                cmd.append("--storage-redirect")
        return cmd, env

    def start(self, timeout: float = 60.0) -> None:
        super().start(timeout)
        if self.auth == "iam":  # aws ecr get-authorization-token, then HTTP Basic as docker login stores it
            import boto3

            ecr = boto3.client("ecr", endpoint_url=f"http://127.0.0.1:{self.port}", region_name="us-east-1",
                               aws_access_key_id=self.KEY, aws_secret_access_key=self.SECRET)
            token = ecr.get_authorization_token()["authorizationData"][0]["authorizationToken"]
            self.headers["Authorization"] = f"Basic {token}"


# ---- HTTP helpers -------------------------------------------------------------------------------------

def request(c: http.client.HTTPConnection, method: str, path: str, body: bytes | None = None,
            headers: dict[str, str] | None = None, expect: tuple[int, ...] = ()) -> tuple[int, dict, bytes]:
    c.request(method, path, body=body, headers=headers or {})
    r = c.getresponse()
    data = r.read()
    hdrs = {k.lower(): v for k, v in r.getheaders()}
    if expect and r.status not in expect:
        raise Failed(f"{method} {path} -> {r.status} {data[:200]!r}")
    return r.status, hdrs, data


def relative(location: str) -> str:
    u = urlsplit(location)
    return u.path + (f"?{u.query}" if u.query else "")


def with_digest(location: str, digest: str) -> str:
    return location + ("&" if "?" in location else "?") + "digest=" + digest


def start_upload(c: http.client.HTTPConnection, repo: str = REPO) -> str:
    _, h, _ = request(c, "POST", f"/v2/{repo}/blobs/uploads/", expect=(202,))
    if "location" not in h:
        raise Failed("POST blobs/uploads/ without Location")
    return relative(h["location"])


def send_file(c: http.client.HTTPConnection, method: str, path: str, f, offset: int, count: int,
              headers: dict[str, str]) -> http.client.HTTPResponse:
    """Headers through http.client, then the body straight from the file with sendfile(2)."""
    c.putrequest(method, path)
    for k, v in {**headers, "Content-Length": str(count)}.items():
        c.putheader(k, v)
    c.endheaders()
    if count:
        c.sock.sendfile(f, offset, count)
    r = c.getresponse()
    r.read()
    return r


def check_response_digest(r_headers: dict, digest: str) -> None:
    got = r_headers.get("docker-content-digest")
    if got is not None and got != digest:
        raise Failed(f"Docker-Content-Digest {got} != {digest}")


def check_blob(server: Server, digest: str, size: int) -> None:
    _, h, _ = request(server.conn(), "HEAD", f"/v2/{REPO}/blobs/{digest}", expect=(200,))
    if int(h.get("content-length", -1)) != size:
        raise Failed(f"HEAD {digest}: Content-Length {h.get('content-length')} != {size}")
    if h.get("docker-content-digest") != digest:
        raise Failed(f"HEAD {digest}: Docker-Content-Digest {h.get('docker-content-digest')}")


def get_raw(port: int, path: str, verify: str = "", headers: dict[str, str] | None = None) -> tuple[int, float]:
    """GET on a raw socket into a reused 1 MiB buffer; hashes only when `verify` is set."""
    extra = "".join(f"{k}: {v}\r\n" for k, v in (headers or {}).items())
    with socket.create_connection(("127.0.0.1", port), timeout=300) as s:
        t0 = time.perf_counter()
        s.sendall(f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n{extra}Connection: close\r\n\r\n".encode())
        head = b""
        while b"\r\n\r\n" not in head:
            chunk = s.recv(65536)
            if not chunk:
                raise Failed(f"GET {path}: connection closed in headers")
            head += chunk
        head, _, rest = head.partition(b"\r\n\r\n")
        lines = head.decode("latin-1").split("\r\n")
        if lines[0].split()[1] != ("206" if "Range" in (headers or {}) else "200"):
            raise Failed(f"GET {path}: {lines[0]}")
        length = [int(ln.split(":", 1)[1]) for ln in lines[1:] if ln.lower().startswith("content-length:")]
        if not length:
            raise Failed(f"GET {path}: no Content-Length")
        h = hashlib.sha256(rest)
        got, buf = len(rest), memoryview(bytearray(MiB))
        while got < length[0]:
            k = s.recv_into(buf, min(MiB, length[0] - got))
            if not k:
                break
            if verify:
                h.update(buf[:k])
            got += k
        elapsed = time.perf_counter() - t0
    if got != length[0]:
        raise Failed(f"GET {path}: {got} of {length[0]} bytes")
    if verify and "sha256:" + h.hexdigest() != verify:
        raise Failed(f"GET {path}: received sha256 differs")
    return got, elapsed


def get_redirected(port: int, path: str, verify: str = "", headers: dict[str, str] | None = None) -> tuple[int, float]:
    """GET that must answer 307; then GET the Location (the object store) as get_raw does. Both timed."""
    t0 = time.perf_counter()
    c = _Conn(headers or {}, "127.0.0.1", port, timeout=60)
    c.request("GET", path)
    r = c.getresponse()
    r.read()
    location = r.getheader("Location")
    c.close()
    if r.status not in (302, 307) or not location:
        raise Failed(f"GET {path}: {r.status}, not a redirect")
    u = urlsplit(location)
    if u.hostname != "127.0.0.1" or not u.port:
        raise Failed(f"redirect to {u.netloc}, not the local radosgw")
    got, elapsed = get_raw(u.port, u.path + "?" + u.query, verify=verify)
    return got, time.perf_counter() - t0


def run_clients(server: Server, items: list, fn, clients: int = CLIENTS) -> float:
    """`clients` threads, each with one keep-alive connection, drain `items`; returns the elapsed time."""
    q: queue.SimpleQueue = queue.SimpleQueue()
    for it in items:
        q.put(it)
    errors: list[BaseException] = []

    def worker() -> None:
        c = server.conn(60)
        try:
            while not errors:
                try:
                    item = q.get_nowait()
                except queue.Empty:
                    return
                fn(c, item)
        except Exception as e:  # noqa: BLE001 - reported below
            errors.append(e)
        finally:
            c.close()

    threads = [threading.Thread(target=worker) for _ in range(clients)]
    t0 = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    elapsed = time.perf_counter() - t0
    if errors:
        raise Failed(f"{len(errors)} client(s) failed, first: {errors[0]}")
    return elapsed


# ---- fixtures ------------------------------------------------------------------------------------------

def make_file(path: Path, size: int) -> str:
    """Incompressible, unique content written 1 MiB at a time; returns its digest."""
    pool, h = os.urandom(64 * MiB), hashlib.sha256()
    with open(path, "wb") as f:
        for off in range(0, size, MiB):
            start = random.randrange(63 * MiB)
            block = (os.urandom(32) + pool[start + 32:start + MiB])[:min(MiB, size - off)]
            h.update(block)
            f.write(block)
    return "sha256:" + h.hexdigest()


def blob(data: bytes) -> tuple[str, bytes]:
    return "sha256:" + hashlib.sha256(data).hexdigest(), data


def make_image() -> tuple[list[tuple[str, bytes]], bytes, str]:
    """A real gzip'd tar layer, its image config and the OCI manifest that binds them."""
    tar = io.BytesIO()
    with tarfile.open(fileobj=tar, mode="w") as tf:
        payload = b"hello from the berth benchmark\n"
        info = tarfile.TarInfo("hello.txt")
        info.size, info.mtime = len(payload), 1700000000
        tf.addfile(info, io.BytesIO(payload))
    layer = blob(gzip.compress(tar.getvalue(), mtime=0))
    config = blob(json.dumps({
        "architecture": "amd64", "os": "linux", "config": {"Cmd": ["/bin/sh"]},
        "rootfs": {"type": "layers", "diff_ids": ["sha256:" + hashlib.sha256(tar.getvalue()).hexdigest()]},
    }).encode())
    manifest = json.dumps({
        "schemaVersion": 2, "mediaType": MANIFEST,
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": config[0],
                   "size": len(config[1])},
        "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar+gzip", "digest": layer[0],
                    "size": len(layer[1])}],
    }).encode()
    return [config, layer], manifest, "sha256:" + hashlib.sha256(manifest).hexdigest()


# ---- workloads: each returns {row key: value} for one server ------------------------------------------

def per_gib(s: Server, before: float, nbytes: int) -> float:
    return (s.cpu_seconds() - before) / (nbytes / (1 << 30))


def w_push_monolithic(s: Server, fx: dict) -> dict:
    c = s.conn()
    before = s.cpu_seconds()
    t0 = time.perf_counter()
    location = start_upload(c)
    with open(fx["mono"], "rb") as f:
        r = send_file(c, "PUT", with_digest(location, fx["mono_digest"]), f, 0, fx["size"],
                      {"Content-Type": OCTET})
    elapsed = time.perf_counter() - t0
    if r.status != 201:
        raise Failed(f"PUT monolithic -> {r.status}")
    cpu = per_gib(s, before, fx["size"])
    check_response_digest({k.lower(): v for k, v in r.getheaders()}, fx["mono_digest"])
    check_blob(s, fx["mono_digest"], fx["size"])
    return {"push_mono": fx["size"] / elapsed / 1e6, "push_mono_cpu": cpu}


def w_push_chunked(s: Server, fx: dict) -> dict:
    c, size, chunk = s.conn(), fx["size"], 8 * MiB
    before = s.cpu_seconds()
    t0 = time.perf_counter()
    location = start_upload(c)
    with open(fx["chunked"], "rb") as f:
        for off in range(0, size, chunk):
            n = min(chunk, size - off)
            r = send_file(c, "PATCH", location, f, off, n,
                          {"Content-Type": OCTET, "Content-Range": f"{off}-{off + n - 1}"})
            if r.status != 202 or not r.getheader("Location"):
                raise Failed(f"PATCH at {off} -> {r.status}")
            if r.getheader("Range") not in (None, f"0-{off + n - 1}"):
                raise Failed(f"PATCH at {off}: Range {r.getheader('Range')}, expected 0-{off + n - 1}")
            location = relative(r.getheader("Location"))
        r = send_file(c, "PUT", with_digest(location, fx["chunked_digest"]), f, 0, 0, {})
    elapsed = time.perf_counter() - t0
    cpu = per_gib(s, before, size)
    if r.status != 201:
        raise Failed(f"closing PUT -> {r.status}")
    check_blob(s, fx["chunked_digest"], size)
    return {"push_chunked": size / elapsed / 1e6, "push_chunked_cpu": cpu}


def w_pull(s: Server, fx: dict) -> dict:
    """One GET whose bytes the client hashes (checked), then two timed GETs that discard them (the
    client's sha256, ~1.4 GB/s, would cap the rate); all of the blob, then bytes 1- of it (206)."""
    path = f"/v2/{REPO}/blobs/{fx['mono_digest']}"
    got, elapsed = get_raw(s.port, path, verify=fx["mono_digest"], headers=s.headers)
    out: dict[str, list[float]] = {"pull_verified": [got / elapsed / 1e6]}
    for key, extra in (("pull", {}), ("pull_range", {"Range": "bytes=1-"})):
        for _ in range(2):
            before = s.cpu_seconds()
            got, elapsed = get_raw(s.port, path, headers={**s.headers, **extra})
            if got != fx["size"] - (1 if extra else 0):
                raise Failed(f"GET {path} {extra}: {got} bytes")
            out.setdefault(key, []).append(got / elapsed / 1e6)
            out.setdefault(key + "_cpu", []).append(per_gib(s, before, got))
    return out


def w_pull_redirected(s: Server, fx: dict) -> dict:
    sib = getattr(s, "sibling", None)
    if sib is None:
        raise Failed("no sibling with redirects")
    path = f"/v2/{REPO}/blobs/{fx['mono_digest']}"
    got, elapsed = get_redirected(sib.port, path, verify=fx["mono_digest"], headers=s.headers)
    rates = []
    for _ in range(3):
        got, elapsed = get_redirected(sib.port, path, headers=s.headers)
        rates.append(got / elapsed / 1e6)
    return {"pull_redirected": statistics.median(rates)}


def w_small_blobs(s: Server, fx: dict) -> dict:
    def push(c: http.client.HTTPConnection, item: tuple[str, bytes]) -> None:
        location = start_upload(c)
        _, h, _ = request(c, "PUT", with_digest(location, item[0]), body=item[1],
                          headers={"Content-Type": OCTET}, expect=(201,))
        check_response_digest(h, item[0])

    small = [blob(os.urandom(len(data))) for _, data in fx["small"]]  # new bytes each round: never a re-push
    before = s.cpu_seconds()
    elapsed = run_clients(s, small, push)
    cpu = (s.cpu_seconds() - before) / len(small) * 1e3
    for digest, data in small[:: max(1, len(small) // 50)]:
        check_blob(s, digest, len(data))
    fx.setdefault("small_pushed", {})[s.name] = small
    return {"small": len(small) / elapsed, "small_cpu": cpu}


def w_small_pull(s: Server, fx: dict) -> dict:
    """GETs of the small blobs just pushed (4-64 KiB), 16 clients on keep-alive connections, each
    body checked against its digest."""
    small = fx.get("small_pushed", {}).get(s.name)
    if not small:
        raise Failed("runs after small_blobs (it pulls what that pushed)")

    def get(c: http.client.HTTPConnection, item: tuple[str, bytes]) -> None:
        _, _, body = request(c, "GET", f"/v2/{REPO}/blobs/{item[0]}", expect=(200,))
        if body != item[1]:
            raise Failed(f"GET {item[0]}: other bytes")

    items = small * 4
    before = s.cpu_seconds()
    elapsed = run_clients(s, items, get)
    return {"small_pull": len(items) / elapsed, "small_pull_cpu": (s.cpu_seconds() - before) / len(items) * 1e3}


def push_image(c: http.client.HTTPConnection, fx: dict, repo: str, tag: str) -> None:
    for digest, data in fx["image_blobs"]:
        request(c, "PUT", with_digest(start_upload(c, repo), digest), body=data, headers={"Content-Type": OCTET},
                expect=(201,))
    request(c, "PUT", f"/v2/{repo}/manifests/{tag}", body=fx["manifest"], headers={"Content-Type": MANIFEST},
            expect=(201,))


def w_concurrent(s: Server, fx: dict) -> dict:
    """CONCURRENT monolithic pushes of different blobs at once, then CONCURRENT pulls of them while one
    client GETs a manifest by tag over and over: the manifest's latency is whether the pulls starve
    the server's other requests. Rates are the sum over the streams. A repository of its own."""
    files, repo = fx["concurrent"], REPO + "-concurrent"
    c = s.conn()
    push_image(c, fx, repo, "probe")

    def push(item: tuple[Path, str, int]) -> None:
        path, digest, size = item
        conn = s.conn()
        with open(path, "rb") as f:
            r = send_file(conn, "PUT", with_digest(start_upload(conn, repo), digest), f, 0, size,
                          {"Content-Type": OCTET})
        if r.status != 201:
            raise Failed(f"concurrent PUT -> {r.status}")

    def pull(item: tuple[Path, str, int]) -> None:
        got, _ = get_raw(s.port, f"/v2/{repo}/blobs/{item[1]}", headers=s.headers)
        if got != item[2]:
            raise Failed(f"concurrent GET: {got} of {item[2]} bytes")

    def at_once(fn) -> float:
        return fan_out(fn, files, Failed, "streams")

    total = sum(size for _, _, size in files)
    push_elapsed = at_once(push)
    latencies: list[float] = []
    done = threading.Event()

    def probe() -> None:
        conn = s.conn(60)
        while not done.is_set():
            t0 = time.perf_counter()
            _, _, body = request(conn, "GET", f"/v2/{repo}/manifests/probe", headers={"Accept": MANIFEST},
                                 expect=(200,))
            latencies.append((time.perf_counter() - t0) * 1e3)
            if body != fx["manifest"]:
                latencies.clear()  # reported as too few below
                return
            time.sleep(0.005)

    prober = threading.Thread(target=probe, daemon=True)
    prober.start()
    pull_elapsed = at_once(pull)
    done.set()
    prober.join(60)
    if not latencies:
        raise Failed("no manifest GET answered (with the right bytes) during the pulls")
    if len(latencies) < 100:
        fx["notes"].append(f"{s.name}: {len(latencies)} manifest GETs during a round of concurrent pulls "
                           "(under 100: the p99 is nearly their maximum)")
    latencies.sort()
    return {"conc_push": total / push_elapsed / 1e6, "conc_pull": total / pull_elapsed / 1e6,
            "conc_manifest_p99": latencies[int(len(latencies) * 0.99)]}


def w_manifest_push(s: Server, fx: dict) -> dict:
    c = s.conn()
    for digest, data in fx["image_blobs"]:
        request(c, "PUT", with_digest(start_upload(c), digest), body=data, headers={"Content-Type": OCTET},
                expect=(201,))

    def put(c: http.client.HTTPConnection, tag: str) -> None:
        _, h, _ = request(c, "PUT", f"/v2/{REPO}/manifests/{tag}", body=fx["manifest"],
                          headers={"Content-Type": MANIFEST}, expect=(201,))
        check_response_digest(h, fx["manifest_digest"])

    elapsed = run_clients(s, fx["tags"], put)
    for tag in (fx["tags"][0], fx["tags"][-1]):
        _, h, body = request(c, "GET", f"/v2/{REPO}/manifests/{tag}", headers={"Accept": MANIFEST},
                             expect=(200,))
        if body != fx["manifest"] or h.get("docker-content-digest") != fx["manifest_digest"]:
            raise Failed(f"GET manifests/{tag} returned other bytes or digest")
        if h.get("content-type") != MANIFEST:
            raise Failed(f"GET manifests/{tag}: Content-Type {h.get('content-type')}")
    return {"manifest_push": len(fx["tags"]) / elapsed}


def w_manifest_get(s: Server, fx: dict) -> dict:
    url = f"http://127.0.0.1:{s.port}/v2/{REPO}/manifests/{fx['tags'][0]}"
    extra = [arg for k, v in s.headers.items() for arg in ("-H", f"{k}: {v}")]
    out = subprocess.run(["wrk", "-t2", "-c64", f"-d{fx['duration']}s", "--latency", "-H",
                          f"Accept: {MANIFEST}", *extra, url], capture_output=True, text=True,
                         timeout=fx["duration"] + 60).stdout
    if "Non-2xx or 3xx responses" in out:
        raise Failed("wrk: " + re.search(r"Non-2xx or 3xx responses: *\d+", out).group(0))
    if m := re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", out):
        if any(int(n) for n in m.groups()[:3]):
            raise Failed("wrk: " + m.group(0))
        fx["notes"].append(f"{s.name}: wrk counted {m.group(4)} request(s) slower than 2 s (timeouts)")
    rps = re.search(r"Requests/sec:\s+([\d.]+)", out)
    p99 = re.search(r"99%\s+([\d.]+)(us|ms|s)\b", out)
    if not rps or not p99:
        raise Failed(f"cannot parse wrk output: {out[-300:]!r}")
    scale = {"us": 1e-3, "ms": 1.0, "s": 1e3}[p99.group(2)]
    return {"manifest_get": float(rps.group(1)), "manifest_get_p99": float(p99.group(1)) * scale}


def list_tags(c: http.client.HTTPConnection, path: str, pages: int) -> list[str]:
    """Follow Link rel="next" for at most `pages` pages (one page: just the first)."""
    tags: list[str] = []
    for _ in range(pages):
        _, h, body = request(c, "GET", path, expect=(200,))
        doc = json.loads(body)
        if doc.get("name") != REPO:
            raise Failed(f"tags/list name {doc.get('name')!r}")
        tags += doc.get("tags") or []
        m = re.search(r'<([^>]+)>\s*;\s*rel="?next"?', h.get("link", ""))
        if not m or pages == 1:
            return tags
        path = relative(m.group(1))
    raise Failed(f"tags/list: still a next link after {pages} pages")


def w_tags_list(s: Server, fx: dict) -> dict:
    c, first, full = s.conn(), [], []
    for _ in range(5):
        t0 = time.perf_counter()
        page = list_tags(c, f"/v2/{REPO}/tags/list?n=100", pages=1)
        first.append((time.perf_counter() - t0) * 1e3)
    if not page or not set(page) <= set(fx["tags"]):
        raise Failed(f"tags/list?n=100 returned {len(page)} tags, not all of them pushed")
    if len(page) != 100:
        fx["notes"].append(f"{s.name}: tags/list?n=100 returned {len(page)} tags (n ignored?)")
    if page != sorted(page):
        fx["notes"].append(f"{s.name}: tags/list is not in lexical order (the OCI spec asks for it)")
    for _ in range(3):
        t0 = time.perf_counter()
        tags = list_tags(c, f"/v2/{REPO}/tags/list", pages=len(fx["tags"]) + 1)
        full.append((time.perf_counter() - t0) * 1e3)
    if sorted(tags) != sorted(fx["tags"]):
        raise Failed(f"full tags/list returned {len(tags)} tags ({len(set(tags))} distinct), "
                     f"expected {len(fx['tags'])}")
    return {"tags_first": statistics.median(first), "tags_full": statistics.median(full)}


# each workload with the rows it fills (all FAILED when it raises)
WORKLOADS = [(w_push_monolithic, ["push_mono", "push_mono_cpu"]),
             (w_push_chunked, ["push_chunked", "push_chunked_cpu"]),
             (w_pull, ["pull", "pull_cpu", "pull_range", "pull_range_cpu", "pull_verified"]),
             (w_concurrent, ["conc_push", "conc_pull", "conc_manifest_p99"]),
             (w_small_blobs, ["small", "small_cpu"]), (w_small_pull, ["small_pull", "small_pull_cpu"]),
             (w_manifest_push, ["manifest_push"]), (w_manifest_get, ["manifest_get", "manifest_get_p99"]),
             (w_tags_list, ["tags_first", "tags_full"])]

# on S3 (--storage s3): the workloads the issue names, each ratio >= 1.0
S3_WORKLOADS = [(w_push_monolithic, ["push_mono", "push_mono_cpu"]),
                (w_push_chunked, ["push_chunked", "push_chunked_cpu"]),
                (w_pull, ["pull", "pull_cpu", "pull_range", "pull_range_cpu", "pull_verified"]),
                (w_pull_redirected, ["pull_redirected"]),
                (w_manifest_push, ["manifest_push"]), (w_manifest_get, ["manifest_get", "manifest_get_p99"])]

# key, label, number format, target: (kind, bound) with kind ratio-min | ratio-max | abs-min | abs-max | None.
# CPU rows (the server's user + system seconds) decide on a shared machine: rates swing with the load.
ROWS = [
    ("push_mono", "push {size} blob, monolithic (MB/s)", "{:.0f}", ("ratio-min", 3.0)),
    ("push_mono_cpu", "push, monolithic: server CPU (s per GiB)", "{:.2f}", None),
    ("push_chunked", "push {size} blob, 8 MiB chunks (MB/s)", "{:.0f}", ("ratio-min", 3.0)),
    ("push_chunked_cpu", "push, chunked: server CPU (s per GiB)", "{:.2f}", None),
    ("pull", "pull {size} blob (MB/s)", "{:.0f}", ("ratio-min", 1.5)),
    ("pull_cpu", "pull: server CPU (s per GiB)", "{:.2f}", ("ratio-max", 1.0)),
    ("pull_range", "pull {size} blob, Range bytes=1- (MB/s)", "{:.0f}", ("ratio-min", 1.5)),
    ("pull_range_cpu", "pull, ranged: server CPU (s per GiB)", "{:.2f}", ("ratio-max", 1.0)),
    ("pull_verified", "pull {size} blob, client sha256 (MB/s)", "{:.0f}", None),
    ("conc_push", "{conc} concurrent pushes of {csize} blobs (MB/s, sum)", "{:.0f}", ("ratio-min", 3.0)),
    ("conc_pull", "{conc} concurrent pulls of {csize} blobs (MB/s, sum)", "{:.0f}", ("ratio-min", 1.5)),
    ("conc_manifest_p99", "manifest GET during the {conc} pulls, p99 (ms)", "{:.1f}", ("abs-max", 20)),
    ("small", "{small} small blobs pushed, 4-64 KiB, 16 clients (blobs/s)", "{:.0f}", ("ratio-min", 2.0)),
    ("small_cpu", "small blob push: server CPU (ms per blob)", "{:.2f}", None),
    ("small_pull", "small blob GETs, 16 clients (GET/s)", "{:.0f}", ("ratio-min", 2.0)),
    ("small_pull_cpu", "small blob GET: server CPU (ms per GET)", "{:.2f}", None),
    ("manifest_push", "manifest PUT, {tags} tags, 16 clients (PUT/s)", "{:.0f}", ("ratio-min", 1.0)),
    ("manifest_get", "manifest GET by tag, wrk 64 conns (req/s)", "{:.0f}", ("abs-min", 10_000)),
    ("manifest_get_p99", "manifest GET by tag, p99 (ms)", "{:.2f}", None),
    ("tags_first", "tags/list?n=100 of {tags} tags (ms)", "{:.1f}", None),
    ("tags_full", "tags/list, all {tags} tags (ms)", "{:.1f}", None),
    ("pss", "peak memory, summed PSS sampled every 50 ms (MiB)", "{:.0f}", ("abs-max", 150)),
    ("rss", "peak RSS, sum of VmHWM, shared pages counted twice (MiB)", "{:.0f}", ("abs-max", 150)),
]

S3_ROWS = [
    ("push_mono", "push {size} blob, monolithic (MB/s)", "{:.0f}", ("ratio-min", 1.0)),
    ("push_mono_cpu", "push, monolithic: server CPU (s per GiB)", "{:.2f}", None),
    ("push_chunked", "push {size} blob, 8 MiB chunks (MB/s)", "{:.0f}", ("ratio-min", 1.0)),
    ("push_chunked_cpu", "push, chunked: server CPU (s per GiB)", "{:.2f}", None),
    ("pull", "pull {size} blob, streamed (MB/s)", "{:.0f}", ("ratio-min", 1.0)),
    ("pull_cpu", "pull, streamed: server CPU (s per GiB)", "{:.2f}", None),
    ("pull_range", "pull {size} blob, streamed, Range bytes=1- (MB/s)", "{:.0f}", ("ratio-min", 1.0)),
    ("pull_range_cpu", "pull, streamed, ranged: server CPU (s per GiB)", "{:.2f}", None),
    ("pull_redirected", "pull {size} blob, 307 + GET from radosgw (MB/s)", "{:.0f}", ("ratio-min", 1.0)),
    ("manifest_push", "manifest PUT, {tags} tags, 16 clients (PUT/s)", "{:.0f}", ("ratio-min", 1.0)),
    ("manifest_get", "manifest GET by tag, wrk 64 conns (req/s)", "{:.0f}", ("ratio-min", 1.0)),
    ("manifest_get_p99", "manifest GET by tag, p99 (ms)", "{:.2f}", None),
    ("pss", "peak memory of the streaming server, summed PSS sampled every 50 ms (MiB)", "{:.0f}",
     ("abs-max", 150)),
    ("rss", "peak RSS of the streaming server, sum of VmHWM, shared pages counted twice (MiB)", "{:.0f}",
     None),
]

NAMES = ("distribution", "berth")


def median_of(values) -> float | str | None:
    """The median of a row's values, "FAILED" if any round failed, None if it did not run."""
    if values is None:
        return None
    if any(not isinstance(v, float | int) for v in values):
        return "FAILED"
    return statistics.median(values)


def round_ratios(results: dict, key: str) -> list[float]:
    """Berth / distribution per round: the two ran next to each other, so each ratio saw one load."""
    d, b = results.get((key, "distribution")), results.get((key, "berth"))
    if not d or not b or median_of(d) == "FAILED" or median_of(b) == "FAILED":
        return []
    return [y / x for x, y in zip(d, b, strict=False) if x]


def target_cell(target: tuple[str, float] | None, ratio: float | None, berth) -> str:
    if target is None:
        return ""
    kind, bound = target
    text = {"ratio-min": f"≥ {bound:g}×", "ratio-max": f"≤ {bound:g}×", "abs-min": f"≥ {bound:,.0f} (Berth)",
            "abs-max": f"< {bound:g} (Berth)"}[kind]
    if not isinstance(berth, float | int) or (kind.startswith("ratio") and ratio is None):
        return text
    ok = {"ratio-min": lambda: ratio >= bound, "ratio-max": lambda: ratio <= bound,
          "abs-min": lambda: berth >= bound, "abs-max": lambda: berth < bound}[kind]()
    return f"{text} {'met' if ok else 'MISSED'}"


def cell(fmt: str, values) -> str:
    m = median_of(values)
    if m is None:
        return "—"
    if isinstance(m, str):
        return m
    if len(values) == 1:
        return fmt.format(m)
    return f"{fmt.format(m)} ({fmt.format(min(values))}–{fmt.format(max(values))})"


def table(results: dict, args: argparse.Namespace) -> str:
    def mib(n: int) -> str:
        return f"{n} MiB" if n % 1024 else f"{n // 1024} GiB"

    lines = ["| workload | distribution | berth | ratio (berth/dist) | target |", "|---|---:|---:|---:|---|"]
    for key, label, fmt, target in (S3_ROWS if args.storage == "s3" else ROWS):
        cells = [cell(fmt, results.get((key, name))) for name in NAMES]
        ratios = round_ratios(results, key)
        ratio = statistics.median(ratios) if ratios else None
        ratio_text = "" if ratio is None else f"{ratio:.2f}×" + (
            f" ({min(ratios):.2f}–{max(ratios):.2f})" if len(ratios) > 1 else "")
        name = label.format(size=mib(args.size_mib), tags=f"{args.tags:,}", conc=args.concurrent,
                            csize=mib(args.concurrent_mib), small=args.small_blobs)
        lines.append(f"| {name} | {cells[0]} | {cells[1]} | {ratio_text} | "
                     f"{target_cell(target, ratio, median_of(results.get((key, 'berth'))))} |")
    return "\n".join(lines)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--size-mib", type=int, default=1024, help="size of the big blobs (default 1024)")
    p.add_argument("--only", choices=("distribution", "berth"), help="run against one server only")
    p.add_argument("--berth-workers", type=int, default=1, help="berth serve --workers (default 1)")
    p.add_argument("--berth-auth", choices=("none", "iam"), default="none",
                   help="berth serve --auth; with iam every request carries a registry token (default none)")
    p.add_argument("--duration", type=int, default=10, help="seconds of wrk per server (default 10)")
    p.add_argument("--tags", type=int, default=TAGS, help=f"tags to create (default {TAGS})")
    p.add_argument("--tmp-dir", help="where blobs and both data dirs go (default: the system temp dir)")
    p.add_argument("--workloads", help="comma-separated workloads to run (default: all); pull reads what "
                   "push_monolithic wrote, e.g. push_monolithic,pull")
    p.add_argument("--storage", choices=("filesystem", "s3"), default="filesystem",
                   help="where both keep blobs: their filesystem drivers, or one throwaway radosgw (s3)")
    p.add_argument("--rounds", type=int, default=3, help="rounds of each workload; the two servers alternate, "
                   "first one then the other, and the cells are medians with the spread (default 3)")
    p.add_argument("--concurrent", type=int, default=8, help="streams of the concurrent workload (default 8)")
    p.add_argument("--concurrent-mib", type=int, help="size of each concurrent stream's blob (default --size-mib)")
    p.add_argument("--small-blobs", type=int, default=SMALL_BLOBS, help=f"small blobs (default {SMALL_BLOBS})")
    p.add_argument("--quick", action="store_true", help="under two minutes: 128 MiB blobs, 8 x 32 MiB concurrent, "
                   "100 small blobs, 200 tags, 2 s of wrk, 3 rounds")
    args = p.parse_args()
    given = {a.split("=", 1)[0] for a in sys.argv[1:]}
    if args.quick:
        for name, value in (("size_mib", 128), ("concurrent_mib", 32), ("small_blobs", 100), ("tags", 200),
                            ("duration", 2)):
            if "--" + name.replace("_", "-") not in given:
                setattr(args, name, value)
    if args.storage == "s3" and "--tags" not in given:
        args.tags = 500  # distribution writes each tag to S3: 10,000 would take minutes
    if args.concurrent_mib is None:
        args.concurrent_mib = args.size_mib
    if not 1 <= args.size_mib <= 16384 or not 1 <= args.duration <= 600 or not 100 <= args.tags <= 100_000 \
            or not 1 <= args.rounds <= 20 or not 1 <= args.concurrent <= 64 or not 1 <= args.concurrent_mib <= 16384:
        p.error("--size-mib 1..16384, --duration 1..600, --tags 100..100000, --rounds 1..20, --concurrent 1..64")
    started = time.monotonic()

    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # run the cleanup below on `kill` too
    load = os.getloadavg()[0]
    tmp = Path(tempfile.mkdtemp(prefix="berth-bench-", dir=args.tmp_dir))
    servers: list[Server] = []
    results: dict = {}
    notes: list[str] = []
    cleanup: list = []
    try:
        chosen = set(args.workloads.split(",")) if args.workloads else None
        print(f"generating two {args.size_mib} MiB blobs and fixtures in {tmp} ...", file=sys.stderr)
        size = args.size_mib * MiB
        rnd = random.Random(1)
        fx = {"size": size, "mono": tmp / "mono.bin", "chunked": tmp / "chunked.bin",
              "duration": args.duration,
              "small": [blob(os.urandom(rnd.randint(4 * 1024, 64 * 1024))) for _ in range(args.small_blobs)],
              "tags": [f"t{i:05d}" for i in range(args.tags)], "notes": notes}
        fx["mono_digest"] = make_file(fx["mono"], size)
        fx["chunked_digest"] = make_file(fx["chunked"], size)
        fx["image_blobs"], fx["manifest"], fx["manifest_digest"] = make_image()
        fx["concurrent"] = []
        if args.storage != "s3" and (chosen is None or "concurrent" in chosen):
            for i in range(args.concurrent):
                path = tmp / f"concurrent-{i}.bin"
                fx["concurrent"].append((path, make_file(path, args.concurrent_mib * MiB), args.concurrent_mib * MiB))

        targets: dict[str, S3Target] = {}
        if args.storage == "s3":
            sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
            from tests.support.ceph import CephCluster

            print("starting a one-node Ceph with radosgw ...", file=sys.stderr)
            cluster = CephCluster(memstore_bytes=max(8 << 30, 7 * size))
            cleanup.append(cluster.stop)
            cluster.start()
            notes.append(f"radosgw (Ceph 16.2, one memstore OSD) ready in {cluster.started_in:.1f} s; "
                         "distribution: s3 driver, regionendpoint = radosgw, path style; berth: --storage-url s3://")
            for name in ("distribution", "berth"):
                bucket = cluster.new_bucket(name)
                warm = cluster.client()  # a bucket's first object and first multipart upload cost ~2 s each
                warm.put_object(Bucket=bucket, Key="warm", Body=b"x")
                up = warm.create_multipart_upload(Bucket=bucket, Key="warm-mp")
                warm.abort_multipart_upload(Bucket=bucket, Key="warm-mp", UploadId=up["UploadId"])
                warm.delete_object(Bucket=bucket, Key="warm")
                targets[name] = S3Target(cluster.endpoint, bucket, cluster.access_key, cluster.secret_key)

        for name in ("distribution", "berth"):
            if args.only and args.only != name:
                continue
            t = targets.get(name)
            if name == "distribution":
                server: Server = Distribution(name, tmp, s3=t)
                sibling: Server | None = Distribution(name + "-redirect", tmp, s3=t, redirect=True) if t else None
            else:
                server = Berth(tmp, args.berth_workers, args.berth_auth, s3=t)
                sibling = Berth(tmp, args.berth_workers, args.berth_auth, s3=t, redirect=True,
                                name="berth-redirect", database=server.data / "berth.db") if t else None
            servers.append(server)
            try:
                server.start()
                if sibling is not None:
                    servers.append(sibling)
                    sibling.start()
                    sibling.headers = server.headers
                    server.sibling = sibling  # type: ignore[attr-defined]
            except Failed as e:
                notes.append(f"{name}: start FAILED: {e}")
                server.stop()
                for key, *_ in ROWS:
                    results[key, name] = ["FAILED"]
        running = [s for s in servers if s.proc is not None and s.name in ("distribution", "berth")]

        loads: list[float] = []
        for workload, keys in (S3_WORKLOADS if args.storage == "s3" else WORKLOADS):
            name = workload.__name__[2:]
            if chosen is not None and name not in chosen:
                continue
            for r in range(args.rounds):
                for s in (running if r % 2 == 0 else running[::-1]):  # alternate who goes first
                    loads.append(os.getloadavg()[0])
                    print(f"{name} on {s.name}, round {r + 1} of {args.rounds} (load {loads[-1]:.1f}) ...",
                          file=sys.stderr)
                    os.sync()  # start each run with no dirty pages left from the fixtures or the other server
                    t0 = time.monotonic()
                    try:
                        for key, v in workload(s, fx).items():
                            results.setdefault((key, s.name), []).extend(v if isinstance(v, list) else [v])
                    except Exception as e:  # noqa: BLE001 - a failed row, not a failed run
                        for key in keys:
                            results.setdefault((key, s.name), []).append("FAILED")
                        notes.append(f"{s.name}: {name} round {r + 1} FAILED: {type(e).__name__}: {e}")
                    for other in running:
                        other.sample_rss()
                    print(f"    {time.monotonic() - t0:.1f} s; peak PSS so far {s.peak_pss_kib / 1024:.0f} MiB, "
                          f"RSS {s.peak_rss_kib / 1024:.0f} MiB", file=sys.stderr)
        for s in running:
            s.sample_rss()
            results["rss", s.name] = [s.peak_rss_kib / 1024]
            results["pss", s.name] = [s.peak_pss_kib / 1024]
            if s.proc is not None and s.proc.poll() is not None:
                notes.append(f"{s.name} exited during the run ({s.proc.returncode}): {s.log_tail()}")
            elif any(n.startswith(s.name + ":") and "FAILED" in n for n in notes):
                notes.append(f"{s.name} log tail:\n    {s.log_tail()}")
    finally:
        for s in servers:
            s.stop()
        for fn in cleanup:
            fn()
        shutil.rmtree(tmp, ignore_errors=True)

    rev = subprocess.run(["git", "-C", str(Path(__file__).resolve().parent), "rev-parse", "--short", "HEAD"],
                         capture_output=True, text=True).stdout.strip() or "unknown"
    header = (f"Berth ({rev}) vs CNCF distribution 2.8.2 on 127.0.0.1, {datetime.now():%Y-%m-%d %H:%M}, "
              f"{os.cpu_count()} CPUs, berth --workers {args.berth_workers} --auth {args.berth_auth}, "
              f"wrk -t2 -c64 -d{args.duration}s, storage {args.storage}, {args.rounds} round(s) per workload "
              f"alternating the servers{', --quick' if args.quick else ''}, {time.monotonic() - started:.0f} s\n\n"
              f"Load average (1 min): {load:.1f} at start, {os.getloadavg()[0]:.1f} at end"
              + (f", {min(loads):.1f}–{max(loads):.1f} (median {statistics.median(loads):.1f}) as each run began"
                 if loads else "") + ". Cells: median (min–max) over the rounds; the ratio is the median of "
              "each round's berth/distribution (the two ran one after the other, under one load). The CPU rows "
              "(the server's user + system seconds) hold up on a busy machine; the rates do not.")
    out = header + "\n\n" + table(results, args) + "\n"
    if notes:
        out += "\nNotes:\n" + "".join(f"- {n}\n" for n in notes)
    print(out)
    results_dir = Path(__file__).resolve().parent / "results"
    results_dir.mkdir(exist_ok=True)
    (results_dir / ("latest-s3.md" if args.storage == "s3" else "latest.md")).write_text(out)
    return 1 if any("FAILED" in v for v in results.values()) else 0


if __name__ == "__main__":
    sys.exit(main())
