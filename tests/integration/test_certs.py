"""`berth cert create`: a CA and a server certificate that a real `berth serve` presents and that real
TLS clients accept for the registry's host names (and refuse for any other)."""

from __future__ import annotations

import os
import socket
import ssl
import stat
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from tests.support.servers import BerthServer

pytestmark = pytest.mark.integration

A, REGION, DOMAIN = "123456789012", "us-east-1", "example.test"


def _cert_create(out: Path) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("BERTH_")}
    return subprocess.run([sys.executable, "-m", "berth", "cert", "create", "--out", str(out), "--domain", DOMAIN,
                           "--region", REGION, "--region", "eu-west-1", "--host", "registry.internal"],
                          env=env, capture_output=True, text=True, timeout=60)


def _handshake(port: int, ca: Path, name: str) -> None:
    ctx = ssl.create_default_context(cafile=str(ca))
    with socket.create_connection(("127.0.0.1", port), timeout=10) as raw, \
            ctx.wrap_socket(raw, server_hostname=name):
        pass


def test_cert_create_and_serve(tmp_path: Path) -> None:
    out = tmp_path / "certs"
    r = _cert_create(out)
    assert r.returncode == 0, r.stderr
    assert "new CA" in r.stderr and f"*.dkr.ecr.{REGION}.{DOMAIN}" in r.stderr
    for key in ("ca.key", "server.key"):
        assert stat.S_IMODE((out / key).stat().st_mode) == 0o600
    v = subprocess.run(["openssl", "verify", "-CAfile", str(out / "ca.crt"), str(out / "server.crt")],
                       capture_output=True, text=True)
    assert v.returncode == 0 and "OK" in v.stdout, v.stdout + v.stderr
    srv = BerthServer(tmp_path / "data", args=["--tls-cert", str(out / "server.crt"), "--tls-key",
                                               str(out / "server.key")])
    srv.verify = str(out / "ca.crt")
    srv.start()
    try:
        for name in (f"{A}.dkr.ecr.{REGION}.{DOMAIN}", f"999999999999.dkr.ecr.eu-west-1.{DOMAIN}",
                     f"api.ecr.{REGION}.{DOMAIN}", "registry.internal", "localhost", "127.0.0.1"):
            _handshake(srv.port, out / "ca.crt", name)
        for name in (f"{A}.dkr.ecr.ap-south-1.{DOMAIN}", "other.test"):
            with pytest.raises(ssl.SSLCertVerificationError):
                _handshake(srv.port, out / "ca.crt", name)
        ok = httpx.get(f"https://127.0.0.1:{srv.port}/v2/", verify=ssl.create_default_context(cafile=out / "ca.crt"))
        assert ok.status_code == 200
    finally:
        srv.stop()
    ca_before = (out / "ca.crt").read_bytes()
    r = _cert_create(out)  # again: the CA is kept, the server certificate is new
    assert r.returncode == 0 and "CA kept" in r.stderr
    assert (out / "ca.crt").read_bytes() == ca_before
    assert subprocess.run(["openssl", "verify", "-CAfile", str(out / "ca.crt"), str(out / "server.crt")],
                          capture_output=True).returncode == 0
