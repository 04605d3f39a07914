"""Issue 10's security findings, attacked from the outside as an attacker would, against a real
`berth serve --auth iam` (SQLite and PostgreSQL): the real aws CLI, boto3, skopeo and raw HTTP.

- an IAM user created with a path is the ARN GetCallerIdentity reports: a repository-policy Deny
  and an aws:PrincipalArn condition written with that ARN stop its /v2 pull, BatchGetImage and
  BatchDeleteImage;
- the SigV4 credential scope names the face's service and a region this deployment serves;
- a GetDownloadUrlForLayer URL reads that one blob of that one repository, until it expires, and
  nothing else (not another blob, not a manifest, not a push, not as a Basic password);
- a registry token is accepted in its one canonical base64url encoding only;
- a registry token outlives its access key (as AWS temporary credentials do) but carries the
  principal's permissions as they stand, and dies with its user (also when a user of the same name
  is made again).
"""

from __future__ import annotations

import base64
import json
import os
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit

import httpx
import pytest
from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.client import BaseClient
from botocore.credentials import Credentials

from tests.support.aws import AWS_CLI, IAM_ADMIN_KEY, IAM_ADMIN_SECRET, basic, call, client, registry_token
from tests.support.oci import OciClient, random_image, sha256
from tests.support.servers import BerthServer, require_tool

pytestmark = pytest.mark.integration

A, REGION, OTHER_REGION = "123456789012", "us-east-1", "eu-west-1"
KEY, SECRET = IAM_ADMIN_KEY, IAM_ADMIN_SECRET  # the identity suites' shared server (conftest.py: identity_server)
ALL_ECR = {"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "ecr:*", "Resource": "*"}]}
ECR_TARGET = "AmazonEC2ContainerRegistry_V20150921."


@pytest.fixture(scope="module")
def server(identity_server: BerthServer) -> BerthServer:
    return identity_server  # `berth serve --auth iam`, SQLite and PostgreSQL, shared with the other identity suites


def settled(server: BerthServer, probe: Callable[[], int], expected: int) -> int:
    """`probe()` once a change has reached the server's caches: at once on SQLite, which sees every
    commit; within the settle time on PostgreSQL."""
    deadline = time.monotonic() + server.settle  # type: ignore[attr-defined]
    while (got := probe()) != expected and time.monotonic() < deadline:
        time.sleep(0.1)
    return got


@pytest.fixture(scope="module")
def ecr(server: BerthServer) -> BaseClient:
    return client("ecr", server.url, KEY, SECRET)


@pytest.fixture(scope="module")
def iam(server: BerthServer) -> BaseClient:
    return client("iam", server.url, KEY, SECRET)


@pytest.fixture(scope="module")
def admin_oci(server: BerthServer, ecr: BaseClient) -> Iterator[OciClient]:
    with OciClient(server.url) as oci:
        oci.http.headers["Authorization"] = basic(registry_token(ecr))
        yield oci


def make_user(iam: BaseClient, name: str, path: str = "/", policy: dict[str, Any] = ALL_ECR) -> tuple[str, str]:
    iam.create_user(UserName=name, Path=path)
    iam.put_user_policy(UserName=name, PolicyName="ecr", PolicyDocument=json.dumps(policy))
    key = iam.create_access_key(UserName=name)["AccessKey"]
    return key["AccessKeyId"], key["SecretAccessKey"]


def cli(server: BerthServer, tmp: Path, key: str, secret: str, *args: str) -> Any:
    env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
    env.update(AWS_ACCESS_KEY_ID=key, AWS_SECRET_ACCESS_KEY=secret, AWS_DEFAULT_REGION=REGION,
               AWS_CONFIG_FILE=str(tmp / "no-config"), AWS_SHARED_CREDENTIALS_FILE=str(tmp / "no-creds"))
    done = subprocess.run([str(AWS_CLI), "--endpoint-url", server.url, "--output", "json", *args], env=env,
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


def push(oci: OciClient, name: str, layers: int = 1) -> Any:
    image = random_image(layers=layers, layer_size=1500)
    r = oci.push_image(name, image, "v1")
    assert r.status_code == 201, r.text
    return image


def manifest_status(server: BerthServer, token: str, name: str, ref: str = "v1") -> int:
    return httpx.get(f"{server.url}/v2/{name}/manifests/{ref}", headers={
        "Authorization": basic(token), "Accept": "application/vnd.oci.image.manifest.v1+json"}).status_code


def skopeo_inspect(server: BerthServer, token: str, name: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["skopeo", "inspect", "--tls-verify=false", "--creds", f"AWS:{token}",
                           f"docker://{server.host}/{name}:v1"], capture_output=True, text=True, timeout=60)


# --- (a) users with a path ----------------------------------------------------------------------


def test_a_deny_names_the_arn_get_caller_identity_reports_for_a_user_with_a_path(
        server: BerthServer, ecr: BaseClient, iam: BaseClient, admin_oci: OciClient, tmp_path: Path) -> None:
    require_tool("skopeo")
    key, secret = make_user(iam, "pathed", "/ci/team/")
    arn = cli(server, tmp_path, key, secret, "sts", "get-caller-identity")["Arn"]
    assert arn == f"arn:aws:iam::{A}:user/ci/team/pathed"
    assert iam.get_user(UserName="pathed")["User"]["Arn"] == arn
    by_principal = {"Effect": "Deny", "Principal": {"AWS": arn},
                    "Action": ["ecr:BatchGetImage", "ecr:BatchDeleteImage"]}
    by_condition = {"Effect": "Deny", "Principal": "*", "Action": ["ecr:BatchGetImage", "ecr:BatchDeleteImage"],
                    "Condition": {"StringEquals": {"aws:PrincipalArn": arn}}}
    user_ecr = client("ecr", server.url, key, secret)
    token = registry_token(user_ecr)
    assert json.loads(base64.urlsafe_b64decode(token.split(".")[1] + "==="))["sub"] == arn
    for name, statement in (("sec/deny-arn", by_principal), ("sec/deny-condition", by_condition)):
        image = push(admin_oci, name)
        ecr.set_repository_policy(repositoryName=name, policyText=json.dumps(
            {"Version": "2012-10-17", "Statement": [statement]}))
        assert settled(server, lambda n=name: manifest_status(server, token, n), 403) == 403, name
        inspected = skopeo_inspect(server, token, name)
        assert inspected.returncode != 0 and "denied" in inspected.stderr.lower(), inspected.stderr
        ids = [{"imageTag": "v1"}]
        assert call(user_ecr, "BatchGetImage", {"repositoryName": name, "imageIds": ids}).code \
            == "AccessDeniedException", name
        assert call(user_ecr, "BatchDeleteImage", {"repositoryName": name, "imageIds": ids}).code \
            == "AccessDeniedException", name
        assert admin_oci.get_manifest(name, image.digest).status_code == 200  # nothing was deleted
    # the control: the same user pulls where no policy denies it
    push(admin_oci, "sec/allowed")
    assert manifest_status(server, token, "sec/allowed") == 200
    assert skopeo_inspect(server, token, "sec/allowed").returncode == 0


# --- (b) the credential scope ---------------------------------------------------------------------


def signed(server: BerthServer, body: bytes, headers: dict[str, str], service: str, region: str,
           key: str = KEY, secret: str = SECRET) -> httpx.Response:
    req = AWSRequest("POST", server.url + "/", data=body, headers=headers)
    SigV4Auth(Credentials(key, secret), service, region).add_auth(req)
    return httpx.post(server.url + "/", content=body, headers=dict(req.headers.items()))


def ecr_call(server: BerthServer, op: str, service: str = "ecr", region: str = REGION) -> httpx.Response:
    return signed(server, b"{}", {"X-Amz-Target": ECR_TARGET + op,
                                  "Content-Type": "application/x-amz-json-1.1"}, service, region)


def query_call(server: BerthServer, form: dict[str, str], service: str, region: str = REGION) -> httpx.Response:
    return signed(server, urlencode(form).encode(),
                  {"Content-Type": "application/x-www-form-urlencoded; charset=utf-8"}, service, region)


def test_b_the_ecr_face_takes_only_ecr_scoped_signatures_for_served_regions(server: BerthServer) -> None:
    assert ecr_call(server, "DescribeRegistry").status_code == 200
    for service in ("s3", "iam", "sts", "ECR", "ecr-public"):
        r = ecr_call(server, "DescribeRegistry", service=service)
        assert r.status_code == 400, (service, r.text)
        assert r.json()["__type"] == "InvalidSignatureException", r.text
        assert r.json()["message"] == "Credential should be scoped to correct service: 'ecr'. ", r.text
    for region in ("ap-south-1", "*", "US-EAST-1", "us east 1", "us:east-1", "us-east-1 "):
        r = ecr_call(server, "DescribeRegistry", region=region)
        assert r.status_code == 400, (region, r.text)
        assert r.json()["__type"] == "InvalidSignatureException", r.text
        assert r.json()["message"].startswith("Credential should be scoped to a valid region"), r.text


def test_b_a_second_served_region_is_its_own_namespace(server: BerthServer) -> None:
    east = client("ecr", server.url, KEY, SECRET, region=REGION)
    west = client("ecr", server.url, KEY, SECRET, region=OTHER_REGION)
    west.create_repository(repositoryName="sec/west-only")
    names = {r["repositoryName"] for r in east.describe_repositories()["repositories"]}
    assert "sec/west-only" not in names
    assert west.describe_repositories(repositoryNames=["sec/west-only"])["repositories"][0]["repositoryArn"] \
        == f"arn:aws:ecr:{OTHER_REGION}:{A}:repository/sec/west-only"
    assert call(client("ecr", server.url, KEY, SECRET, region="ap-south-1"), "DescribeRegistry", {}).code \
        == "InvalidSignatureException"


def test_b_a_registry_host_naming_a_region_not_served_is_refused(server: BerthServer, ecr: BaseClient) -> None:
    token = registry_token(ecr)
    west = f"{A}.dkr.ecr.{OTHER_REGION}.localhost:{server.port}"
    with OciClient(server.url, host=west) as oci:  # a served region: its own registry
        oci.http.headers["Authorization"] = basic(token)
        assert oci.http.get("/v2/").status_code == 200
        assert push(oci, "sec/west-pushed") is not None
    for region in ("ap-south-1", "xx-nowhere-9"):
        host = f"{A}.dkr.ecr.{region}.localhost:{server.port}"
        for method, path in (("GET", "/v2/"), ("GET", "/v2/sec/west-pushed/manifests/v1"),
                             ("POST", "/v2/sec/elsewhere/blobs/uploads/")):
            r = httpx.request(method, f"{server.url}{path}", headers={"Host": host, "Authorization": basic(token)})
            assert r.status_code == 403, (region, path, r.text)
            assert r.json()["errors"][0]["code"] == "DENIED", r.text
            assert f"Credential should be scoped to a valid region, not '{region}'" in r.json()["errors"][0]["message"]
    r = httpx.get(f"{server.url}/v2/", headers={"Host": f"{A}.dkr.ecr.ap-south-1.localhost:{server.port}"})
    assert r.status_code == 401  # no credentials: the challenge first, as for any host


def test_b_the_iam_and_sts_faces_take_only_their_own_service(server: BerthServer) -> None:
    identity = {"Action": "GetCallerIdentity", "Version": "2011-06-15"}
    list_users = {"Action": "ListUsers", "Version": "2010-05-08"}
    assert query_call(server, identity, "sts").status_code == 200
    assert query_call(server, list_users, "iam").status_code == 200
    for form, service, wrong in ((identity, "sts", "iam"), (identity, "sts", "ecr"), (list_users, "iam", "sts"),
                                 (list_users, "iam", "s3")):
        r = query_call(server, form, wrong)
        assert r.status_code == 403, (form, wrong, r.text)
        assert "<Code>SignatureDoesNotMatch</Code>" in r.text, r.text
        assert f"Credential should be scoped to correct service: &apos;{service}&apos;." in r.text \
            or f"Credential should be scoped to correct service: '{service}'." in r.text, r.text
    r = query_call(server, identity, "sts", region="ap-south-1")
    assert r.status_code == 403 and "Credential should be scoped to a valid region" in r.text, r.text


# --- (c) GetDownloadUrlForLayer -----------------------------------------------------------------


def test_c_a_download_url_reads_exactly_its_blob_and_nothing_else(
        server: BerthServer, ecr: BaseClient, admin_oci: OciClient) -> None:
    image = push(admin_oci, "sec/dl", layers=2)
    other = push(admin_oci, "sec/dl-other")
    layer, second = (sha256(b) for b in image.layers)
    # the same blob also in another repository
    assert admin_oci.push_blob("sec/dl-other", image.layers[0]).status_code == 201
    url = ecr.get_download_url_for_layer(repositoryName="sec/dl", layerDigest=layer)["downloadUrl"]
    got = httpx.get(url)
    assert got.status_code == 200 and got.content == image.layers[0]
    parts = urlsplit(url)
    query = parts.query
    base = f"{parts.scheme}://{parts.netloc}"

    def status(path: str, method: str = "GET", q: str = query, **kw: Any) -> int:
        return httpx.request(method, f"{base}{path}?{q}", **kw).status_code

    assert status(f"/v2/sec/dl/blobs/{second}") == 401  # another blob of the same repository
    assert status(f"/v2/sec/dl-other/blobs/{layer}") == 401  # the same blob in another repository
    assert status(f"/v2/sec/dl-other/blobs/{sha256(other.layers[0])}") == 401
    assert status("/v2/sec/dl/manifests/v1") == 401
    assert status("/v2/sec/dl/tags/list") == 401
    assert status("/v2/sec/dl/blobs/uploads/", "POST") == 401
    assert status(f"/v2/sec/dl/blobs/uploads/?digest={sha256(b'x')}", "POST", q=query + "&digest=x",
                  content=b"x") == 401
    assert status(f"/v2/sec/dl/blobs/{layer}", "DELETE") == 401
    # the expiry and the signature cannot be changed
    fields = dict(parse_qsl(query))
    for name in fields:
        if name.lower().endswith("expires"):
            changed = {**fields, name: str(int(fields[name]) + 3600)}
            assert status(parts.path, q=urlencode(changed)) == 401
    # whatever the URL carries is no password for anything
    for value in fields.values():
        for path in ("/v2/sec/dl/manifests/v1", f"/v2/sec/dl/blobs/{layer}", "/v2/"):
            r = httpx.get(f"{base}{path}", headers={"Authorization": basic(value)})
            assert r.status_code == 401, (path, value[:20], r.status_code)
        push_attempt = httpx.post(f"{base}/v2/sec/dl/blobs/uploads/", headers={"Authorization": basic(value)})
        assert push_attempt.status_code == 401


def test_c_a_download_url_needs_the_callers_pull_permission(
        server: BerthServer, iam: BaseClient, admin_oci: OciClient) -> None:
    image = push(admin_oci, "sec/dl-denied")
    key, secret = make_user(iam, "no-download", policy={"Version": "2012-10-17", "Statement": [
        {"Effect": "Allow", "Action": "ecr:GetDownloadUrlForLayer", "Resource": "*"}]})
    user = client("ecr", server.url, key, secret)
    url = user.get_download_url_for_layer(repositoryName="sec/dl-denied",
                                          layerDigest=sha256(image.layers[0]))["downloadUrl"]
    assert httpx.get(url).status_code == 200
    iam.put_user_policy(UserName="no-download", PolicyName="deny", PolicyDocument=json.dumps(
        {"Version": "2012-10-17", "Statement": [{"Effect": "Deny", "Action": "ecr:*", "Resource": "*"}]}))
    # the permissions as they stand, not as they were
    assert settled(server, lambda: httpx.get(url).status_code, 403) == 403


# --- (d) one canonical encoding -----------------------------------------------------------------


_B64URL = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"


def _padding_twins(part: str) -> list[str]:
    """Other spellings of the same bytes: the last character changed only in its unused bits."""
    unused = {2: 4, 3: 2}.get(len(part) % 4, 0)  # bits of the last character that carry nothing
    if not unused:
        return []
    index = _B64URL.index(part[-1])
    return [part[:-1] + _B64URL[index ^ bits] for bits in range(1, 1 << unused)]


def test_d_only_the_canonical_encoding_of_a_registry_token_is_accepted(
        server: BerthServer, iam: BaseClient) -> None:
    assert _padding_twins("SBvaem5oN8PSPHRLGNNGPQTHjTEu1giXC4-RLzZOyZ4") == [
        "SBvaem5oN8PSPHRLGNNGPQTHjTEu1giXC4-RLzZOyZ5", "SBvaem5oN8PSPHRLGNNGPQTHjTEu1giXC4-RLzZOyZ6",
        "SBvaem5oN8PSPHRLGNNGPQTHjTEu1giXC4-RLzZOyZ7"]
    token = registry_token(client("ecr", server.url, KEY, SECRET))
    assert manifest_status(server, token, "sec/none") == 404  # the genuine token works
    key_id, payload, mac = token.split(".")
    variants = [f"{key_id}.{payload}.{m}" for m in _padding_twins(mac)]
    variants += [f"{key_id}.{p}.{mac}" for p in _padding_twins(payload)]
    variants += [f"{key_id}.{payload}.{mac}=", f"{key_id}.{payload}=.{mac}"]
    assert len(variants) >= 5
    # standard-alphabet spellings: find tokens (one per new user) until one has '-' or '_' to swap
    for i in range(12):
        if "-" in token or "_" in token:
            break
        key, secret = make_user(iam, f"alphabet-{i}")
        token = registry_token(client("ecr", server.url, key, secret))
    assert "-" in token or "_" in token
    variants.append(token.replace("-", "+").replace("_", "/"))
    for variant in variants:
        assert variant != token
        status = manifest_status(server, variant, "sec/none")
        assert status == 401, (variant, status)
    # and the Basic credentials around it: base64 with its unused bits changed
    encoded = base64.b64encode(f"AWS:{token}".encode()).decode()
    stripped = encoded.rstrip("=")
    std = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"
    unused = {2: 4, 3: 2}.get(len(stripped) % 4, 0)
    for bits in range(1, 1 << unused):
        twin = stripped[:-1] + std[std.index(stripped[-1]) ^ bits] + encoded[len(stripped):]
        r = httpx.get(f"{server.url}/v2/sec/none/manifests/v1", headers={"Authorization": f"Basic {twin}"})
        assert r.status_code == 401, twin


# --- (e) keys, users and the tokens they obtained -------------------------------------------------


def test_e_a_token_outlives_its_key_but_not_its_permissions_or_its_user(
        server: BerthServer, iam: BaseClient, admin_oci: OciClient) -> None:
    push(admin_oci, "sec/key-life")
    key, secret = make_user(iam, "key-life", "/svc/")
    token = registry_token(client("ecr", server.url, key, secret))
    assert manifest_status(server, token, "sec/key-life") == 200
    user_ecr = client("ecr", server.url, key, secret)
    pull = lambda: manifest_status(server, token, "sec/key-life")  # noqa: E731
    iam.update_access_key(UserName="key-life", AccessKeyId=key, Status="Inactive")
    unrecognized = lambda: 400 if call(user_ecr, "DescribeRegistry", {}).code == "UnrecognizedClientException" \
        else 200  # noqa: E731
    assert settled(server, unrecognized, 400) == 400
    assert pull() == 200  # the key is not the token
    iam.put_user_policy(UserName="key-life", PolicyName="deny-all", PolicyDocument=json.dumps(
        {"Version": "2012-10-17", "Statement": [{"Effect": "Deny", "Action": "*", "Resource": "*"}]}))
    assert settled(server, pull, 403) == 403  # at once
    iam.delete_user_policy(UserName="key-life", PolicyName="deny-all")
    assert settled(server, pull, 200) == 200
    iam.delete_access_key(UserName="key-life", AccessKeyId=key)
    assert pull() == 200  # a deleted key: the same
    iam.delete_user_policy(UserName="key-life", PolicyName="ecr")
    iam.delete_user(UserName="key-life")
    assert settled(server, pull, 403) == 403  # the user is gone
    # a new user of the same name (and path, and policy) is another principal: the old token stays dead
    new_key, new_secret = make_user(iam, "key-life", "/svc/")
    new_ecr = client("ecr", server.url, new_key, new_secret)
    assert settled(server, lambda: 200 if call(new_ecr, "DescribeRegistry", {}).error is None else 400, 200) == 200
    fresh = registry_token(new_ecr)
    assert settled(server, lambda: manifest_status(server, fresh, "sec/key-life"), 200) == 200
    assert pull() == 403
