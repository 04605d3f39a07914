"""Real servers for tests: a `berth serve` process and a throwaway PostgreSQL cluster.

Everything listens on 127.0.0.1, is stopped by PID (process group), and cleans up after itself.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx
import pytest

STRICT = os.environ.get("BERTH_STRICT") == "1" or os.environ.get("CI") == "true"


def unavailable(msg: str) -> None:
    """Skip a test whose real client, server or privilege is missing; under strict mode (CI), fail."""
    if STRICT:
        pytest.fail(msg)
    pytest.skip(msg)


def require_tool(*names: str) -> None:
    missing = [n for n in names if shutil.which(n) is None and not Path(n).exists()]
    if missing:
        unavailable(f"missing tools: {', '.join(missing)} (run scripts/install-system-deps.sh as root)")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_http(url: str, timeout: float = 30.0, proc: subprocess.Popen | None = None,
              verify: str | bool = True) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"server exited with {proc.returncode}")
        try:
            httpx.get(url, timeout=1.0, verify=ssl.create_default_context(cafile=verify)
                      if isinstance(verify, str) else verify)
            return
        except httpx.HTTPError:
            time.sleep(0.05)
    raise TimeoutError(url)


_MASTER_KEYS: Path | None = None


def shared_master_key(database_url: str) -> Path:
    """The master key file of every test server on `database_url` (one per database, per test session)."""
    global _MASTER_KEYS
    if _MASTER_KEYS is None:
        import atexit

        _MASTER_KEYS = Path(tempfile.mkdtemp(prefix="berth-test-keys-"))
        atexit.register(shutil.rmtree, _MASTER_KEYS, True)
    import hashlib

    return _MASTER_KEYS / (hashlib.sha256(database_url.encode()).hexdigest()[:16] + ".key")


class BerthServer:
    """One `berth serve` process; restartable on the same data dir, database and port."""

    def __init__(self, data_dir: Path, database_url: str = "", env: dict[str, str] | None = None,
                 args: list[str] | None = None) -> None:
        self.data_dir = Path(data_dir)
        self.database_url = database_url
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.host = f"127.0.0.1:{self.port}"
        self.extra_env = dict(env or {})
        if database_url and "BERTH_MASTER_KEY_FILE" not in self.extra_env:
            # Nodes of one database share its master key (as a deployment mounts one key file on each)
            self.extra_env["BERTH_MASTER_KEY_FILE"] = str(shared_master_key(database_url))
        self.args = list(args or [])
        if "--auth" not in self.args:  # the OCI suites run open; IAM suites pass --auth iam
            self.args += ["--auth", "none"]
        self.verify: str | bool = True
        if "--tls-cert" in self.args:  # HTTPS, verified against the server's own (self-signed) certificate
            self.url = f"https://127.0.0.1:{self.port}"
            self.verify = self.args[self.args.index("--tls-cert") + 1]
        self.proc: subprocess.Popen | None = None
        self.log = self.data_dir.parent / f"berth-{self.port}.log"

    def start(self, timeout: float = 30.0) -> BerthServer:
        cmd = [sys.executable, "-m", "berth", "serve", "--host", "127.0.0.1", "--port", str(self.port),
               "--data-dir", str(self.data_dir), *self.args]
        if self.database_url:
            cmd += ["--database-url", self.database_url]
        env = {**os.environ, "BERTH_CREATE_ON_PUSH": "1", **self.extra_env}
        with open(self.log, "ab") as log:
            self.proc = subprocess.Popen(cmd, env=env, stdout=log, stderr=subprocess.STDOUT,
                                         start_new_session=True)
        try:
            wait_http(self.url + "/v2/", timeout, self.proc, self.verify)
        except BaseException:  # a server that never came up must not outlive the test that started it
            self.kill()
            raise
        return self

    def pids(self) -> list[int]:
        """The server's process and its workers."""
        assert self.proc is not None
        out = subprocess.run(["pgrep", "-g", str(self.proc.pid)], capture_output=True, text=True).stdout
        return [int(p) for p in out.split()]

    def _signal_group(self, sig: int) -> None:
        if self.proc is None:
            return
        try:
            os.killpg(self.proc.pid, sig)
        except ProcessLookupError:
            pass

    def kill(self) -> None:
        """SIGKILL the whole process group: a crash at an arbitrary moment."""
        self._signal_group(signal.SIGKILL)
        if self.proc is not None:
            self.proc.wait(10)
        self.proc = None

    def stop(self) -> None:
        if self.proc is None:
            return
        self._signal_group(signal.SIGTERM)
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self._signal_group(signal.SIGKILL)
            self.proc.wait(10)
        self.proc = None

    def restart(self) -> BerthServer:
        self.stop()
        return self.start()

    def read_log(self) -> str:
        return self.log.read_text(errors="replace") if self.log.exists() else ""


PG_BIN = Path("/usr/lib/postgresql/15/bin")


class PostgresCluster:
    """A throwaway PostgreSQL cluster in a temporary directory, owned by the postgres user."""

    def __init__(self, options: str = "") -> None:
        self.options = options  # more `-c name=value` server settings (e.g. log_statement=all for a count)
        self.dir = Path(tempfile.mkdtemp(prefix="berth-pg-"))
        self.port = free_port()
        self.url = f"postgresql://postgres@127.0.0.1:{self.port}/postgres"
        self._counter = 0

    def _as_postgres(self, *cmd: str) -> list[str]:
        if os.geteuid() == 0:
            return ["runuser", "-u", "postgres", "--", *cmd]
        return list(cmd)

    def start(self) -> PostgresCluster:
        require_tool(str(PG_BIN / "initdb"))
        if os.geteuid() == 0:
            shutil.chown(self.dir, "postgres", "postgres")
        data = self.dir / "data"
        subprocess.run(self._as_postgres(str(PG_BIN / "initdb"), "-D", str(data), "-U", "postgres",
                                         "--auth=trust", "-E", "UTF8", "--locale=C.UTF-8"),
                       check=True, capture_output=True)
        return self.resume()

    def halt(self, mode: str = "fast") -> None:
        """Stop the server, keeping its data (a restart or a failover, as clients see it): `fast` ends every
        session and rolls back what is in flight; `immediate` is a crash (recovery on the next start)."""
        subprocess.run(self._as_postgres(str(PG_BIN / "pg_ctl"), "-D", str(self.dir / "data"), "-w", "-m", mode,
                                         "stop"), check=True, capture_output=True)

    def resume(self) -> PostgresCluster:
        """Start the server (again) on the same data and port."""
        data = self.dir / "data"
        subprocess.run(self._as_postgres(str(PG_BIN / "pg_ctl"), "-D", str(data), "-w", "-l",
                                         str(self.dir / "log"), "-o",
                                         f"-c listen_addresses=127.0.0.1 -p {self.port} -k {self.dir} "
                                         f"-c fsync=off -c max_connections=200 {self.options}", "start"),
                       check=True, capture_output=True)
        return self

    def new_database(self) -> str:
        """A fresh empty database in this cluster; returns its URL."""
        self._counter += 1
        name = f"berth{self._counter}"
        subprocess.run(self._as_postgres(str(PG_BIN / "psql"), "-h", "127.0.0.1", "-p", str(self.port),
                                         "-U", "postgres", "-c", f"CREATE DATABASE {name}"),
                       check=True, capture_output=True)
        return f"postgresql://postgres@127.0.0.1:{self.port}/{name}"

    def stop(self) -> None:
        subprocess.run(self._as_postgres(str(PG_BIN / "pg_ctl"), "-D", str(self.dir / "data"), "-m",
                                         "immediate", "stop"), capture_output=True)
        shutil.rmtree(self.dir, ignore_errors=True)
