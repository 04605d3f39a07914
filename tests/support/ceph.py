"""A throwaway one-node Ceph cluster with radosgw: real S3 for the tests and the benchmark.

One monitor, one memstore OSD (RAM, capped) and one radosgw, all on 127.0.0.1 with private ports,
in a temporary directory. The daemons fork; they are stopped by the PIDs in the run directory.
Measured here: ready in ~12-13 s, stopped in ~6 s (the memstore OSD is the slow one).
"""

from __future__ import annotations

import os
import random
import shutil
import signal
import socket
import subprocess
import tempfile
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx

from tests.support.servers import free_port, require_tool

ACCESS_KEY = "BERTHTESTACCESSKEY00"
SECRET_KEY = "berth-test-secret-key-0000000000000000000"
TOOLS = ("ceph-mon", "ceph-osd", "radosgw", "radosgw-admin", "ceph", "monmaptool", "ceph-authtool")

# Without these radosgw loops on "get_initial_auth_request returned -13" (measured here).
_MS_MODES = ("ms mon client mode", "ms client mode", "ms service mode", "ms cluster mode",
             "ms mon service mode", "ms mon cluster mode")


def _free_range(width: int) -> int:
    """The first port of `width` consecutive free ports, for the daemons' messengers.

    Below the ephemeral range (32768-60999 here): a busy test session leaves thousands of its own
    client connections in TIME_WAIT there, and a port in TIME_WAIT cannot be bound again."""
    low, _ = (int(p) for p in Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split())
    for _ in range(200):
        base = random.randrange(10_000, max(low - width, 10_001))
        try:
            for p in range(base, base + width):
                with socket.socket() as s:
                    s.bind(("127.0.0.1", p))
        except OSError:
            continue
        return base
    raise RuntimeError("no free port range")


class CephCluster:
    """mon.a + osd.0 (memstore) + client.rgw.a; S3 at `endpoint` with ACCESS_KEY/SECRET_KEY."""

    def __init__(self, memstore_bytes: int = 4 << 30) -> None:
        self.dir = Path(tempfile.mkdtemp(prefix="berth-ceph-"))
        self.memstore_bytes = memstore_bytes
        self.mon_port = free_port()
        self.rgw_port = free_port()
        self.endpoint = f"http://127.0.0.1:{self.rgw_port}"
        self.access_key = ACCESS_KEY
        self.secret_key = SECRET_KEY
        self.region = "us-east-1"
        self.conf = self.dir / "ceph.conf"
        self.started_in = 0.0
        self._buckets = 0
        self._shared_bucket = ""

    # configuration

    def _write_conf(self) -> None:
        d = self.dir
        base = _free_range(40)
        lines = [
            "[global]",
            f"fsid = {uuid.uuid4()}",
            "mon initial members = a",
            f"mon host = v2:127.0.0.1:{self.mon_port}",
            "public addr = 127.0.0.1", "cluster addr = 127.0.0.1",
            "ms bind ipv4 = true", "ms bind ipv6 = false",
            f"ms bind port min = {base}", f"ms bind port max = {base + 39}",
            *[f"{opt} = crc secure" for opt in _MS_MODES],
            "auth cluster required = none", "auth service required = none", "auth client required = none",
            "auth allow insecure global id reclaim = false",
            "osd pool default size = 1", "osd pool default min size = 1",
            "osd pool default pg num = 8", "osd pool default pgp num = 8",
            "osd pool default pg autoscale mode = off", "mon max pg per osd = 1000",
            "osd crush chooseleaf type = 0",
            "mon warn on pool no redundancy = false", "mon allow pool delete = true",
            f"run dir = {d}/run", f"admin socket = {d}/run/$name.asok", f"pid file = {d}/run/$name.pid",
            f"log file = {d}/log/$name.log", "log to stderr = false", "err to stderr = false",
            f"keyring = {d}/keyring",
            f"mon data = {d}/mon/$cluster-$id", f"osd data = {d}/osd/$cluster-$id",
            "osd objectstore = memstore", f"memstore device bytes = {self.memstore_bytes}",
            "osd max object size = 134217728",
            "[client.rgw.a]",
            f"rgw frontends = beast endpoint=127.0.0.1:{self.rgw_port}",
            f"rgw data = {d}/rgw",
            "rgw dns name = localhost",
            # deleted objects and aborted uploads free RAM soon, not after the default two hours
            "rgw gc obj min wait = 1", "rgw gc processor period = 5", "rgw gc processor max time = 5",
        ]
        self.conf.write_text("\n".join(lines) + "\n")

    def _run(self, *cmd: str, timeout: float = 60) -> str:
        p = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
        if p.returncode != 0:
            raise RuntimeError(f"{' '.join(cmd)} failed ({p.returncode}): {p.stderr.strip()[-2000:]}")
        return p.stdout

    def ceph(self, *args: str, timeout: float = 30) -> str:
        return self._run("ceph", "-c", str(self.conf), "--connect-timeout", "10", *args, timeout=timeout)

    # lifecycle

    def start(self, timeout: float = 60) -> CephCluster:
        require_tool(*TOOLS)
        began = time.monotonic()
        d, c = self.dir, str(self.conf)
        for sub in ("run", "log", "mon/ceph-a", "osd/ceph-0", "rgw"):
            (d / sub).mkdir(parents=True, exist_ok=True)
        self._write_conf()
        try:
            keyring = str(d / "keyring")
            self._run("ceph-authtool", "--create-keyring", keyring, "--gen-key", "-n", "mon.",
                      "--cap", "mon", "allow *")
            self._run("monmaptool", "--create", "--addv", "a", f"[v2:127.0.0.1:{self.mon_port}]",
                      "--fsid", self._fsid(), str(d / "monmap"))
            self._run("ceph-mon", "-c", c, "--mkfs", "-i", "a", "--monmap", str(d / "monmap"), "--keyring", keyring)
            self._run("ceph-mon", "-c", c, "-i", "a")
            osd_uuid = str(uuid.uuid4())
            osd_id = self.ceph("osd", "new", osd_uuid).strip()
            self._run("ceph-osd", "-c", c, "-i", osd_id, "--mkfs", "--osd-uuid", osd_uuid)
            self._run("ceph-osd", "-c", c, "-i", osd_id)
            self._wait(lambda: '"num_up_osds":1' in self.ceph("osd", "stat", "-f", "json").replace(" ", ""),
                       began + timeout, "osd up")
            self._run("radosgw", "-c", c, "-n", "client.rgw.a")
            self._wait(self._rgw_answers, began + timeout, "radosgw")
            self._run("radosgw-admin", "-c", c, "user", "create", "--uid", "berth", "--display-name", "berth",
                      "--access-key", self.access_key, "--secret-key", self.secret_key, timeout=60)
        except BaseException:
            self.stop()
            raise
        self.started_in = time.monotonic() - began
        return self

    def _fsid(self) -> str:
        for line in self.conf.read_text().splitlines():
            if line.startswith("fsid = "):
                return line.split(" = ", 1)[1]
        raise AssertionError("no fsid")

    def _rgw_answers(self) -> bool:
        try:
            httpx.get(self.endpoint, timeout=1.0)
            return True
        except httpx.HTTPError:
            return False

    @staticmethod
    def _wait(ready: Callable[[], bool], deadline: float, what: str) -> None:
        while time.monotonic() < deadline:
            try:
                if ready():
                    return
            except (RuntimeError, subprocess.TimeoutExpired):
                pass
            time.sleep(0.2)
        raise TimeoutError(f"ceph: {what} not ready")

    def client(self) -> Any:
        """A boto3 S3 client on this radosgw (path-style), for tests to look behind the driver."""
        import boto3
        from botocore.config import Config

        return boto3.client("s3", endpoint_url=self.endpoint, region_name=self.region,
                            aws_access_key_id=self.access_key, aws_secret_access_key=self.secret_key,
                            config=Config(s3={"addressing_style": "path"}, retries={"max_attempts": 2}))

    def new_bucket(self, prefix: str = "berth") -> str:
        """A fresh, empty bucket with a unique name."""
        self._buckets += 1
        name = f"{prefix}-{os.getpid()}-{self._buckets}"
        self.client().create_bucket(Bucket=name)
        return name

    def shared_bucket(self) -> str:
        """One bucket for many tests (each under its own prefix): a bucket's first object costs ~2 s."""
        if not self._shared_bucket:
            self._shared_bucket = self.new_bucket("shared")
            self.client().put_object(Bucket=self._shared_bucket, Key="warm", Body=b"")
            self.client().delete_object(Bucket=self._shared_bucket, Key="warm")
        return self._shared_bucket

    def pids(self) -> dict[str, int]:
        out = {}
        for f in (self.dir / "run").glob("*.pid"):
            try:
                out[f.stem] = int(f.read_text().strip())
            except (OSError, ValueError):
                continue
        return out

    def rgw_pid(self) -> int | None:
        return self.pids().get("client.rgw.a")

    def stop_rgw(self) -> None:
        """Stop radosgw only (an S3 outage); `start_rgw` brings it back on the same port."""
        pid = self.rgw_pid()
        if pid is not None:
            _stop_pid(pid, 20)
            (self.dir / "run" / "client.rgw.a.pid").unlink(missing_ok=True)

    def start_rgw(self, timeout: float = 30) -> None:
        self._run("radosgw", "-c", str(self.conf), "-n", "client.rgw.a")
        self._wait(self._rgw_answers, time.monotonic() + timeout, "radosgw")

    def stop(self) -> None:
        pids = self.pids()
        for name in ("client.rgw.a", "osd.0", "mon.a"):  # clients first, the monitor last
            pid = pids.get(name)
            if pid is not None:
                _stop_pid(pid, 20)
        shutil.rmtree(self.dir, ignore_errors=True)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    try:  # a zombie is gone for our purposes
        with open(f"/proc/{pid}/stat") as f:
            return f.read().split(") ", 1)[1][0] != "Z"
    except (OSError, IndexError):
        return False


def _stop_pid(pid: int, timeout: float) -> None:
    try:
        os.kill(pid, signal.SIGTERM)
    except ProcessLookupError:
        return
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and _alive(pid):
        time.sleep(0.1)
    if _alive(pid):
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass


_shared: CephCluster | None = None
_shared_failure: BaseException | None = None


def shared_cluster() -> CephCluster:
    """The test session's one cluster, started on first use (the `ceph` fixture and the BlobStore
    contract suite's factory both come here); `stop_shared` ends it when the session finishes."""
    global _shared, _shared_failure
    if _shared_failure is not None:
        raise RuntimeError(f"the session's Ceph cluster failed to start: {_shared_failure}")
    if _shared is None:
        try:
            _shared = CephCluster().start()
        except Exception as e:
            _shared_failure = e
            raise
    return _shared


def stop_shared() -> None:
    global _shared
    if _shared is not None:
        _shared.stop()
        _shared = None
