"""Lifecycle policies end to end with the real aws CLI, boto3 and skopeo against a real `berth serve --auth iam`,
once on the embedded store and once on PostgreSQL: put a policy, preview it, wait for the preview with the
CLI's waiter, run it with `berth lifecycle run`, list what is left, pull what is left; the archive
storage class; pull-time exclusions."""

from __future__ import annotations

import base64
import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest
from botocore.client import BaseClient
from botocore.exceptions import ClientError, WaiterError

from tests.integration.test_ecr_images import Img, Oci, make_image, make_index
from tests.support.aws import aws_cli
from tests.support.oci import OCI_INDEX, sha256
from tests.support.servers import BerthServer, require_tool

pytestmark = pytest.mark.integration

KEY, SECRET = "AKIALIFECYCLETEST001", "lifecycle-test-secret-0123456789abcdef"
ACCOUNT, REGION = "123456789012", "us-east-1"
SIG_TYPE = "application/vnd.dev.cosign.artifact.sig.v1+json"

POLICY = {"rules": [
    {"rulePriority": 1, "description": "keep the two newest v* images",
     "selection": {"tagStatus": "tagged", "tagPrefixList": ["v"], "countType": "imageCountMoreThan",
                   "countNumber": 2}, "action": {"type": "expire"}},
    {"rulePriority": 2, "description": "keep one untagged image",
     "selection": {"tagStatus": "untagged", "countType": "imageCountMoreThan", "countNumber": 1},
     "action": {"type": "expire"}},
]}


@pytest.fixture(scope="module", params=["sqlite", "postgres"])
def server(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[BerthServer]:
    base = tmp_path_factory.mktemp("lifecycle")
    url = request.getfixturevalue("postgres").new_database() if request.param == "postgres" else ""
    srv = BerthServer(base / "data", database_url=url,
                      env={"BERTH_ADMIN_ACCESS_KEY_ID": KEY, "BERTH_ADMIN_SECRET_ACCESS_KEY": SECRET},
                      args=["--auth", "iam", "--archive-storage-url", f"file://{base / 'archive'}"]).start()
    try:
        yield srv
    finally:
        srv.stop()


@pytest.fixture(scope="module")
def ecr(server: BerthServer) -> BaseClient:
    return boto3.client("ecr", endpoint_url=server.url, region_name=REGION, aws_access_key_id=KEY,
                        aws_secret_access_key=SECRET)


@pytest.fixture(scope="module")
def basic(ecr: BaseClient) -> str:
    return str(ecr.get_authorization_token()["authorizationData"][0]["authorizationToken"])


@pytest.fixture(scope="module")
def oci(server: BerthServer, basic: str) -> Iterator[Oci]:
    client = Oci(server, basic)
    yield client
    client.client.close()


def cli(server: BerthServer, tmp: Path, *args: str) -> Any:
    out = aws_cli(server.url, KEY, SECRET, tmp, "ecr", *args)
    return json.loads(out) if out.strip() else None


def berth(server: BerthServer, *args: str) -> str:
    db = ["--database-url", server.database_url] if server.database_url else []
    proc = subprocess.run([sys.executable, "-m", "berth", "lifecycle", *args, "--data-dir", str(server.data_dir),
                           *db], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    return proc.stdout


def skopeo(*args: str) -> None:
    proc = subprocess.run(["skopeo", *args], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr


def push(oci: Oci, repo: str, image: Img, tag: str | None = None) -> str:
    digest = oci.push(repo, image, tag)
    time.sleep(0.02)  # distinct push times: imageCountMoreThan orders by them
    return digest


def test_put_preview_wait_run_list_pull(server: BerthServer, ecr: BaseClient, oci: Oci, basic: str,
                                        tmp_path: Path) -> None:
    require_tool("skopeo")
    repo = "team/lifecycle"
    ecr.create_repository(repositoryName=repo)
    u1, u2 = push(oci, repo, make_image()), push(oci, repo, make_image())
    v = {t: make_image() for t in ("v1", "v2", "v3", "v4")}
    digests = {t: push(oci, repo, img, t) for t, img in v.items()}
    sig = push(oci, repo, make_image(artifact_type=SIG_TYPE, subject=v["v1"]))
    children = [make_image(arch="amd64"), make_image(arch="arm64")]
    c1, c2 = (push(oci, repo, c) for c in children)
    index = oci.manifest(repo, "multi", make_index(children), OCI_INDEX)

    text = json.dumps(POLICY)
    (tmp_path / "policy.json").write_text(text)
    put = cli(server, tmp_path, "put-lifecycle-policy", "--repository-name", repo,
              "--lifecycle-policy-text", f"file://{tmp_path / 'policy.json'}")
    assert put == {"registryId": ACCOUNT, "repositoryName": repo, "lifecyclePolicyText": text}
    got = cli(server, tmp_path, "get-lifecycle-policy", "--repository-name", repo)
    assert got == {"registryId": ACCOUNT, "repositoryName": repo, "lifecyclePolicyText": text}

    bad = json.loads(text)
    bad["rules"][1]["selection"]["tagStatus"] = "tagged"
    with pytest.raises(ClientError) as e:
        ecr.put_lifecycle_policy(repositoryName=repo, lifecyclePolicyText=json.dumps(bad))
    assert e.value.response["Error"]["Code"] == "InvalidParameterException"
    assert e.value.response["Error"]["Message"].startswith(
        "Invalid parameter at 'LifecyclePolicyText' failed to satisfy constraint: 'Lifecycle policy validation "
        "failure: ")
    with pytest.raises(ClientError) as e:
        ecr.get_lifecycle_policy_preview(repositoryName=repo)
    assert e.value.response["Error"]["Code"] == "LifecyclePolicyPreviewNotFoundException"

    started = cli(server, tmp_path, "start-lifecycle-policy-preview", "--repository-name", repo)
    assert started == {"registryId": ACCOUNT, "repositoryName": repo, "lifecyclePolicyText": text,
                       "status": "IN_PROGRESS"}
    cli(server, tmp_path, "wait", "lifecycle-policy-preview-complete", "--repository-name", repo)
    preview = cli(server, tmp_path, "get-lifecycle-policy-preview", "--repository-name", repo)
    expected = {digests["v1"]: 1, digests["v2"]: 1, sig: 1, u1: 2, u2: 2}
    assert preview["status"] == "COMPLETE"
    assert {r["imageDigest"]: r["appliedRulePriority"] for r in preview["previewResults"]} == expected
    assert all(r["action"] == {"type": "EXPIRE"} and r["storageClass"] == "STANDARD"
               for r in preview["previewResults"])
    assert preview["summary"] == {"expiringImageTotalCount": 5, "transitioningImageTotalCounts": []}
    first = next(r for r in preview["previewResults"] if r["imageDigest"] == digests["v1"])
    assert first["imageTags"] == ["v1"]
    pages = list(ecr.get_paginator("get_lifecycle_policy_preview").paginate(
        repositoryName=repo, PaginationConfig={"PageSize": 2}))
    assert [len(p["previewResults"]) for p in pages] == [2, 2, 1]
    tagged = ecr.get_lifecycle_policy_preview(repositoryName=repo, filter={"tagStatus": "TAGGED"})
    assert {r["imageDigest"] for r in tagged["previewResults"]} == {digests["v1"], digests["v2"]}

    dry = berth(server, "run", "--repository", repo, "--dry-run")
    assert dry.count("would expire") == 5
    assert len(ecr.list_images(repositoryName=repo)["imageIds"]) == 10  # a dry run changes nothing
    ran = berth(server, "run", "--repository", repo)
    assert ran.count("expired") == 5, ran

    left = {(i["imageDigest"], i.get("imageTag")) for i in ecr.list_images(repositoryName=repo)["imageIds"]}
    assert left == {(digests["v3"], "v3"), (digests["v4"], "v4"), (index, "multi"), (c1, None), (c2, None)}
    evaluated = cli(server, tmp_path, "get-lifecycle-policy", "--repository-name", repo)
    assert evaluated["lastEvaluatedAt"]
    history = berth(server, "history", "--repository", repo)
    assert all(d[:20] in history for d in expected)
    assert oci.get(repo, "v1").status_code == 404

    token = base64.b64decode(basic).decode()
    skopeo("copy", "--src-tls-verify=false", "--src-creds", token, f"docker://{server.host}/{repo}:v3",
           f"oci:{tmp_path / 'v3'}:v3")
    assert json.loads((tmp_path / "v3" / "index.json").read_text())["manifests"][0]["digest"] == digests["v3"]
    skopeo("copy", "--all", "--src-tls-verify=false", "--src-creds", token, f"docker://{server.host}/{repo}:multi",
           f"oci:{tmp_path / 'multi'}:multi")
    for c in children:
        assert (tmp_path / "multi" / "blobs" / "sha256" / sha256(c.body).split(":", 1)[1]).exists()

    again = cli(server, tmp_path, "start-lifecycle-policy-preview", "--repository-name", repo)
    assert again["status"] == "IN_PROGRESS"
    cli(server, tmp_path, "wait", "lifecycle-policy-preview-complete", "--repository-name", repo)
    assert cli(server, tmp_path, "get-lifecycle-policy-preview", "--repository-name", repo)["previewResults"] == []

    deleted = cli(server, tmp_path, "delete-lifecycle-policy", "--repository-name", repo)
    assert deleted["lifecyclePolicyText"] == text and deleted["lastEvaluatedAt"]
    with pytest.raises(ClientError) as e:
        ecr.get_lifecycle_policy(repositoryName=repo)
    assert e.value.response["Error"]["Code"] == "LifecyclePolicyNotFoundException"


def archive_root(server: BerthServer) -> Path:
    return server.data_dir.parent / "archive"


def berth_gc(server: BerthServer, *args: str) -> dict[str, Any]:
    db = ["--database-url", server.database_url] if server.database_url else []
    proc = subprocess.run([sys.executable, "-m", "berth", "gc", "--json", "--data-dir", str(server.data_dir), *db,
                           *args], env={**os.environ, **server.extra_env}, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    report: dict[str, Any] = json.loads(proc.stdout)
    return report


def stored(root: Path, data: bytes) -> Path:
    hexdigest = sha256(data).split(":", 1)[1]
    return root / "blobs" / "sha256" / hexdigest[:2] / hexdigest


def wait_for(condition: Any, timeout: float = 30.0) -> None:
    deadline = time.time() + timeout
    while not condition():
        assert time.time() < deadline, "timed out"
        time.sleep(0.1)


def test_archive_and_restore(server: BerthServer, ecr: BaseClient, oci: Oci, basic: str, tmp_path: Path) -> None:
    require_tool("skopeo")
    repo = "team/archive"
    ecr.create_repository(repositoryName=repo)
    image = make_image()
    digest = push(oci, repo, image, "v1")
    out = cli(server, tmp_path, "update-image-storage-class", "--repository-name", repo, "--image-id",
              "imageTag=v1", "--target-storage-class", "ARCHIVE")
    assert out == {"registryId": ACCOUNT, "repositoryName": repo, "imageId": {"imageDigest": digest,
                                                                               "imageTag": "v1"},
                   "imageStatus": "ARCHIVED"}
    assert oci.get(repo, "v1").status_code == 404
    assert oci.get(repo, digest).status_code == 404
    main = stored(server.data_dir, image.layers[0])
    archive = stored(archive_root(server), image.layers[0])
    wait_for(lambda: archive.exists() and not main.exists())  # its placement job moved it to the archive store
    assert archive.read_bytes() == image.layers[0]
    report = berth_gc(server, "--grace", "0", "--archive-storage-url", f"file://{archive_root(server)}")
    assert report["walked"] >= 2 and archive.read_bytes() == image.layers[0]  # recorded there: kept
    layer = f"/v2/{repo}/blobs/{sha256(image.layers[0])}"
    assert oci.client.get(layer).status_code == 404  # its layers too
    got = ecr.batch_get_image(repositoryName=repo, imageIds=[{"imageTag": "v1"}])
    assert [f["failureCode"] for f in got["failures"]] == ["ImageInaccessible"]
    assert ecr.list_images(repositoryName=repo)["imageIds"] == []
    archived = cli(server, tmp_path, "describe-images", "--repository-name", repo, "--filter",
                   "imageStatus=ARCHIVED")["imageDetails"]
    assert [(d["imageDigest"], d["imageStatus"]) for d in archived] == [(digest, "ARCHIVED")]
    assert archived[0]["lastArchivedAt"]
    with pytest.raises(ClientError) as scan:  # an archived image cannot be scanned
        ecr.start_image_scan(repositoryName=repo, imageId={"imageDigest": digest})
    assert scan.value.response["Error"]["Code"] == "ImageArchivedException"

    restored = ecr.update_image_storage_class(repositoryName=repo, imageId={"imageDigest": digest},
                                              targetStorageClass="STANDARD")
    assert restored["imageStatus"] in ("ACTIVATING", "ACTIVE")
    deadline = time.time() + 30
    while ecr.list_images(repositoryName=repo)["imageIds"] == [] and time.time() < deadline:
        time.sleep(0.2)
    [detail] = ecr.describe_images(repositoryName=repo)["imageDetails"]
    assert detail["imageStatus"] == "ACTIVE" and "lastActivatedAt" in detail
    assert main.read_bytes() == image.layers[0] and not archive.exists()  # back before it was ACTIVE
    skopeo("copy", "--src-tls-verify=false", "--src-creds", base64.b64decode(basic).decode(),
           f"docker://{server.host}/{repo}:v1", f"oci:{tmp_path / 'v1'}:v1")
    assert oci.client.get(layer).content == image.layers[0]

    with pytest.raises(ClientError) as e:
        ecr.update_image_storage_class(repositoryName=repo, imageId={"imageTag": "nope"}, targetStorageClass="ARCHIVE")
    assert e.value.response["Error"]["Code"] == "ImageNotFoundException"


def test_pull_time_exclusions(server: BerthServer, tmp_path: Path) -> None:
    arn = f"arn:aws:iam::{ACCOUNT}:role/scanner"
    out = cli(server, tmp_path, "register-pull-time-update-exclusion", "--principal-arn", arn)
    assert out["principalArn"] == arn and out["createdAt"]
    assert cli(server, tmp_path, "list-pull-time-update-exclusions")["pullTimeUpdateExclusions"] == [arn]
    cli(server, tmp_path, "deregister-pull-time-update-exclusion", "--principal-arn", arn)
    assert cli(server, tmp_path, "list-pull-time-update-exclusions")["pullTimeUpdateExclusions"] == []


@pytest.fixture()
def brief_previews(tmp_path_factory: pytest.TempPathFactory) -> Iterator[BaseClient]:
    """A server whose COMPLETE previews expire after 3 s (BERTH_LIFECYCLE_PREVIEW_RETENTION_SECONDS); on the
    embedded store only: the statuses are decided the same way on both (tests/contract/test_lifecycle.py)."""
    base = tmp_path_factory.mktemp("previews")
    srv = BerthServer(base / "data",
                      env={"BERTH_ADMIN_ACCESS_KEY_ID": KEY, "BERTH_ADMIN_SECRET_ACCESS_KEY": SECRET,
                           "BERTH_LIFECYCLE_PREVIEW_RETENTION_SECONDS": "3"}, args=["--auth", "iam"]).start()
    try:
        yield boto3.client("ecr", endpoint_url=srv.url, region_name=REGION, aws_access_key_id=KEY,
                           aws_secret_access_key=SECRET)
    finally:
        srv.stop()


def test_a_complete_preview_expires(brief_previews: BaseClient) -> None:
    ecr, repo = brief_previews, "team/expiring"
    ecr.create_repository(repositoryName=repo)
    ecr.put_lifecycle_policy(repositoryName=repo, lifecyclePolicyText=json.dumps(POLICY))
    ecr.start_lifecycle_policy_preview(repositoryName=repo)
    ecr.get_waiter("lifecycle_policy_preview_complete").wait(repositoryName=repo,
                                                             WaiterConfig={"Delay": 0.5, "MaxAttempts": 40})
    complete = ecr.get_lifecycle_policy_preview(repositoryName=repo)
    assert complete["status"] in ("COMPLETE", "EXPIRED")
    wait_for(lambda: ecr.get_lifecycle_policy_preview(repositoryName=repo)["status"] == "EXPIRED", 15)
    expired = ecr.get_lifecycle_policy_preview(repositoryName=repo)
    assert expired["previewResults"] == [] and "summary" not in expired
    with pytest.raises(WaiterError) as e:  # an expired preview is not a complete one for the waiter
        ecr.get_waiter("lifecycle_policy_preview_complete").wait(repositoryName=repo,
                                                                 WaiterConfig={"Delay": 0.2, "MaxAttempts": 2})
    assert "Max attempts exceeded" in str(e.value)
    assert ecr.start_lifecycle_policy_preview(repositoryName=repo)["status"] == "IN_PROGRESS"  # a new one starts
