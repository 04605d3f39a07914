"""The edges' own guarantees, black-box against real servers and real clients:

- SetRepositoryPolicy's lock-out check is the authorizer's decision with the request's own context
  (secure transport, resource tags …), not a parallel evaluation;
- an unexpected failure (here: the PostgreSQL server going away under a running Berth, a real fault)
  is answered in each face's error shape with a request id that the log also carries, never a bare
  500 page, and Berth recovers when the database is back;
- a server that never ran the ASGI lifespan startup (uvicorn --lifespan off, a real configuration)
  answers 503 in each face's shape instead of starting lazily inside a request.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import boto3
import httpx
import pytest
from botocore.config import Config
from botocore.exceptions import ClientError

from tests.support.aws import AWS_CLI, IAM_ADMIN_KEY, IAM_ADMIN_SECRET, REGION, UserSpec, create_users
from tests.support.servers import PG_BIN, BerthServer, PostgresCluster, free_port, wait_http

pytestmark = pytest.mark.integration

ACCOUNT = "123456789012"
KEY, SECRET = IAM_ADMIN_KEY, IAM_ADMIN_SECRET  # the identity suites' shared server (conftest.py: identity_server)
ONE_TRY = Config(retries={"total_max_attempts": 1})


def ecr_client(url: str, key: str = KEY, secret: str = SECRET):  # type: ignore[no-untyped-def]
    return boto3.client("ecr", endpoint_url=url, region_name=REGION, aws_access_key_id=key,  # type: ignore[call-overload]
                        aws_secret_access_key=secret, config=ONE_TRY)


def aws_error(exc: pytest.ExceptionInfo[ClientError]) -> tuple[str, int, str]:
    r = exc.value.response
    return r["Error"]["Code"], r["ResponseMetadata"]["HTTPStatusCode"], r["Error"].get("Message", "")


# SetRepositoryPolicy: one authorization path

@pytest.fixture(scope="module")
def iam_server(identity_server: BerthServer) -> BerthServer:
    return identity_server  # `berth serve --auth iam` on SQLite, shared with the identity suites


def _deny_set_policy(condition: dict[str, object]) -> str:
    return json.dumps({"Version": "2012-10-17", "Statement": [
        {"Sid": "KeepReading", "Effect": "Allow", "Principal": {"AWS": f"arn:aws:iam::{ACCOUNT}:root"},
         "Action": "ecr:BatchGetImage"},
        {"Sid": "LockOut", "Effect": "Deny", "Principal": "*", "Action": "ecr:SetRepositoryPolicy",
         "Condition": condition}]})


# Each would lock the caller out of SetRepositoryPolicy, through a context key that a parallel
# evaluation with only aws:SourceIp (the former check) did not see.
LOCKOUTS = {
    "insecure-transport": _deny_set_policy({"Bool": {"aws:SecureTransport": "false"}}),
    "resource-tag": _deny_set_policy({"StringEquals": {"aws:ResourceTag/team": "core"}}),
}


@pytest.mark.parametrize("identity_server", ["sqlite"], indirect=True)  # the session's SQLite one
@pytest.mark.parametrize("case", sorted(LOCKOUTS))
def test_set_repository_policy_lockout_uses_the_request_context(iam_server: BerthServer, case: str) -> None:
    admin_iam = boto3.client("iam", endpoint_url=iam_server.url, region_name=REGION,  # type: ignore[call-overload]
                             aws_access_key_id=KEY, aws_secret_access_key=SECRET, config=ONE_TRY)
    user = f"setter-{case}"
    key, secret = create_users(admin_iam, [UserSpec(user, {"Version": "2012-10-17", "Statement": [
        {"Effect": "Allow", "Action": "ecr:*", "Resource": "*"}]})])[user]
    ecr = ecr_client(iam_server.url, key, secret)
    name = f"lockout/{case}"
    ecr.create_repository(repositoryName=name, tags=[{"Key": "team", "Value": "core"}])
    text = LOCKOUTS[case]

    with pytest.raises(ClientError) as refused:
        ecr.set_repository_policy(repositoryName=name, policyText=text)
    code, status, message = aws_error(refused)
    assert (code, status) == ("InvalidParameterException", 400)
    assert "would prevent you from setting another policy" in message
    with pytest.raises(ClientError) as absent:  # nothing was stored
        ecr.get_repository_policy(repositoryName=name)
    assert aws_error(absent)[0] == "RepositoryPolicyNotFoundException"

    # a policy that keeps the caller's access is accepted as it is
    harmless = json.dumps({"Version": "2012-10-17", "Statement": [
        {"Effect": "Allow", "Principal": {"AWS": f"arn:aws:iam::{ACCOUNT}:root"}, "Action": "ecr:BatchGetImage"}]})
    assert ecr.set_repository_policy(repositoryName=name, policyText=harmless)["policyText"] == harmless

    # with force it is stored, and the check's prediction comes true: the caller is now locked out
    ecr.set_repository_policy(repositoryName=name, policyText=text, force=True)
    assert json.loads(ecr.get_repository_policy(repositoryName=name)["policyText"]) == json.loads(text)
    with pytest.raises(ClientError) as locked:
        ecr.set_repository_policy(repositoryName=name, policyText=harmless)
    assert aws_error(locked)[:2] == ("AccessDeniedException", 400)


# Unexpected failures: the database goes away under a running server

def _pg_ctl(cluster: PostgresCluster, *args: str) -> None:
    subprocess.run(cluster._as_postgres(str(PG_BIN / "pg_ctl"), "-D", str(cluster.dir / "data"), *args),
                   check=True, capture_output=True)


@pytest.fixture(scope="module")
def fragile(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[BerthServer, PostgresCluster]]:
    """A Berth on its own PostgreSQL cluster, which the tests stop and start again."""
    cluster = PostgresCluster().start()
    try:
        srv = BerthServer(tmp_path_factory.mktemp("edges-pg") / "data", database_url=cluster.new_database()).start()
        try:
            yield srv, cluster
        finally:
            srv.stop()
    finally:
        cluster.stop()


def _database_down(cluster: PostgresCluster) -> None:
    _pg_ctl(cluster, "-m", "immediate", "stop")


def _database_up(cluster: PostgresCluster) -> None:
    _pg_ctl(cluster, "-w", "-l", str(cluster.dir / "log"), "-o",
            f"-c listen_addresses=127.0.0.1 -p {cluster.port} -k {cluster.dir} -c fsync=off", "start")


def _logged(server: BerthServer, request_id: str) -> bool:
    return any(request_id in line for line in server.read_log().splitlines())


def test_unexpected_failures_answer_in_each_face_shape(fragile: tuple[BerthServer, PostgresCluster],
                                                       tmp_path: Path) -> None:
    """A failure Berth cannot name (here: tables gone from under it) is each face's own fault, with a
    request id that is in the log."""
    server, cluster = fragile
    oci = httpx.Client(base_url=server.url, timeout=30)
    ecr = ecr_client(server.url)
    assert httpx.get(f"{server.url}/readyz").json() == {"ready": True}
    assert oci.post("/v2/faults/app/blobs/uploads/").status_code == 202  # creates the repository
    ecr.describe_repositories(repositoryNames=["faults/app"])

    tables = ("repositories", "tags", "iam_users")
    _rename(server, {t: f"{t}_away" for t in tables})
    try:
        for method in ("GET", "HEAD"):
            r = oci.request(method, "/v2/faults/app/manifests/latest")
            assert r.status_code == 500, r.text
            request_id = r.headers["x-request-id"]
            assert r.headers["content-type"] == "application/json"
            if method == "GET":
                err = r.json()["errors"][0]
                assert err["code"] == "UNKNOWN" and request_id in err["message"]
                assert err["detail"] == {"requestId": request_id}
            assert _logged(server, request_id)

        with pytest.raises(ClientError) as failed:
            ecr.describe_repositories()
        code, status, message = aws_error(failed)
        request_id = failed.value.response["ResponseMetadata"]["RequestId"]
        assert (code, status) == ("ServerException", 500) and request_id in message
        assert isinstance(failed.value, ecr.exceptions.ServerException)  # boto3's modelled fault class
        assert _logged(server, request_id)

        # the aws CLI names the fault and the request id (one attempt: botocore retries 500s otherwise)
        env = {**os.environ, "AWS_ACCESS_KEY_ID": KEY, "AWS_SECRET_ACCESS_KEY": SECRET,
               "AWS_DEFAULT_REGION": REGION, "AWS_MAX_ATTEMPTS": "1", "AWS_CONFIG_FILE": str(tmp_path / "none"),
               "AWS_SHARED_CREDENTIALS_FILE": str(tmp_path / "none")}
        proc = subprocess.run([str(AWS_CLI), "--endpoint-url", server.url, "ecr", "describe-repositories"],
                              env=env, capture_output=True, text=True, timeout=60)
        assert proc.returncode != 0
        assert "(ServerException)" in proc.stderr and "internal error; request id" in proc.stderr, proc.stderr
        cli_id = re.search(r"request id ([0-9a-f-]{36})", proc.stderr)
        assert cli_id is not None and _logged(server, cli_id.group(1))

        # the IAM/STS face: its own fault, ServiceFailure, in its XML
        iam = boto3.client("iam", endpoint_url=server.url, region_name=REGION,  # type: ignore[call-overload]
                           aws_access_key_id=KEY, aws_secret_access_key=SECRET, config=ONE_TRY)
        with pytest.raises(ClientError) as iam_failed:
            iam.list_users()
        assert aws_error(iam_failed)[:2] == ("ServiceFailure", 500)
        assert _logged(server, iam_failed.value.response["ResponseMetadata"]["RequestId"])
    finally:
        _rename(server, {f"{t}_away": t for t in tables})

    # back to normal once the tables are: nothing was cached in a broken state
    assert oci.get("/v2/faults/app/manifests/latest").json()["errors"][0]["code"] == "MANIFEST_UNKNOWN"
    repos = ecr.describe_repositories(repositoryNames=["faults/app"])["repositories"]
    assert [r["repositoryName"] for r in repos] == ["faults/app"]
    oci.close()


def _rename(server: BerthServer, names: dict[str, str]) -> None:
    from tests.support.cluster import query

    for old, new in names.items():
        query(server.database_url, f"ALTER TABLE {old} RENAME TO {new}")


def test_while_the_database_is_down_every_face_answers_its_retryable_503(
        fragile: tuple[BerthServer, PostgresCluster], tmp_path: Path) -> None:
    """PostgreSQL stopped (a crash, as a failover looks to clients): not a fault but "try again": OCI 503
    UNAVAILABLE with Retry-After, AWS ServiceUnavailable (which the SDKs and the CLI retry), /readyz 503."""
    server, cluster = fragile
    oci = httpx.Client(base_url=server.url, timeout=30)
    ecr = ecr_client(server.url)
    _database_down(cluster)
    try:
        for method in ("GET", "HEAD"):
            r = oci.request(method, "/v2/faults/app/manifests/latest")
            assert r.status_code == 503, r.text
            assert r.headers["content-type"] == "application/json" and r.headers["retry-after"].isdigit()
            if method == "GET":
                assert r.json()["errors"][0]["code"] == "UNAVAILABLE", r.text
        ready = httpx.get(f"{server.url}/readyz", timeout=30)
        assert ready.status_code == 503 and "database" in ready.json()["reason"], ready.text

        with pytest.raises(ClientError) as failed:
            boto3.client("ecr", endpoint_url=server.url, region_name=REGION, aws_access_key_id=KEY,
                         aws_secret_access_key=SECRET, config=ONE_TRY).describe_repositories()
        assert aws_error(failed)[:2] == ("ServiceUnavailable", 503)

        env = {**os.environ, "AWS_ACCESS_KEY_ID": KEY, "AWS_SECRET_ACCESS_KEY": SECRET,
               "AWS_DEFAULT_REGION": REGION, "AWS_MAX_ATTEMPTS": "1", "AWS_CONFIG_FILE": str(tmp_path / "none"),
               "AWS_SHARED_CREDENTIALS_FILE": str(tmp_path / "none")}
        proc = subprocess.run([str(AWS_CLI), "--endpoint-url", server.url, "ecr", "describe-repositories"],
                              env=env, capture_output=True, text=True, timeout=60)
        assert proc.returncode != 0 and "(ServiceUnavailable)" in proc.stderr, proc.stderr

        iam = boto3.client("iam", endpoint_url=server.url, region_name=REGION,  # type: ignore[call-overload]
                           aws_access_key_id=KEY, aws_secret_access_key=SECRET, config=ONE_TRY)
        with pytest.raises(ClientError) as iam_failed:
            iam.list_users()
        assert aws_error(iam_failed)[:2] == ("ServiceUnavailable", 503)
    finally:
        _database_up(cluster)

    # the node reconnects by itself
    assert oci.get("/v2/faults/app/manifests/latest").json()["errors"][0]["code"] == "MANIFEST_UNKNOWN"
    assert [r["repositoryName"] for r in ecr.describe_repositories(repositoryNames=["faults/app"])["repositories"]] \
        == ["faults/app"]
    assert httpx.get(f"{server.url}/readyz", timeout=30).json() == {"ready": True}
    oci.close()


def test_unreadable_blob_bytes(fragile: tuple[BerthServer, PostgresCluster]) -> None:
    """Stored bytes lost or truncated outside Berth. Lost: the read fails before the status line, so
    the answer is OCI's UNKNOWN 500 with the request id. Truncated: the 200 and its Content-Length are
    out when the read falls short, so the body is cut short (the client sees an incomplete body, never
    a complete-looking one). Both are logged with a request id, and the server serves on."""
    server, _ = fragile
    with httpx.Client(base_url=server.url, timeout=30) as oci:
        files = {}
        for name in ("lost", "truncated"):
            data = os.urandom(3 * 1024 * 1024)
            digest = "sha256:" + hashlib.sha256(data).hexdigest()
            r = oci.post(f"/v2/faults/{name}/blobs/uploads/", params={"digest": digest}, content=data)
            assert r.status_code == 201, r.text
            hexpart = digest.split(":")[1]
            files[name] = (digest, server.data_dir / "blobs" / "sha256" / hexpart[:2] / hexpart)

        digest, path = files["lost"]
        path.unlink()
        r = oci.get(f"/v2/faults/lost/blobs/{digest}")
        assert r.status_code == 500 and r.headers["content-type"] == "application/json", r.text
        request_id = r.headers["x-request-id"]
        assert r.json()["errors"][0]["code"] == "UNKNOWN" and request_id in r.json()["errors"][0]["message"]
        assert _logged(server, request_id)

        digest, path = files["truncated"]
        os.truncate(path, 1536 * 1024)
        before = server.read_log().count("; request id ")
        with pytest.raises(httpx.RemoteProtocolError):
            oci.get(f"/v2/faults/truncated/blobs/{digest}")
        assert server.read_log().count("; request id ") == before + 1
        assert oci.get("/v2/").status_code == 200


# Start-up happens in the ASGI lifespan only

@pytest.fixture
def no_lifespan(tmp_path: Path) -> Iterator[tuple[str, Path]]:
    """`berth.asgi:app` under uvicorn with `--lifespan off`: the app is never started."""
    port = free_port()
    data = tmp_path / "data"
    env = {**os.environ, "BERTH_DATA_DIR": str(data)}
    proc = subprocess.Popen([sys.executable, "-m", "uvicorn", "--factory", "berth.asgi:app", "--host", "127.0.0.1",
                             "--port", str(port), "--lifespan", "off"], env=env, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL, start_new_session=True)
    try:
        wait_http(f"http://127.0.0.1:{port}/healthz", 30, proc)
        yield f"http://127.0.0.1:{port}", data
    finally:
        proc.terminate()
        proc.wait(10)


def test_requests_before_startup_answer_503(no_lifespan: tuple[str, Path]) -> None:
    url, data = no_lifespan
    for method in ("GET", "HEAD", "PUT"):
        r = httpx.request(method, f"{url}/v2/app/manifests/latest", content=b"{}" if method == "PUT" else None)
        assert r.status_code == 503, (method, r.text)
        assert r.headers["content-type"] == "application/json"
        if method != "HEAD":
            assert r.json()["errors"][0]["code"] == "UNAVAILABLE"
    assert httpx.get(f"{url}/v2/").status_code == 503
    ready = httpx.get(f"{url}/readyz")
    assert (ready.status_code, ready.json()) == (503, {"ready": False, "reason": "not started, or shutting down"})
    assert httpx.get(f"{url}/healthz").status_code == 200  # alive, just not serving

    with pytest.raises(ClientError) as ecr_refused:
        ecr_client(url).describe_repositories()
    assert aws_error(ecr_refused)[:2] == ("ServiceUnavailable", 503)

    iam = boto3.client("iam", endpoint_url=url, region_name=REGION,  # type: ignore[call-overload]
                       aws_access_key_id=KEY, aws_secret_access_key=SECRET, config=ONE_TRY)
    with pytest.raises(ClientError) as iam_refused:
        iam.list_users()
    assert aws_error(iam_refused)[:2] == ("ServiceUnavailable", 503)
    assert not data.exists()  # no request started the app (start-up makes the data dir)
