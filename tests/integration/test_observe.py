"""The access log, request ids and /metrics (issue 11), against a real `berth serve`."""

from __future__ import annotations

import hashlib
import json
import os
import re
import time
from collections.abc import Iterator

import boto3
import httpx
import pytest
from botocore.exceptions import ClientError

from tests.support.aws import REGION, UserSpec, create_users
from tests.support.oci import OciClient, random_image
from tests.support.servers import BerthServer

pytestmark = pytest.mark.integration

ACCOUNT = "123456789012"
KEY, SECRET = "AKIAOBSERVETESTADMIN", "observe-test-admin-secret-0123456789abcdef"
TARGET = "AmazonEC2ContainerRegistry_V20150921."


def random_bytes(n: int) -> bytes:
    return os.urandom(n)


def log_records(server: BerthServer) -> list[dict]:
    return [json.loads(ln) for ln in server.read_log().splitlines() if ln.startswith('{"time":')]


def wait_for(pred, timeout: float = 10.0):  # type: ignore[no-untyped-def]
    """The access line is written after the response: poll the log briefly."""
    deadline = time.monotonic() + timeout
    while True:
        got = pred()
        if got or time.monotonic() > deadline:
            return got
        time.sleep(0.05)


def metric(text: str, name: str, **labels: str) -> float:
    total = 0.0
    for ln in text.splitlines():
        if ln.startswith(name + "{") or ln.startswith(name + " "):
            if all(f'{k}="{v}"' in ln for k, v in labels.items()):
                total += float(ln.rsplit(" ", 1)[1])
    return total


@pytest.fixture(scope="module")
def iam_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[BerthServer]:
    srv = BerthServer(tmp_path_factory.mktemp("observe") / "data", args=["--auth", "iam"],
                      env={"BERTH_ADMIN_ACCESS_KEY_ID": KEY, "BERTH_ADMIN_SECRET_ACCESS_KEY": SECRET}).start()
    try:
        yield srv
    finally:
        srv.stop()


def ecr_client(url: str, key: str = KEY, secret: str = SECRET):  # type: ignore[no-untyped-def]
    return boto3.client("ecr", endpoint_url=url, region_name=REGION, aws_access_key_id=key,  # type: ignore[call-overload]
                        aws_secret_access_key=secret)


def basic(url: str, key: str = KEY, secret: str = SECRET) -> str:
    token = ecr_client(url, key, secret).get_authorization_token()["authorizationData"][0]["authorizationToken"]
    return "Basic " + token  # base64("AWS:<password>")


@pytest.fixture(scope="module")
def users(iam_server: BerthServer) -> dict[str, tuple[str, str]]:
    iam = boto3.client("iam", endpoint_url=iam_server.url, region_name=REGION,  # type: ignore[call-overload]
                       aws_access_key_id=KEY, aws_secret_access_key=SECRET)
    return create_users(iam, [
        UserSpec("nobody", {"Version": "2012-10-17", "Statement": [
            {"Effect": "Allow", "Action": "ecr:GetAuthorizationToken", "Resource": "*"}]}),
        UserSpec("scraper", {"Version": "2012-10-17", "Statement": [
            {"Effect": "Allow", "Action": ["ecr:GetAuthorizationToken", "berth:GetMetrics"], "Resource": "*"}]}),
    ])


def test_access_log_and_request_ids(iam_server: BerthServer) -> None:
    auth = basic(iam_server.url)
    with OciClient(iam_server.url) as oci:
        oci.http.headers["Authorization"] = auth
        image = random_image(layers=1)
        assert oci.push_image("observe/app", image, "v1").status_code == 201
        r = oci.get_manifest("observe/app", "v1")
        assert r.status_code == 200
    rid = r.headers["X-Request-Id"]
    rec = wait_for(lambda: [x for x in log_records(iam_server) if x["request_id"] == rid])
    assert rec, iam_server.read_log()[-2000:]
    rec = rec[0]
    assert rec["principal"] == f"arn:aws:iam::{ACCOUNT}:user/admin" and rec["account"] == ACCOUNT
    assert rec["method"] == "GET" and rec["path"] == "/v2/observe/app/manifests/v1"
    assert rec["face"] == "oci" and rec["operation"] == "manifests" and rec["status"] == 200
    assert rec["bytes_out"] == len(image.body) and rec["bytes_in"] == 0
    assert rec["remote"] == "127.0.0.1" and rec["duration_ms"] >= 0
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z", rec["time"])
    # a blob big enough for the server to send itself (pathsend) is counted by its announced length
    big = random_bytes(3 * 1024 * 1024 + 7)
    with OciClient(iam_server.url) as oci:
        oci.http.headers["Authorization"] = auth
        assert oci.push_blob("observe/app", big).status_code == 201
        got = oci.get_blob("observe/app", "sha256:" + hashlib.sha256(big).hexdigest())
        assert got.status_code == 200 and got.content == big
    rec = wait_for(lambda: [x for x in log_records(iam_server) if x["request_id"] == got.headers["X-Request-Id"]])
    assert rec and rec[0]["bytes_out"] == len(big), rec
    # the ECR face: x-amzn-RequestId, X-Request-Id and the log name the same request
    ecr = ecr_client(iam_server.url)
    out = ecr.describe_repositories()
    headers = out["ResponseMetadata"]["HTTPHeaders"]
    assert headers["x-request-id"] == headers["x-amzn-requestid"] == out["ResponseMetadata"]["RequestId"]
    rec = wait_for(lambda: [x for x in log_records(iam_server) if x["request_id"] == headers["x-request-id"]])
    assert rec and rec[0]["operation"] == "DescribeRepositories" and rec[0]["face"] == "ecr"
    assert rec[0]["principal"].endswith(":user/admin") and rec[0]["bytes_in"] > 0 and rec[0]["bytes_out"] > 0
    # every request has a line; ids are unique
    records = log_records(iam_server)
    ids = [x["request_id"] for x in records]
    assert len(ids) == len(set(ids))


def test_denials_say_which_action(iam_server: BerthServer, users: dict[str, tuple[str, str]]) -> None:
    key, secret = users["nobody"]
    r = httpx.get(iam_server.url + "/v2/observe/app/manifests/v1", headers={"Authorization": basic(iam_server.url,
                                                                                                    key, secret)})
    assert r.status_code == 403
    rec = wait_for(lambda: [x for x in log_records(iam_server) if x["request_id"] == r.headers["X-Request-Id"]])
    assert rec and rec[0]["denied_action"] == "ecr:BatchGetImage" and rec[0]["principal"].endswith(":user/nobody")
    with pytest.raises(ClientError):
        ecr_client(iam_server.url, key, secret).describe_repositories()
    rec = wait_for(lambda: [x for x in log_records(iam_server) if x.get("denied_action") == "ecr:DescribeRepositories"])
    assert rec and rec[0]["status"] == 400
    iam = boto3.client("iam", endpoint_url=iam_server.url, region_name=REGION,  # type: ignore[call-overload]
                       aws_access_key_id=key, aws_secret_access_key=secret)
    with pytest.raises(ClientError):
        iam.list_users()
    rec = wait_for(lambda: [x for x in log_records(iam_server) if x.get("denied_action") == "iam:ListUsers"])
    assert rec and rec[0]["face"] == "iam" and rec[0]["operation"] == "ListUsers"


def test_metrics_need_get_metrics(iam_server: BerthServer, users: dict[str, tuple[str, str]]) -> None:
    url = iam_server.url + "/metrics"
    assert httpx.get(url).status_code == 401
    r = httpx.get(url, headers={"Authorization": basic(iam_server.url, *users["nobody"])})
    assert r.status_code == 403
    rec = wait_for(lambda: [x for x in log_records(iam_server) if x["request_id"] == r.headers["X-Request-Id"]])
    assert rec and rec[0]["denied_action"] == "berth:GetMetrics"
    r = httpx.get(url, headers={"Authorization": basic(iam_server.url, *users["scraper"])})
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/plain")
    assert metric(r.text, "berth_authorization_denials_total", action="berth:GetMetrics") >= 1
    assert httpx.get(url, headers={"Authorization": basic(iam_server.url)}).status_code == 200  # the admin


def test_metrics_count_what_happened(tmp_path_factory: pytest.TempPathFactory) -> None:
    srv = BerthServer(tmp_path_factory.mktemp("metrics") / "data", args=["--metrics-public"]).start()
    try:
        with OciClient(srv.url) as oci:
            image = random_image(layers=2)
            assert oci.push_image("m/app", image, "v1").status_code == 201
            for _ in range(5):
                assert oci.get_manifest("m/app", "v1").status_code == 200
            assert oci.get_manifest("m/app", "nope").status_code == 404
            location = oci.start_upload("m/app")  # one session left open, once it has bytes
            assert oci.patch(location, b"abc", 0).status_code == 202
        text = httpx.get(srv.url + "/metrics").text
        assert metric(text, "berth_requests_total", face="oci", route="manifests", method="GET", status="200") == 5
        assert metric(text, "berth_requests_total", face="oci", route="manifests", method="GET", status="404") == 1
        assert metric(text, "berth_requests_total", face="oci", route="manifests", method="PUT", status="201") == 1
        assert metric(text, "berth_request_duration_seconds_count", face="oci", route="manifests") == 7
        assert metric(text, "berth_request_duration_seconds_bucket", face="oci", route="manifests", le="+Inf") == 7
        assert metric(text, "berth_request_bytes_total", face="oci") >= sum(len(b) for b in image.blobs)
        assert metric(text, "berth_response_bytes_total", face="oci") >= 5 * len(image.body)
        assert metric(text, "berth_upload_sessions_open") >= 1
        assert metric(text, "berth_blobs_stored") == 3  # two layers and the config
        assert metric(text, "berth_blob_bytes_stored") == sum(len(b) for b in image.blobs)
        assert "berth_jobs{" in text and "berth_job_oldest_queued_age_seconds{" in text  # pull-time jobs, periodic
        assert "_created" not in text
    finally:
        srv.stop()


def test_metrics_add_up_across_workers(tmp_path_factory: pytest.TempPathFactory) -> None:
    srv = BerthServer(tmp_path_factory.mktemp("metrics2") / "data",
                      args=["--metrics-public", "--workers", "2", "--no-access-log"]).start()
    try:
        n = 60
        for _ in range(n):  # a new connection each: SO_REUSEPORT spreads them over both workers
            assert httpx.get(srv.url + "/v2/").status_code == 200
        time.sleep(5.5)  # past a snapshot period: each worker's next request writes its snapshot
        for _ in range(40):
            httpx.get(srv.url + "/healthz")
        text = httpx.get(srv.url + "/metrics").text
        # and BerthServer.start's readiness probe, the first 200 of /v2/
        assert metric(text, "berth_requests_total", face="oci", route="base", status="200") == n + 1
        assert "Traceback" not in srv.read_log() and not re.search(r'^\{"time"', srv.read_log(), re.M)
    finally:
        srv.stop()


def test_text_log_format(tmp_path_factory: pytest.TempPathFactory) -> None:
    srv = BerthServer(tmp_path_factory.mktemp("textlog") / "data", args=["--log-format", "text"]).start()
    try:
        r = httpx.get(srv.url + "/v2/_catalog?n=5")
        line = wait_for(lambda: [ln for ln in srv.read_log().splitlines() if r.headers["X-Request-Id"] in ln])
        assert line, srv.read_log()
        assert re.fullmatch(r'127\.0\.0\.1 - arn:aws:iam::\d{12}:root \[\d\d/\w{3}/\d{4}:\d\d:\d\d:\d\d \+0000\] '
                            r'"GET /v2/_catalog\?n=5 HTTP/1\.1" 200 \d+ rid=\S+ ms=[\d.]+', line[0]), line[0]
    finally:
        srv.stop()

