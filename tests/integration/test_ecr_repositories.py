"""ECR repository operations through boto3 and the aws CLI against a real `berth serve --auth iam`,
on SQLite and on PostgreSQL: shapes per botocore's model, every declared error case, pagination,
tag mutability enforced on OCI pushes, cross-account registryId.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import json
import os
import re
import time
from collections.abc import Callable, Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

import boto3
import httpx
import pytest
from botocore.client import BaseClient
from botocore.config import Config
from botocore.exceptions import ClientError

from berth.app import bootstrap_account
from berth.config import Settings
from tests.support.aws import aws_cli
from tests.support.servers import BerthServer

pytestmark = pytest.mark.integration

ACCOUNT, REGION = "123456789012", "us-east-1"
KEY, SECRET = "AKIAREPOSITORIESTEST1", "repositories-test-secret-0123456789abcdef"
OTHER_ACCOUNT, OTHER_KEY, OTHER_SECRET = "210987654321", "AKIAREPOSOTHERACCOUNT", "other-account-secret-0123456789"
OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
REPO_KEYS = {"repositoryArn", "registryId", "repositoryName", "repositoryUri", "createdAt", "imageTagMutability",
             "imageScanningConfiguration", "encryptionConfiguration"}


@pytest.fixture(scope="module", params=["sqlite", "postgres"])
def server(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[BerthServer]:
    base = tmp_path_factory.mktemp("ecr-repos")
    url = request.getfixturevalue("postgres").new_database() if request.param == "postgres" else ""
    srv = BerthServer(base / "data", database_url=url,
                      env={"BERTH_ADMIN_ACCESS_KEY_ID": KEY, "BERTH_ADMIN_SECRET_ACCESS_KEY": SECRET,
                           "BERTH_CREATE_ON_PUSH": "0"},
                      args=["--auth", "iam"]).start()
    try:
        yield srv
    finally:
        srv.stop()


def client(server: BerthServer, key: str = KEY, secret: str = SECRET) -> BaseClient:
    return boto3.client("ecr", endpoint_url=server.url, region_name=REGION, aws_access_key_id=key,
                        aws_secret_access_key=secret,
                        config=Config(retries={"max_attempts": 1}, parameter_validation=False))


@pytest.fixture(scope="module")
def ecr(server: BerthServer) -> BaseClient:
    return client(server)


def arn(name: str, account: str = ACCOUNT, region: str = REGION) -> str:
    return f"arn:aws:ecr:{region}:{account}:repository/{name}"


def raises(ecr: BaseClient, exc: str, call: Callable[..., Any], **kwargs: Any) -> str:
    """Assert that the call fails with the exception class `exc` (botocore's modelled class when there is one)."""
    with pytest.raises(getattr(ecr.exceptions, exc, ClientError)) as info:
        call(**kwargs)
    err: ClientError = info.value
    assert err.response["Error"]["Code"] == exc
    assert err.response["ResponseMetadata"]["HTTPStatusCode"] == 400
    return str(err.response["Error"]["Message"])


def expect_repo(repo: dict[str, Any], name: str, *, mutability: str = "MUTABLE",
                filters: list[dict[str, str]] | None = None, scan: bool = False,
                encryption: dict[str, str] | None = None, account: str = ACCOUNT) -> None:
    """`repo` is exactly the model's Repository structure for these settings."""
    assert set(repo) == REPO_KEYS | ({"imageTagMutabilityExclusionFilters"} if filters else set())
    assert repo["repositoryArn"] == arn(name, account)
    assert repo["registryId"] == account
    assert repo["repositoryName"] == name
    # a host the client can use: the one it called for the default registry, else the ECR name with the port
    want = r"127\.0\.0\.1:\d+" if account == ACCOUNT else re.escape(f"{account}.dkr.ecr.{REGION}.localhost") + r":\d+"
    assert re.fullmatch(want + "/" + re.escape(name), repo["repositoryUri"]), repo["repositoryUri"]
    assert isinstance(repo["createdAt"], datetime) and abs(repo["createdAt"].timestamp() - time.time()) < 600
    assert repo["imageTagMutability"] == mutability
    assert repo.get("imageTagMutabilityExclusionFilters") == filters
    assert repo["imageScanningConfiguration"] == {"scanOnPush": scan}
    assert repo["encryptionConfiguration"] == (encryption or {"encryptionType": "AES256"})


# OCI pushes with a registry token

def sha256(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


class Registry:
    """Raw /v2 HTTP with `Authorization: Basic base64(AWS:<token>)` from GetAuthorizationToken."""

    def __init__(self, server: BerthServer, ecr: BaseClient) -> None:
        data = ecr.get_authorization_token()["authorizationData"][0]
        user, token = base64.b64decode(data["authorizationToken"]).decode().split(":", 1)
        assert user == "AWS"
        basic = base64.b64encode(f"AWS:{token}".encode()).decode()
        self.http = httpx.Client(base_url=server.url, headers={"Authorization": f"Basic {basic}"}, timeout=30)

    def push_blob(self, name: str, data: bytes) -> str:
        digest = sha256(data)
        r = self.http.post(f"/v2/{name}/blobs/uploads/", params={"digest": digest}, content=data,
                           headers={"Content-Type": "application/octet-stream"})
        assert r.status_code == 201, r.text
        return digest

    def push_image(self, name: str, ref: str, payload: bytes) -> tuple[httpx.Response, str]:
        """Push a one-layer image whose layer is `payload`; the manifest PUT response and its digest."""
        config = json.dumps({"architecture": "amd64", "os": "linux",
                             "rootfs": {"type": "layers", "diff_ids": [sha256(payload)]}}).encode()
        layer = {"mediaType": "application/vnd.oci.image.layer.v1.tar", "digest": self.push_blob(name, payload),
                 "size": len(payload)}
        body = json.dumps({"schemaVersion": 2, "mediaType": OCI_MANIFEST,
                           "config": {"mediaType": "application/vnd.oci.image.config.v1+json",
                                      "digest": self.push_blob(name, config), "size": len(config)},
                           "layers": [layer]}).encode()
        r = self.http.put(f"/v2/{name}/manifests/{ref}", content=body, headers={"Content-Type": OCI_MANIFEST})
        return r, sha256(body)

    def manifest_digest(self, name: str, ref: str) -> str | None:
        r = self.http.get(f"/v2/{name}/manifests/{ref}", headers={"Accept": OCI_MANIFEST})
        return r.headers["Docker-Content-Digest"] if r.status_code == 200 else None


@pytest.fixture(scope="module")
def registry(server: BerthServer, ecr: BaseClient) -> Iterator[Registry]:
    reg = Registry(server, ecr)
    try:
        yield reg
    finally:
        reg.http.close()


def oci_code(r: httpx.Response) -> list[str]:
    return [e["code"] for e in r.json()["errors"]]


# CreateRepository

def test_create_repository_defaults(ecr: BaseClient) -> None:
    out = ecr.create_repository(repositoryName="create/plain")
    assert set(out) == {"repository", "ResponseMetadata"}
    expect_repo(out["repository"], "create/plain")
    assert ecr.list_tags_for_resource(resourceArn=arn("create/plain"))["tags"] == []
    msg = raises(ecr, "RepositoryAlreadyExistsException", ecr.create_repository, repositoryName="create/plain")
    assert msg == f"The repository with name 'create/plain' already exists in the registry with id '{ACCOUNT}'"


def test_create_repository_with_every_setting(ecr: BaseClient) -> None:
    filters = [{"filterType": "WILDCARD", "filter": "latest*"}, {"filterType": "WILDCARD", "filter": "dev-*"}]
    tags = [{"Key": "team", "Value": "platform"}, {"Key": "cost-center", "Value": ""},
            {"Key": "Owner Name", "Value": "a.b@example.com:+=/_-"}]
    out = ecr.create_repository(
        repositoryName="create/full", tags=tags, imageTagMutability="IMMUTABLE_WITH_EXCLUSION",
        imageTagMutabilityExclusionFilters=filters, imageScanningConfiguration={"scanOnPush": True},
        encryptionConfiguration={"encryptionType": "KMS", "kmsKey": "arn:aws:kms:us-east-1:123456789012:key/k1"},
    )["repository"]
    expect_repo(out, "create/full", mutability="IMMUTABLE_WITH_EXCLUSION", filters=filters, scan=True,
                encryption={"encryptionType": "KMS", "kmsKey": "arn:aws:kms:us-east-1:123456789012:key/k1"})
    described = ecr.describe_repositories(repositoryNames=["create/full"])["repositories"]
    assert described == [out]
    listed = ecr.list_tags_for_resource(resourceArn=arn("create/full"))["tags"]
    assert sorted(listed, key=lambda t: t["Key"]) == sorted(tags, key=lambda t: t["Key"])

    for mode in ("IMMUTABLE", "MUTABLE_WITH_EXCLUSION"):
        name = f"create/{mode.lower().replace('_', '-')}"
        kwargs: dict[str, Any] = {"imageTagMutabilityExclusionFilters": filters[:1]} if "EXCL" in mode else {}
        repo = ecr.create_repository(repositoryName=name, imageTagMutability=mode, **kwargs)["repository"]
        expect_repo(repo, name, mutability=mode, filters=kwargs.get("imageTagMutabilityExclusionFilters"))
    kms = ecr.create_repository(repositoryName="create/kms-default",
                                encryptionConfiguration={"encryptionType": "KMS_DSSE"})["repository"]
    expect_repo(kms, "create/kms-default", encryption={"encryptionType": "KMS_DSSE"})


@pytest.mark.parametrize(("kwargs", "exc"), [
    ({"repositoryName": "Upper/Case"}, "InvalidParameterException"),
    ({"repositoryName": "a"}, "InvalidParameterException"),
    ({"repositoryName": "x" * 257}, "InvalidParameterException"),
    ({"imageTagMutability": "IMMUTABLE_WITH_EXCLUSION"}, "InvalidParameterException"),
    ({"imageTagMutability": "MUTABLE_WITH_EXCLUSION"}, "InvalidParameterException"),
    ({"imageTagMutability": "IMMUTABLE",
      "imageTagMutabilityExclusionFilters": [{"filterType": "WILDCARD", "filter": "latest"}]},
     "InvalidParameterException"),
    ({"imageTagMutabilityExclusionFilters": [{"filterType": "WILDCARD", "filter": "latest"}]},
     "InvalidParameterException"),
    ({"imageTagMutability": "IMMUTABLE_WITH_EXCLUSION",
      "imageTagMutabilityExclusionFilters": [{"filterType": "WILDCARD", "filter": f"t{i}"} for i in range(6)]},
     "InvalidParameterException"),
    ({"imageTagMutability": "IMMUTABLE_WITH_EXCLUSION",
      "imageTagMutabilityExclusionFilters": [{"filterType": "WILDCARD", "filter": "bad/filter"}]},
     "InvalidParameterException"),
    ({"encryptionConfiguration": {"encryptionType": "AES256", "kmsKey": "arn:aws:kms:us-east-1:1:key/x"}},
     "InvalidParameterException"),
    ({"tags": [{"Key": f"k{i}", "Value": "v"} for i in range(51)]}, "TooManyTagsException"),
    ({"tags": [{"Key": "k" * 129, "Value": "v"}]}, "InvalidTagParameterException"),
    ({"tags": [{"Key": "k", "Value": "v" * 257}]}, "InvalidTagParameterException"),
    ({"tags": [{"Key": "", "Value": "v"}]}, "InvalidTagParameterException"),
    ({"tags": [{"Key": "aws:reserved", "Value": "v"}]}, "InvalidTagParameterException"),
    ({"tags": [{"Key": "semi;colon", "Value": "v"}]}, "InvalidTagParameterException"),
])
def test_create_repository_errors(ecr: BaseClient, kwargs: dict[str, Any], exc: str) -> None:
    kwargs = {"repositoryName": "create/refused", **kwargs}
    raises(ecr, exc, ecr.create_repository, **kwargs)
    if kwargs["repositoryName"] == "create/refused":  # nothing was created
        raises(ecr, "RepositoryNotFoundException", ecr.describe_repositories, repositoryNames=["create/refused"])


def test_create_repository_tag_limits_are_inclusive(ecr: BaseClient) -> None:
    tags = [{"Key": f"k{i:02d}" + "x" * 125, "Value": "v" * 256} for i in range(50)]
    ecr.create_repository(repositoryName="create/fifty-tags", tags=tags)
    assert len(ecr.list_tags_for_resource(resourceArn=arn("create/fifty-tags"))["tags"]) == 50


# DescribeRepositories

def test_describe_named_repositories(ecr: BaseClient) -> None:
    for name in ("describe/b", "describe/a"):
        ecr.create_repository(repositoryName=name)
    out = ecr.describe_repositories(repositoryNames=["describe/b", "describe/a"])
    assert set(out) == {"repositories", "ResponseMetadata"}  # no nextToken
    assert [r["repositoryName"] for r in out["repositories"]] == ["describe/b", "describe/a"]
    for repo in out["repositories"]:
        expect_repo(repo, repo["repositoryName"])
    msg = raises(ecr, "RepositoryNotFoundException", ecr.describe_repositories,
                 repositoryNames=["describe/a", "describe/missing"])
    assert msg == f"The repository with name 'describe/missing' does not exist in the registry with id '{ACCOUNT}'"
    raises(ecr, "InvalidParameterException", ecr.describe_repositories, repositoryNames=["describe/a"],
           maxResults=5)
    token = ecr.describe_repositories(maxResults=1)["nextToken"]
    raises(ecr, "InvalidParameterException", ecr.describe_repositories, repositoryNames=["describe/a"],
           nextToken=token)
    raises(ecr, "InvalidParameterException", ecr.describe_repositories, repositoryNames=[])
    raises(ecr, "InvalidParameterException", ecr.describe_repositories,
           repositoryNames=[f"describe/n{i}" for i in range(101)])


@pytest.mark.parametrize("kwargs", [{"maxResults": 0}, {"maxResults": 1001}, {"nextToken": "not-a-token"},
                                    {"nextToken": base64.urlsafe_b64encode(b'{"after": 1}').decode()},
                                    # well-formed, but a NUL no name can hold (PostgreSQL text cannot)
                                    {"nextToken": base64.urlsafe_b64encode(
                                        b'{"op":"DescribeRepositories","after":["a\\u0000b"]}').decode()}])
def test_describe_repositories_bad_paging(ecr: BaseClient, kwargs: dict[str, Any]) -> None:
    raises(ecr, "InvalidParameterException", ecr.describe_repositories, **kwargs)


def test_describe_repositories_pagination(ecr: BaseClient) -> None:
    names = [f"page/repo-{i:02d}" for i in range(25)]
    for name in reversed(names):
        ecr.create_repository(repositoryName=name)
    everything = ecr.describe_repositories(maxResults=1000)
    assert "nextToken" not in everything
    all_names = [r["repositoryName"] for r in everything["repositories"]]
    assert all_names == sorted(all_names) and set(names) <= set(all_names)

    pages = list(ecr.get_paginator("describe_repositories").paginate(PaginationConfig={"PageSize": 10}))
    sizes = [len(p["repositories"]) for p in pages]
    assert all(s == 10 for s in sizes[:-1]) and 1 <= sizes[-1] <= 10
    assert len(pages) == -(-len(all_names) // 10)
    assert all("nextToken" in p for p in pages[:-1]) and "nextToken" not in pages[-1]
    assert [r["repositoryName"] for p in pages for r in p["repositories"]] == all_names

    # by hand: the first 10 after a token, and the default page of at most 100
    first = ecr.describe_repositories(maxResults=10)
    second = ecr.describe_repositories(maxResults=10, nextToken=first["nextToken"])
    assert [r["repositoryName"] for r in first["repositories"] + second["repositories"]] == all_names[:20]
    default = ecr.describe_repositories()
    assert [r["repositoryName"] for r in default["repositories"]] == all_names[:100]
    assert ("nextToken" in default) == (len(all_names) > 100)
    built = ecr.get_paginator("describe_repositories").paginate(PaginationConfig={"PageSize": 7}).build_full_result()
    assert [r["repositoryName"] for r in built["repositories"]] == all_names


def test_aws_cli_describe_repositories(server: BerthServer, ecr: BaseClient, tmp_path: Path) -> None:
    names = [f"cli/repo-{i:02d}" for i in range(12)]
    for name in names:
        ecr.create_repository(repositoryName=name)
    expected = [r["repositoryName"]
                for r in ecr.describe_repositories(maxResults=1000)["repositories"]]
    out = json.loads(aws_cli(server.url, KEY, SECRET, tmp_path, "ecr", "describe-repositories", "--page-size", "5"))
    assert set(out) == {"repositories"}  # the CLI followed every nextToken
    assert [r["repositoryName"] for r in out["repositories"]] == expected
    repo = next(r for r in out["repositories"] if r["repositoryName"] == "cli/repo-03")
    assert isinstance(repo.pop("createdAt"), float | int)  # epoch seconds on the wire
    assert repo == {"repositoryArn": arn("cli/repo-03"), "registryId": ACCOUNT, "repositoryName": "cli/repo-03",
                    "repositoryUri": f"127.0.0.1:{server.port}/cli/repo-03",
                    "imageTagMutability": "MUTABLE", "imageScanningConfiguration": {"scanOnPush": False},
                    "encryptionConfiguration": {"encryptionType": "AES256"}}


# DeleteRepository

def test_delete_empty_repository(ecr: BaseClient) -> None:
    created = ecr.create_repository(repositoryName="delete/empty", imageTagMutability="IMMUTABLE")["repository"]
    deleted = ecr.delete_repository(repositoryName="delete/empty")["repository"]
    assert deleted == created
    msg = raises(ecr, "RepositoryNotFoundException", ecr.delete_repository, repositoryName="delete/empty")
    assert msg == f"The repository with name 'delete/empty' does not exist in the registry with id '{ACCOUNT}'"
    raises(ecr, "RepositoryNotFoundException", ecr.describe_repositories, repositoryNames=["delete/empty"])


def test_delete_repository_with_images(ecr: BaseClient, registry: Registry) -> None:
    name = "delete/full"
    ecr.create_repository(repositoryName=name, tags=[{"Key": "team", "Value": "a"}])
    ecr.set_repository_policy(repositoryName=name, policyText=json.dumps({
        "Version": "2012-10-17", "Statement": [{"Sid": "pull", "Effect": "Allow", "Principal": "*",
                                                 "Action": ["ecr:BatchGetImage"]}]}))
    payload = os.urandom(512)
    r, digest = registry.push_image(name, "v1", payload)
    assert r.status_code == 201, r.text
    msg = raises(ecr, "RepositoryNotEmptyException", ecr.delete_repository, repositoryName=name)
    assert msg == (f"The repository with name '{name}' in registry with id '{ACCOUNT}' cannot be deleted because "
                   "it still contains images")
    raises(ecr, "RepositoryNotEmptyException", ecr.delete_repository, repositoryName=name, force=False)
    assert registry.manifest_digest(name, "v1") == digest  # nothing was deleted

    deleted = ecr.delete_repository(repositoryName=name, force=True)["repository"]
    expect_repo(deleted, name)
    r = registry.http.get(f"/v2/{name}/manifests/v1")
    assert r.status_code == 404 and oci_code(r) == ["NAME_UNKNOWN"]

    # a new repository of the same name starts empty: no images, tags, blob links, policy or resource tags
    ecr.create_repository(repositoryName=name)
    r = registry.http.get(f"/v2/{name}/manifests/v1")
    assert r.status_code == 404 and oci_code(r) == ["MANIFEST_UNKNOWN"]
    assert registry.http.get(f"/v2/{name}/manifests/{digest}").status_code == 404
    assert registry.http.head(f"/v2/{name}/blobs/{sha256(payload)}").status_code == 404
    assert registry.http.get(f"/v2/{name}/tags/list").json()["tags"] in ([], None)
    assert ecr.list_tags_for_resource(resourceArn=arn(name))["tags"] == []
    raises(ecr, "RepositoryPolicyNotFoundException", ecr.get_repository_policy, repositoryName=name)
    ecr.delete_repository(repositoryName=name)


# PutImageTagMutability, PutImageScanningConfiguration

def test_put_image_tag_mutability(ecr: BaseClient) -> None:
    name = "settings/mutability"
    ecr.create_repository(repositoryName=name)
    filters = [{"filterType": "WILDCARD", "filter": "latest*"}]
    out = ecr.put_image_tag_mutability(repositoryName=name, imageTagMutability="IMMUTABLE_WITH_EXCLUSION",
                                       imageTagMutabilityExclusionFilters=filters)
    out.pop("ResponseMetadata")
    assert out == {"registryId": ACCOUNT, "repositoryName": name, "imageTagMutability": "IMMUTABLE_WITH_EXCLUSION",
                   "imageTagMutabilityExclusionFilters": filters}
    expect_repo(ecr.describe_repositories(repositoryNames=[name])["repositories"][0], name,
                mutability="IMMUTABLE_WITH_EXCLUSION", filters=filters)

    out = ecr.put_image_tag_mutability(repositoryName=name, imageTagMutability="IMMUTABLE")
    out.pop("ResponseMetadata")
    assert out == {"registryId": ACCOUNT, "repositoryName": name, "imageTagMutability": "IMMUTABLE"}
    expect_repo(ecr.describe_repositories(repositoryNames=[name])["repositories"][0], name, mutability="IMMUTABLE")

    for mode, given in [("MUTABLE_WITH_EXCLUSION", None), ("IMMUTABLE_WITH_EXCLUSION", None),
                        ("MUTABLE", filters), ("IMMUTABLE", filters)]:
        kwargs = {"imageTagMutabilityExclusionFilters": given} if given else {}
        raises(ecr, "InvalidParameterException", ecr.put_image_tag_mutability, repositoryName=name,
               imageTagMutability=mode, **kwargs)
    raises(ecr, "InvalidParameterException", ecr.put_image_tag_mutability, repositoryName=name,
           imageTagMutability="FROZEN")
    assert ecr.describe_repositories(repositoryNames=[name])["repositories"][0]["imageTagMutability"] == "IMMUTABLE"
    raises(ecr, "RepositoryNotFoundException", ecr.put_image_tag_mutability, repositoryName="settings/missing",
           imageTagMutability="MUTABLE")


def test_put_image_scanning_configuration(ecr: BaseClient) -> None:
    name = "settings/scanning"
    ecr.create_repository(repositoryName=name)
    for flag in (True, False):
        out = ecr.put_image_scanning_configuration(repositoryName=name,
                                                   imageScanningConfiguration={"scanOnPush": flag})
        out.pop("ResponseMetadata")
        assert out == {"registryId": ACCOUNT, "repositoryName": name,
                       "imageScanningConfiguration": {"scanOnPush": flag}}
        expect_repo(ecr.describe_repositories(repositoryNames=[name])["repositories"][0], name, scan=flag)
    out = ecr.put_image_scanning_configuration(repositoryName=name, imageScanningConfiguration={})
    assert out["imageScanningConfiguration"] == {"scanOnPush": False}
    raises(ecr, "RepositoryNotFoundException", ecr.put_image_scanning_configuration, repositoryName="settings/none",
           imageScanningConfiguration={"scanOnPush": True})


# TagResource, UntagResource, ListTagsForResource

def test_resource_tags(ecr: BaseClient) -> None:
    name = "tags/repo"
    ecr.create_repository(repositoryName=name, tags=[{"Key": "a", "Value": "1"}])
    resource = arn(name)
    out = ecr.tag_resource(resourceArn=resource, tags=[{"Key": "b", "Value": "2"}, {"Key": "a", "Value": "one"}])
    assert set(out) == {"ResponseMetadata"}
    assert ecr.list_tags_for_resource(resourceArn=resource)["tags"] == [{"Key": "a", "Value": "one"},
                                                                        {"Key": "b", "Value": "2"}]
    out = ecr.untag_resource(resourceArn=resource, tagKeys=["a", "not-there"])
    assert set(out) == {"ResponseMetadata"}
    listed = ecr.list_tags_for_resource(resourceArn=resource)
    assert set(listed) == {"tags", "ResponseMetadata"} and listed["tags"] == [{"Key": "b", "Value": "2"}]

    # 50 tags at most, counted after the merge; overwriting existing keys stays within the limit
    ecr.tag_resource(resourceArn=resource, tags=[{"Key": f"k{i}", "Value": "v"} for i in range(49)])
    ecr.tag_resource(resourceArn=resource, tags=[{"Key": "b", "Value": "two"}, {"Key": "k0", "Value": "w"}])
    raises(ecr, "TooManyTagsException", ecr.tag_resource, resourceArn=resource, tags=[{"Key": "extra", "Value": ""}])
    raises(ecr, "TooManyTagsException", ecr.tag_resource, resourceArn=resource,
           tags=[{"Key": f"n{i}", "Value": "v"} for i in range(51)])
    tags = ecr.list_tags_for_resource(resourceArn=resource)["tags"]
    assert len(tags) == 50 and {"Key": "b", "Value": "two"} in tags and {"Key": "extra", "Value": ""} not in tags

    for bad in ([{"Key": "x" * 129, "Value": ""}], [{"Key": "k", "Value": "x" * 257}], [{"Key": "aws:k", "Value": ""}]):
        raises(ecr, "InvalidTagParameterException", ecr.tag_resource, resourceArn=resource, tags=bad)
    raises(ecr, "InvalidTagParameterException", ecr.untag_resource, resourceArn=resource, tagKeys=["x" * 129])

    missing = arn("tags/missing")
    for call, kwargs in [(ecr.tag_resource, {"tags": [{"Key": "a", "Value": "b"}]}),
                         (ecr.untag_resource, {"tagKeys": ["a"]}), (ecr.list_tags_for_resource, {})]:
        msg = raises(ecr, "RepositoryNotFoundException", call, resourceArn=missing, **kwargs)
        assert "tags/missing" in msg
        for bad_arn in ["not-an-arn", f"arn:aws:s3:::{name}", f"arn:aws:ecr:{REGION}:{ACCOUNT}:registry/{name}",
                        arn(name, region="eu-west-1"), arn("Bad_Name"), f"arn:aws:ecr:{REGION}:{ACCOUNT}:repository/"]:
            raises(ecr, "InvalidParameterException", call, resourceArn=bad_arn, **kwargs)


# Tag mutability on OCI pushes

def test_immutable_tags_on_push(ecr: BaseClient, registry: Registry) -> None:
    name = "push/immutable"
    ecr.create_repository(repositoryName=name, imageTagMutability="IMMUTABLE")
    r, first = registry.push_image(name, "v1", b"first")
    assert r.status_code == 201, r.text
    r, _ = registry.push_image(name, "v1", b"second")
    assert r.status_code == 400 and oci_code(r) == ["TAG_INVALID"], r.text
    assert registry.manifest_digest(name, "v1") == first
    r, again = registry.push_image(name, "v1", b"first")  # the same manifest under the same tag is no move
    assert r.status_code == 201 and again == first

    ecr.put_image_tag_mutability(repositoryName=name, imageTagMutability="MUTABLE")
    r, second = registry.push_image(name, "v1", b"second")
    assert r.status_code == 201, r.text
    assert registry.manifest_digest(name, "v1") == second


def test_immutable_with_exclusion_on_push(ecr: BaseClient, registry: Registry) -> None:
    name = "push/excluded"
    ecr.create_repository(repositoryName=name, imageTagMutability="IMMUTABLE_WITH_EXCLUSION",
                          imageTagMutabilityExclusionFilters=[{"filterType": "WILDCARD", "filter": "latest*"}])
    for tag in ("latest", "latest-dev"):
        for payload in (b"one", b"two"):
            r, digest = registry.push_image(name, tag, payload + tag.encode())
            assert r.status_code == 201, r.text
            assert registry.manifest_digest(name, tag) == digest
    r, pinned = registry.push_image(name, "v1", b"pinned")
    assert r.status_code == 201
    r, _ = registry.push_image(name, "v1", b"moved")
    assert r.status_code == 400 and oci_code(r) == ["TAG_INVALID"]
    assert registry.manifest_digest(name, "v1") == pinned

    ecr.put_image_tag_mutability(repositoryName=name, imageTagMutability="MUTABLE_WITH_EXCLUSION",
                                 imageTagMutabilityExclusionFilters=[{"filterType": "WILDCARD", "filter": "v*"}])
    r, _ = registry.push_image(name, "v1", b"moved")
    assert r.status_code == 400 and oci_code(r) == ["TAG_INVALID"]
    r, _ = registry.push_image(name, "latest", b"three")
    assert r.status_code == 201


# Cross-account: registryId selects the registry, the authorizer decides

def test_registry_id_selects_the_account(server: BerthServer, ecr: BaseClient) -> None:
    # a second account with its administrator, in the server's store (what `berth admin create-account` does)
    settings = Settings(data_dir=server.data_dir, database_url=server.database_url,
                        master_key_file=server.extra_env.get("BERTH_MASTER_KEY_FILE", ""))  # the server's key
    assert asyncio.run(bootstrap_account(settings, OTHER_ACCOUNT, OTHER_KEY, OTHER_SECRET)) is not None
    other = client(server, OTHER_KEY, OTHER_SECRET)

    for call, kwargs in [(ecr.create_repository, {"repositoryName": "shared/app"}),
                         (ecr.describe_repositories, {}),
                         (ecr.put_image_scanning_configuration,
                          {"repositoryName": "shared/app", "imageScanningConfiguration": {"scanOnPush": True}})]:
        raises(ecr, "AccessDeniedException", call, registryId=OTHER_ACCOUNT, **kwargs)
    other.put_registry_policy(policyText=json.dumps({
        "Version": "2012-10-17",
        "Statement": [{"Sid": "admin", "Effect": "Allow", "Principal": {"AWS": f"arn:aws:iam::{ACCOUNT}:root"},
                       "Action": ["ecr:CreateRepository", "ecr:DescribeRepositories", "ecr:DeleteRepository",
                                  "ecr:PutImageScanningConfiguration"],
                       "Resource": f"arn:aws:ecr:{REGION}:{OTHER_ACCOUNT}:repository/*"}]}))
    if server.database_url:  # authorization decisions are cached for up to a second on PostgreSQL
        time.sleep(1.1)

    created = ecr.create_repository(registryId=OTHER_ACCOUNT, repositoryName="shared/app")["repository"]
    expect_repo(created, "shared/app", account=OTHER_ACCOUNT)
    assert other.describe_repositories(repositoryNames=["shared/app"])["repositories"] == [created]
    assert [r["repositoryName"] for r in other.describe_repositories()["repositories"]] == ["shared/app"]
    assert "shared/app" not in [r["repositoryName"]
                                for r in ecr.describe_repositories(maxResults=1000)["repositories"]]
    raises(ecr, "RepositoryNotFoundException", ecr.describe_repositories, repositoryNames=["shared/app"])
    scanned = ecr.put_image_scanning_configuration(registryId=OTHER_ACCOUNT, repositoryName="shared/app",
                                                   imageScanningConfiguration={"scanOnPush": True})
    assert scanned["registryId"] == OTHER_ACCOUNT
    # a repository ARN names its account: the other account's repository is tagged by its owner
    other.tag_resource(resourceArn=arn("shared/app", OTHER_ACCOUNT), tags=[{"Key": "owner", "Value": "other"}])
    raises(ecr, "AccessDeniedException", ecr.list_tags_for_resource, resourceArn=arn("shared/app", OTHER_ACCOUNT))
    deleted = ecr.delete_repository(registryId=OTHER_ACCOUNT, repositoryName="shared/app")["repository"]
    expect_repo(deleted, "shared/app", account=OTHER_ACCOUNT, scan=True)
    assert other.describe_repositories()["repositories"] == []

    # REGISTRY_POLICY_SCOPE V1: the registry policy governs only CreateRepository (and replication, PTC)
    other.put_account_setting(name="REGISTRY_POLICY_SCOPE", value="V1")
    if server.database_url:
        time.sleep(1.1)
    raises(ecr, "AccessDeniedException", ecr.describe_repositories, registryId=OTHER_ACCOUNT)
    v1 = ecr.create_repository(registryId=OTHER_ACCOUNT, repositoryName="shared/v1")["repository"]
    assert v1["registryId"] == OTHER_ACCOUNT
    other.put_account_setting(name="REGISTRY_POLICY_SCOPE", value="V2")
    if server.database_url:
        time.sleep(1.1)
    assert [r["repositoryName"] for r in ecr.describe_repositories(registryId=OTHER_ACCOUNT)["repositories"]] \
        == ["shared/v1"]
