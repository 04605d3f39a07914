"""GetAuthorizationToken for the credential helpers, and registry tokens that expire.

- one authorizationData entry per requested registry id, each with the proxyEndpoint
  `<scheme>://<registryId>.dkr.ecr.<region>.<registry domain>[:port]` (boto3 and the aws CLI);
- an expired token answers 401 with ECR's "token has expired" message, not a wrong-password one
  (a second server on the same data under libfaketime, 13 hours ahead);
- the real `docker-credential-ecr-login` (Debian amazon-ecr-credential-helper), configured through
  `credHelpers` in a containers auth file, used by skopeo to push and pull with no `docker login`.
  The helper only talks to `https://api.ecr.<region>.amazonaws.com` on 443 and only accepts
  `<id>.dkr.ecr.<region>.amazonaws.com` hosts, so that test runs Berth with TLS on 127.0.0.1:443
  and BERTH_REGISTRY_DOMAIN=amazonaws.com in a private network and mount namespace (unshare, a
  bind-mounted /etc/hosts, a CA the test makes, AWS_CA_BUNDLE for the helper), as the README shows.
"""

from __future__ import annotations

import base64
import json
import os
import shlex
import subprocess
import sys
from pathlib import Path

import httpx
import pytest
from botocore.client import BaseClient

from tests.support.aws import AWS_CLI, IAM_ADMIN_KEY, IAM_ADMIN_SECRET, basic, client, registry_token
from tests.support.images import build_umoci_image
from tests.support.servers import BerthServer, require_tool, unavailable

pytestmark = pytest.mark.integration

A, B, REGION = "123456789012", "111122223333", "us-east-1"
KEY, SECRET = IAM_ADMIN_KEY, IAM_ADMIN_SECRET  # the identity suites' shared server (conftest.py: identity_server)
FAKETIME_LIB = Path("/usr/lib/x86_64-linux-gnu/faketime/libfaketime.so.1")
READ_ONLY = "arn:aws:iam::aws:policy/AmazonEC2ContainerRegistryReadOnly"
TOKEN_EXPIRED = "Your authorization token has expired. Reauthenticate and try again."


SQLITE_ONLY = pytest.mark.parametrize("identity_server", ["sqlite"], indirect=True)  # the session's SQLite one


@pytest.fixture(scope="module")
def server(identity_server: BerthServer) -> BerthServer:
    return identity_server  # `berth serve --auth iam` on SQLite, shared with the other identity suites


@pytest.fixture(scope="module")
def ecr(server: BerthServer) -> BaseClient:
    return client("ecr", server.url, KEY, SECRET)


@SQLITE_ONLY
def test_one_authorization_entry_per_registry_id(server: BerthServer, ecr: BaseClient, tmp_path: Path) -> None:
    own = ecr.get_authorization_token()["authorizationData"]
    # the default registry: the plain host the client called; another: its ECR name, with the port
    assert [d["proxyEndpoint"] for d in own] == [f"http://127.0.0.1:{server.port}"]
    both = ecr.get_authorization_token(registryIds=[A, B])["authorizationData"]
    assert [d["proxyEndpoint"] for d in both] == [f"http://127.0.0.1:{server.port}",
                                                  f"http://{B}.dkr.ecr.{REGION}.localhost:{server.port}"]
    for entry in both:
        user, _, token = base64.b64decode(entry["authorizationToken"]).decode().partition(":")
        assert user == "AWS"
        status = httpx.get(f"{server.url}/v2/", headers={"Authorization": basic(token)}).status_code
        assert status == 200
    env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
    env.update(AWS_ACCESS_KEY_ID=KEY, AWS_SECRET_ACCESS_KEY=SECRET, AWS_DEFAULT_REGION=REGION,
               AWS_CONFIG_FILE=str(tmp_path / "none"), AWS_SHARED_CREDENTIALS_FILE=str(tmp_path / "none"))
    done = subprocess.run([str(AWS_CLI), "--endpoint-url", server.url, "--output", "json", "ecr",
                           "get-authorization-token", "--registry-ids", B, A], env=env, capture_output=True,
                          text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert [d["proxyEndpoint"] for d in json.loads(done.stdout)["authorizationData"]] == [
        f"http://{B}.dkr.ecr.{REGION}.localhost:{server.port}", f"http://127.0.0.1:{server.port}"]


@SQLITE_ONLY
def test_an_expired_token_is_told_so(server: BerthServer, ecr: BaseClient, tmp_path: Path) -> None:
    require_tool(str(FAKETIME_LIB), "skopeo")
    token = registry_token(ecr)
    assert httpx.get(f"{server.url}/v2/", headers={"Authorization": basic(token)}).status_code == 200
    later = BerthServer(server.data_dir, args=["--auth", "iam"],
                        env={"LD_PRELOAD": str(FAKETIME_LIB), "FAKETIME": "+13h", "FAKETIME_DONT_RESET": "1"})
    later.start()
    try:
        r = httpx.get(f"{later.url}/v2/", headers={"Authorization": basic(token)})
        assert r.status_code == 401, r.text
        error = r.json()["errors"][0]
        assert (error["code"], error["message"]) == ("UNAUTHORIZED", TOKEN_EXPIRED), r.text
        assert "WWW-Authenticate" in r.headers
        wrong = httpx.get(f"{later.url}/v2/", headers={"Authorization": basic(token[:-2] + "AA")})
        assert wrong.status_code == 401 and "expired" not in wrong.text, wrong.text
        none = httpx.get(f"{later.url}/v2/")
        assert none.status_code == 401 and "expired" not in none.text
        inspected = subprocess.run(["skopeo", "inspect", "--tls-verify=false", "--creds", f"AWS:{token}",
                                    f"docker://{later.host}/anything:v1"], capture_output=True, text=True, timeout=60)
        assert inspected.returncode != 0 and "token has expired" in inspected.stderr, inspected.stderr
    finally:
        later.stop()


# --- the real credential helper -------------------------------------------------------------------


def _certificate(base: Path, hosts: list[str]) -> tuple[Path, Path, Path]:
    """A CA of the test's own and a server certificate it signs for `hosts`."""
    ca_key, ca, key, csr, cert = (base / n for n in ("ca.key", "ca.crt", "server.key", "server.csr", "server.crt"))
    run = lambda *a: subprocess.run(a, check=True, capture_output=True)  # noqa: E731
    run("openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", str(ca_key), "-out", str(ca),
        "-days", "2", "-subj", "/CN=berth test CA")
    run("openssl", "req", "-newkey", "rsa:2048", "-nodes", "-keyout", str(key), "-out", str(csr), "-subj",
        f"/CN={hosts[0]}")
    ext = base / "ext.cnf"
    ext.write_text("subjectAltName=" + ",".join(f"DNS:{h}" for h in hosts) + ",IP:127.0.0.1\n")
    run("openssl", "x509", "-req", "-in", str(csr), "-CA", str(ca), "-CAkey", str(ca_key), "-CAcreateserial",
        "-out", str(cert), "-days", "2", "-extfile", str(ext))
    return ca, cert, key


def test_skopeo_pushes_and_pulls_through_docker_credential_ecr_login(tmp_path: Path) -> None:
    require_tool("docker-credential-ecr-login", "skopeo", "umoci", "unshare", "ip", "openssl")
    if os.geteuid() != 0:
        unavailable("the credential-helper test needs root (a private network and mount namespace)")
    registry = f"{A}.dkr.ecr.{REGION}.amazonaws.com"
    api = f"api.ecr.{REGION}.amazonaws.com"
    ca, cert, key = _certificate(tmp_path, [registry, api])
    certs = tmp_path / "certs"
    certs.mkdir()
    (certs / "ca.crt").write_bytes(ca.read_bytes())
    hosts = tmp_path / "hosts"
    hosts.write_text(f"127.0.0.1 localhost {registry} {api}\n")
    authfile = tmp_path / "auth.json"
    authfile.write_text(json.dumps({"credHelpers": {registry: "ecr-login"}}))
    build_umoci_image(tmp_path / "layout", tmp_path, "v1", [{"app/hello.txt": b"pushed through the helper\n"}])
    home = tmp_path / "home"
    home.mkdir()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "BERTH_", "DOCKER_", "REGISTRY_AUTH"))}
    env.update(HOME=str(home), AWS_ACCESS_KEY_ID=KEY, AWS_SECRET_ACCESS_KEY=SECRET, AWS_CA_BUNDLE=str(ca),
               AWS_DEFAULT_REGION=REGION,
               AWS_EC2_METADATA_DISABLED="true", AWS_CONFIG_FILE=str(tmp_path / "none"),
               AWS_SHARED_CREDENTIALS_FILE=str(tmp_path / "none"),
               BERTH_ADMIN_ACCESS_KEY_ID=KEY, BERTH_ADMIN_SECRET_ACCESS_KEY=SECRET, BERTH_CREATE_ON_PUSH="1",
               BERTH_REGISTRY_DOMAIN="amazonaws.com")
    q = shlex.quote
    serve = [sys.executable, "-m", "berth", "serve", "--host", "127.0.0.1", "--port", "443", "--auth", "iam",
             "--data-dir", str(tmp_path / "data"), "--tls-cert", str(cert), "--tls-key", str(key)]
    waiter = tmp_path / "wait.py"
    waiter.write_text("import ssl, sys, time, urllib.request\n"
                      f"ctx = ssl.create_default_context(cafile={str(ca)!r})\n"
                      "for _ in range(300):\n"
                      "    try:\n"
                      f"        urllib.request.urlopen('https://{registry}/healthz', context=ctx)\n"
                      "        sys.exit(0)\n"
                      "    except OSError:\n"
                      "        time.sleep(0.1)\n"
                      "sys.exit('berth did not come up on 443')\n")
    wait = f"{q(sys.executable)} {q(str(waiter))}"
    exporter = tmp_path / "export.py"
    exporter.write_text("import json, shlex, sys\n"
                        "c = json.load(open(sys.argv[1]))['Credentials']\n"
                        "print(' '.join(f'export {k}={shlex.quote(c[v])}' for k, v in (('AWS_ACCESS_KEY_ID', "
                        "'AccessKeyId'), ('AWS_SECRET_ACCESS_KEY', 'SecretAccessKey'), "
                        "('AWS_SESSION_TOKEN', 'SessionToken'))))\n")
    (tmp_path / "task-home").mkdir()
    aws = f"{q(str(AWS_CLI))} --endpoint-url https://{api} --output json"
    trust = json.dumps({"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Principal": {
        "AWS": f"arn:aws:iam::{A}:root"}, "Action": "sts:AssumeRole"}]})
    script = "\n".join([
        "set -eu",
        "ip link set lo up",
        f"mount --bind {q(str(hosts))} /etc/hosts",
        f"{' '.join(q(a) for a in serve)} > {q(str(tmp_path / 'berth.log'))} 2>&1 &",
        "BERTH=$!",
        "trap 'kill $BERTH 2>/dev/null; wait $BERTH 2>/dev/null || true' EXIT",
        wait,
        f"skopeo copy --authfile {q(str(authfile))} --dest-cert-dir {q(str(certs))} "
        f"oci:{q(str(tmp_path / 'layout'))}:v1 docker://{registry}/helper/app:v1",
        f"skopeo inspect --authfile {q(str(authfile))} --cert-dir {q(str(certs))} docker://{registry}/helper/app:v1",
        f"skopeo copy --authfile {q(str(authfile))} --src-cert-dir {q(str(certs))} "
        f"docker://{registry}/helper/app:v1 oci:{q(str(tmp_path / 'pulled'))}:v1",
        # without the helper: refused
        f"if skopeo inspect --no-creds --cert-dir {q(str(certs))} docker://{registry}/helper/app:v1; "
        "then echo UNAUTHENTICATED-PULL-WORKED; exit 1; fi",
        # the workload case (an ECS task role, a Lambda execution role): a role assumed with
        # `aws sts assume-role`, its temporary credentials handed to the helper
        f"{aws} iam create-role --role-name task-role --assume-role-policy-document {q(trust)} > /dev/null",
        f"{aws} iam attach-role-policy --role-name task-role --policy-arn {READ_ONLY}",
        f"{aws} sts assume-role --role-arn arn:aws:iam::{A}:role/task-role --role-session-name task-1 "
        f"> {q(str(tmp_path / 'session.json'))}",
        f"eval $({q(sys.executable)} {q(str(exporter))} {q(str(tmp_path / 'session.json'))})",
        f"export HOME={q(str(tmp_path / 'task-home'))} AWS_ECR_DISABLE_CACHE=true",
        f"{aws} sts get-caller-identity",
        f"skopeo copy --authfile {q(str(authfile))} --src-cert-dir {q(str(certs))} "
        f"docker://{registry}/helper/app:v1 oci:{q(str(tmp_path / 'task-pulled'))}:v1",
        f"if skopeo copy --authfile {q(str(authfile))} --dest-cert-dir {q(str(certs))} "
        f"oci:{q(str(tmp_path / 'layout'))}:v1 docker://{registry}/helper/app:from-task; "
        "then echo READ-ONLY-ROLE-PUSHED; exit 1; fi",
    ])
    done = subprocess.run(["unshare", "--net", "--mount", "sh", "-c", script], env=env, capture_output=True,
                          text=True, timeout=240, start_new_session=True)
    log = (tmp_path / "berth.log").read_text(errors="replace") if (tmp_path / "berth.log").exists() else ""
    assert done.returncode == 0, (done.stdout[-3000:], done.stderr[-3000:], log[-3000:])
    inspected = json.loads(done.stdout[done.stdout.index("{"):done.stdout.index("\n}") + 2])
    assert inspected["Name"] == f"{registry}/helper/app"
    assert f'"Arn": "arn:aws:sts::{A}:assumed-role/task-role/task-1"' in done.stdout
    for pulled_dir in ("pulled", "task-pulled"):
        pulled = json.loads((tmp_path / pulled_dir / "index.json").read_text())
        assert len(pulled["manifests"]) == 1
