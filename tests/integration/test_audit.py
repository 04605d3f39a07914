"""The audit trail of a real `berth serve --auth iam` (SQLite and PostgreSQL), read with `berth audit`:
IAM, STS and ECR calls and /v2 writes (skopeo-free: raw OCI pushes with a registry token), refusals
with their error codes, and no secret in any record."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from typing import Any

import pytest

from tests.support.aws import basic, call, client, registry_token
from tests.support.oci import OciClient, random_image
from tests.support.servers import BerthServer

pytestmark = pytest.mark.integration

A = "123456789012"
KEY, SECRET = "AKIAAUDITADMIN00001", "audit-admin-secret-82hf8h2f8h2f8h2fh28f"
ADMIN_ARN = f"arn:aws:iam::{A}:user/admin"


@pytest.fixture(scope="module", params=["sqlite", "postgres"])
def server(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[BerthServer]:
    base = tmp_path_factory.mktemp("audit")
    url = request.getfixturevalue("postgres").new_database() if request.param == "postgres" else ""
    srv = BerthServer(base / "data", database_url=url, args=["--auth", "iam"],
                      env={"BERTH_ADMIN_ACCESS_KEY_ID": KEY, "BERTH_ADMIN_SECRET_ACCESS_KEY": SECRET}).start()
    srv.settle = 1.5 if url else 0.0  # type: ignore[attr-defined]
    try:
        yield srv
    finally:
        srv.stop()


def audit(srv: BerthServer, *args: str) -> subprocess.CompletedProcess[str]:
    cmd = [sys.executable, "-m", "berth", "audit", *args, "--data-dir", str(srv.data_dir)]
    if srv.database_url:
        cmd += ["--database-url", srv.database_url]
    env = {k: v for k, v in os.environ.items() if not k.startswith("BERTH_")}
    return subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=120)


def records(srv: BerthServer, *args: str) -> list[dict[str, Any]]:
    r = audit(srv, "--json", "--limit", "10000", *args)
    assert r.returncode == 0, r.stderr
    return [json.loads(line) for line in r.stdout.splitlines()]


def test_calls_and_writes_are_recorded(server: BerthServer) -> None:
    start = time.time()
    iam = client("iam", server.url, KEY, SECRET)
    iam.create_user(UserName="auditee")
    k = iam.create_access_key(UserName="auditee")["AccessKey"]
    time.sleep(server.settle)  # type: ignore[attr-defined]
    sess = client("sts", server.url, k["AccessKeyId"], k["SecretAccessKey"]).get_session_token()["Credentials"]
    ecr = client("ecr", server.url, KEY, SECRET)
    ecr.create_repository(repositoryName="audited/app")
    denied = call(client("ecr", server.url, k["AccessKeyId"], k["SecretAccessKey"]), "DeleteRepository",
                  {"repositoryName": "audited/app"})
    assert denied.error == "AccessDeniedException"
    assert call(client("ecr", server.url, KEY, SECRET[::-1]), "DescribeRepositories",
                {}).error == "InvalidSignatureException"
    token = registry_token(ecr)
    img = random_image()
    with OciClient(server.url) as oci:
        oci.http.headers["Authorization"] = basic(token)
        assert oci.push_image("audited/app", img, "v1").status_code == 201
        assert oci.push_blob_chunked("audited/app", os.urandom(3000), chunk=1024).status_code == 201
        assert oci.http.delete(f"/v2/audited/app/manifests/{'sha256:' + '0' * 64}").status_code == 404
        oci.http.headers["Authorization"] = basic(token[:-4] + "AAAA")
        assert oci.put_manifest("audited/app", "v2", img.body).status_code == 401

    recs = records(server, "--since", "5m")
    names = [(r["eventSource"], r["eventName"]) for r in recs]
    for expected in [("iam.amazonaws.com", "CreateUser"), ("iam.amazonaws.com", "CreateAccessKey"),
                     ("sts.amazonaws.com", "GetSessionToken"), ("ecr.amazonaws.com", "CreateRepository"),
                     ("ecr.amazonaws.com", "DeleteRepository"), ("ecr.amazonaws.com", "GetAuthorizationToken"),
                     ("ecr.amazonaws.com", "InitiateLayerUpload"), ("ecr.amazonaws.com", "CompleteLayerUpload"),
                     ("ecr.amazonaws.com", "UploadLayerPart"),
                     ("ecr.amazonaws.com", "PutImage"), ("ecr.amazonaws.com", "BatchDeleteImage")]:
        assert expected in names, (expected, names)
    for r in recs:
        assert r["sourceIPAddress"] == "127.0.0.1" and r["eventTime"] and r["requestID"]
        assert time.strptime(r["eventTime"], "%Y-%m-%dT%H:%M:%SZ")
    created = next(r for r in recs if r["eventName"] == "CreateRepository")
    assert created["userIdentity"]["arn"] == ADMIN_ARN and created["userIdentity"]["accessKeyId"] == KEY
    assert created["requestParameters"]["repositoryName"] == "audited/app"
    assert created["responseElements"]["repository"]["repositoryName"] == "audited/app"
    refused = next(r for r in recs if r["eventName"] == "DeleteRepository")
    assert refused["errorCode"] == "AccessDeniedException"
    assert refused["userIdentity"]["arn"] == f"arn:aws:iam::{A}:user/auditee"
    assert "not authorized to perform: ecr:DeleteRepository" in refused["errorMessage"]
    bad_sig = [r for r in recs if r.get("errorCode") == "InvalidSignatureException"]
    assert bad_sig and bad_sig[0]["eventName"] == "DescribeRepositories"
    pushes = [r for r in recs if r["eventName"] == "PutImage"]
    ok = [p for p in pushes if "errorCode" not in p]
    assert len(ok) == 1 and ok[0]["responseElements"]["imageDigest"] == img.digest
    assert ok[0]["requestParameters"] == {"repositoryName": "audited/app", "imageTag": "v1", "registryId": A}
    assert ok[0]["userIdentity"]["arn"] == ADMIN_ARN
    assert [p["errorCode"] for p in pushes if "errorCode" in p] == ["UNAUTHORIZED"]
    assert next(r for r in recs if r["eventName"] == "BatchDeleteImage")["errorCode"] == "MANIFEST_UNKNOWN"
    # no secret in the trail: the admin's, the new key's, the session's, the registry token
    raw = json.dumps(recs)
    for secret in (SECRET, k["SecretAccessKey"], sess["SecretAccessKey"], sess["SessionToken"], token):
        assert secret not in raw
    key_rec = next(r for r in recs if r["eventName"] == "CreateAccessKey")
    assert key_rec["responseElements"]["AccessKey"]["SecretAccessKey"] == "HIDDEN_DUE_TO_SECURITY_REASONS"
    assert key_rec["responseElements"]["AccessKey"]["AccessKeyId"] == k["AccessKeyId"]

    # filters and the table
    only = records(server, "--event", "PutImage", "--principal", ADMIN_ARN)
    assert {r["eventName"] for r in only} == {"PutImage"} and len(only) >= 1
    assert records(server, "--until", "2000-01-01") == []
    table = audit(server, "--since", "5m", "--event", "CreateRepository")
    assert table.returncode == 0 and "CreateRepository" in table.stdout and "audited/app" in table.stdout
    bad = audit(server, "--since", "yesterday-ish")
    assert bad.returncode == 2 and "not a time" in bad.stderr
    assert time.time() - start < 120
