"""A pytest plugin: a real Berth for your own tests (registered as the `pytest11` entry point `berth`).

    def test_deploy_script(berth_registry):
        ecr = berth_registry.ecr                      # a boto3 ECR client, signed as the administrator
        ecr.create_repository(repositoryName="app")
        subprocess.run(["./deploy.sh"], env={**os.environ, **berth_registry.aws_env()}, check=True)

`berth_registry` (one per test session) is a `berth serve` on a free port of 127.0.0.1 with a temporary
data dir, IAM on, create-on-push on; it yields a `RunningBerth`: `url`, `registry_host` (what
`docker push <registry_host>/<repo>:<tag>` uses), `access_key_id` / `secret_access_key` / `region`,
`ecr` and `client(service)` (boto3, which must be installed), `login_password()` (for `docker login
-u AWS --password-stdin`), `aws_env()` (AWS_* variables for subprocesses, with AWS_ENDPOINT_URL set).
`berth_ecr` is the same ECR client as a fixture. To start your own (other settings, or one per
test), use `running_berth(tmp_dir, env={"BERTH_…": …})` as a context manager.
Nothing heavy is imported until a fixture is used: the plugin costs other test suites nothing.
"""

from __future__ import annotations

import base64
import os
import secrets
import signal
import socket
import string
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

ACCOUNT = "123456789012"
REGION = "us-east-1"
START_TIMEOUT = 60.0


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class RunningBerth:
    url: str
    registry_host: str
    access_key_id: str
    secret_access_key: str
    data_dir: Path
    log: Path
    region: str = REGION
    account: str = ACCOUNT
    _clients: dict[str, Any] = field(default_factory=dict, repr=False)

    def client(self, service: str = "ecr") -> Any:
        """A boto3 client for `service` (ecr, iam, sts) signed with the administrator's key."""
        if service not in self._clients:
            try:
                import boto3
            except ImportError:  # boto3 is not a dependency of Berth itself
                raise RuntimeError("berth.testing: the boto3 clients need boto3 (pip install boto3)") from None
            self._clients[service] = boto3.client(service, endpoint_url=self.url, region_name=self.region,
                                                  aws_access_key_id=self.access_key_id,
                                                  aws_secret_access_key=self.secret_access_key)
        return self._clients[service]

    @property
    def ecr(self) -> Any:
        return self.client("ecr")

    def login_password(self) -> str:
        """What `aws ecr get-login-password` prints: the password of `docker login -u AWS`."""
        data = self.ecr.get_authorization_token()["authorizationData"][0]
        return base64.b64decode(data["authorizationToken"]).decode().partition(":")[2]

    def aws_env(self) -> dict[str, str]:
        """AWS_* variables that point the aws CLI, boto3 and the SDKs at this Berth (no --endpoint-url)."""
        return {"AWS_ACCESS_KEY_ID": self.access_key_id, "AWS_SECRET_ACCESS_KEY": self.secret_access_key,
                "AWS_DEFAULT_REGION": self.region, "AWS_REGION": self.region, "AWS_ENDPOINT_URL": self.url}

    def read_log(self) -> str:
        return self.log.read_text(errors="replace") if self.log.exists() else ""


def _wait(url: str, proc: subprocess.Popen[bytes], log: Path, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"berth serve exited with {proc.returncode}:\n{log.read_text(errors='replace')[-4000:]}")
        try:
            with urllib.request.urlopen(url + "/healthz", timeout=1):
                return
        except (urllib.error.URLError, OSError):
            time.sleep(0.05)
    raise TimeoutError(f"berth serve did not answer {url}/healthz within {timeout:.0f} s")


def _stop(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is not None:
        return
    try:
        os.killpg(proc.pid, signal.SIGTERM)  # its own process group: granian's workers go with it
        proc.wait(15)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(15)
    except ProcessLookupError:
        pass


@contextmanager
def running_berth(base: Path | None = None, env: Mapping[str, str] | None = None,
                  timeout: float = START_TIMEOUT) -> Iterator[RunningBerth]:
    """Start `berth serve` (IAM on, a fresh administrator key, create-on-push on) in `base` (a new temporary
    directory if None) and stop it on exit."""
    owned = base is None
    base = Path(tempfile.mkdtemp(prefix="berth-test-")) if base is None else Path(base)
    key = "AKIA" + "".join(secrets.choice(string.ascii_uppercase + "234567") for _ in range(16))
    secret = secrets.token_urlsafe(30)[:40]
    port = _free_port()
    log = base / f"berth-{port}.log"
    child_env = {k: v for k, v in os.environ.items() if not k.startswith("BERTH_")}
    child_env.update({"BERTH_ADMIN_ACCESS_KEY_ID": key, "BERTH_ADMIN_SECRET_ACCESS_KEY": secret,
                      "BERTH_CREATE_ON_PUSH": "1", **(env or {})})
    cmd = [sys.executable, "-m", "berth", "serve", "--host", "127.0.0.1", "--port", str(port),
           "--data-dir", str(base / "data"), "--auth", "iam"]
    with open(log, "ab") as out:
        proc = subprocess.Popen(cmd, env=child_env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
    url = f"http://127.0.0.1:{port}"
    try:
        _wait(url, proc, log, timeout)
        yield RunningBerth(url, f"127.0.0.1:{port}", key, secret, base / "data", log)
    finally:
        _stop(proc)
        if owned:
            import shutil

            shutil.rmtree(base, ignore_errors=True)


@pytest.fixture(scope="session")
def berth_registry(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningBerth]:
    """A real Berth for the test session: see the module's documentation."""
    with running_berth(tmp_path_factory.mktemp("berth-registry")) as running:
        yield running


@pytest.fixture
def berth_ecr(berth_registry: RunningBerth) -> Any:
    """A boto3 ECR client signed as the administrator of `berth_registry`."""
    return berth_registry.ecr
