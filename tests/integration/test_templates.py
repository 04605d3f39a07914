"""Repository creation templates through boto3 against a real `berth serve`, on SQLite and PostgreSQL: the
four operations with ECR's shapes and errors, and CREATE_ON_PUSH applying the longest matching prefix (tag
mutability, resource tags, repository policy, encryption) to a repository a /v2 push creates."""

from __future__ import annotations

import json
from collections.abc import Iterator

import pytest
from botocore.client import BaseClient

from tests.support import aws
from tests.support.oci import OciClient, random_image
from tests.support.servers import BerthServer

pytestmark = pytest.mark.integration

POLICY = json.dumps({"Version": "2012-10-17", "Statement": [
    {"Sid": "pull", "Effect": "Allow", "Principal": "*", "Action": ["ecr:BatchGetImage"]}]})
LIFECYCLE = json.dumps({"rules": [{"rulePriority": 1, "selection": {"tagStatus": "untagged", "countType":
                                   "sinceImagePushed", "countUnit": "days", "countNumber": 14},
                                   "action": {"type": "expire"}}]})


@pytest.fixture(scope="module", params=["sqlite", "postgres"])
def server(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[BerthServer]:
    url = request.getfixturevalue("postgres").new_database() if request.param == "postgres" else ""
    srv = BerthServer(tmp_path_factory.mktemp("templates") / "data", database_url=url,
                      env={"BERTH_CREATE_ON_PUSH": "0"}).start()
    try:
        yield srv
    finally:
        srv.stop()


@pytest.fixture
def ecr(server: BerthServer) -> Iterator[BaseClient]:
    c = aws.client("ecr", server.url, "AKIDTEMPLATES", "templates-secret")
    yield c
    for t in c.describe_repository_creation_templates()["repositoryCreationTemplates"]:
        c.delete_repository_creation_template(prefix=t["prefix"])


def test_template_operations(ecr: BaseClient) -> None:
    out = aws.call(ecr, "CreateRepositoryCreationTemplate", {
        "prefix": "prod/", "description": "production", "appliedFor": ["CREATE_ON_PUSH", "REPLICATION"],
        "imageTagMutability": "IMMUTABLE_WITH_EXCLUSION",
        "imageTagMutabilityExclusionFilters": [{"filterType": "WILDCARD", "filter": "latest"}],
        "encryptionConfiguration": {"encryptionType": "KMS",
                                    "kmsKey": "arn:aws:kms:us-east-1:123456789012:key/abcd"},
        "resourceTags": [{"Key": "team", "Value": "core"}], "repositoryPolicy": POLICY,
        "lifecyclePolicy": LIFECYCLE, "customRoleArn": "arn:aws:iam::123456789012:role/ecr-templates"})
    assert out.error is None, out
    t = out.output["repositoryCreationTemplate"]
    assert out.output["registryId"] == "123456789012"
    assert t["prefix"] == "prod" and t["appliedFor"] == ["CREATE_ON_PUSH", "REPLICATION"]
    assert t["imageTagMutabilityExclusionFilters"] == [{"filterType": "WILDCARD", "filter": "latest"}]
    assert t["encryptionConfiguration"]["encryptionType"] == "KMS"
    assert t["repositoryPolicy"] == POLICY and t["lifecyclePolicy"] == LIFECYCLE
    assert t["resourceTags"] == [{"Key": "team", "Value": "core"}]

    again = aws.call(ecr, "CreateRepositoryCreationTemplate", {"prefix": "prod", "appliedFor": ["REPLICATION"]})
    assert again.code == "TemplateAlreadyExistsException"
    assert aws.call(ecr, "CreateRepositoryCreationTemplate", {"prefix": "ROOT", "appliedFor": ["PULL_THROUGH_CACHE"]}
                    ).error is None

    listed = ecr.describe_repository_creation_templates()["repositoryCreationTemplates"]
    assert [x["prefix"] for x in listed] == ["ROOT", "prod"]
    one = ecr.describe_repository_creation_templates(prefixes=["prod"])["repositoryCreationTemplates"]
    assert [x["description"] for x in one] == ["production"]
    page = ecr.describe_repository_creation_templates(maxResults=1)
    assert len(page["repositoryCreationTemplates"]) == 1 and "nextToken" in page
    rest = ecr.describe_repository_creation_templates(maxResults=1, nextToken=page["nextToken"])
    assert [x["prefix"] for x in rest["repositoryCreationTemplates"]] == ["prod"] and "nextToken" not in rest

    upd = ecr.update_repository_creation_template(prefix="prod", description="changed", imageTagMutability="MUTABLE")
    t = upd["repositoryCreationTemplate"]
    assert t["description"] == "changed" and t["imageTagMutability"] == "MUTABLE"
    assert t["repositoryPolicy"] == POLICY and t["updatedAt"] >= t["createdAt"]

    gone = ecr.delete_repository_creation_template(prefix="prod")
    assert gone["repositoryCreationTemplate"]["prefix"] == "prod"
    assert aws.call(ecr, "DeleteRepositoryCreationTemplate", {"prefix": "prod"}).code == "TemplateNotFoundException"
    assert aws.call(ecr, "UpdateRepositoryCreationTemplate", {"prefix": "nope", "description": "x"}).code \
        == "TemplateNotFoundException"


@pytest.mark.parametrize("params", [
    {"prefix": "bad", "appliedFor": ["SOMETHING"]},
    {"prefix": "bad", "appliedFor": []},
    {"prefix": "bad", "appliedFor": ["REPLICATION"], "repositoryPolicy": "{not json"},
    {"prefix": "bad", "appliedFor": ["REPLICATION"], "lifecyclePolicy": "[]"},
    {"prefix": "bad", "appliedFor": ["REPLICATION"], "lifecyclePolicy": json.dumps({"rules": [{  # no countNumber
        "rulePriority": 1, "selection": {"tagStatus": "any", "countType": "imageCountMoreThan"},
        "action": {"type": "expire"}}]})},
    {"prefix": "bad", "appliedFor": ["REPLICATION"], "imageTagMutability": "IMMUTABLE_WITH_EXCLUSION"},
    {"prefix": "bad", "appliedFor": ["REPLICATION"], "resourceTags": [{"Key": "aws:x", "Value": "v"}]},
    {"prefix": "Bad/Upper", "appliedFor": ["REPLICATION"]},
    {"prefix": "bad", "appliedFor": ["REPLICATION"], "customRoleArn": "not-an-arn"},
])
def test_invalid_templates_are_refused(ecr: BaseClient, params: dict) -> None:
    out = aws.call(ecr, "CreateRepositoryCreationTemplate", params)
    assert out.code in ("InvalidParameterException", "InvalidTagParameterException"), out
    assert ecr.describe_repository_creation_templates()["repositoryCreationTemplates"] == []


def test_create_on_push_takes_the_longest_prefix(ecr: BaseClient, server: BerthServer) -> None:
    ecr.create_repository_creation_template(prefix="ROOT", appliedFor=["CREATE_ON_PUSH"],
                                            resourceTags=[{"Key": "level", "Value": "root"}])
    ecr.create_repository_creation_template(prefix="team", appliedFor=["CREATE_ON_PUSH"],
                                            imageTagMutability="IMMUTABLE", repositoryPolicy=POLICY,
                                            lifecyclePolicy=LIFECYCLE,
                                            resourceTags=[{"Key": "level", "Value": "team"}])
    ecr.create_repository_creation_template(prefix="team/sub", appliedFor=["CREATE_ON_PUSH"],
                                            encryptionConfiguration={"encryptionType": "KMS_DSSE"},
                                            resourceTags=[{"Key": "level", "Value": "sub"}])
    ecr.create_repository_creation_template(prefix="replicated", appliedFor=["REPLICATION"])
    with OciClient(server.url) as oci:
        for name in ("team/sub/app", "team/app", "elsewhere/app"):
            r = oci.push_image(name, random_image(), "v1")
            assert r.status_code == 201, (name, r.text)
    repos = {r["repositoryName"]: r for r in ecr.describe_repositories(
        repositoryNames=["team/sub/app", "team/app", "elsewhere/app"])["repositories"]}
    levels = {n: ecr.list_tags_for_resource(resourceArn=r["repositoryArn"])["tags"] for n, r in repos.items()}
    assert levels == {"team/sub/app": [{"Key": "level", "Value": "sub"}],
                      "team/app": [{"Key": "level", "Value": "team"}],
                      "elsewhere/app": [{"Key": "level", "Value": "root"}]}
    assert repos["team/app"]["imageTagMutability"] == "IMMUTABLE"
    assert repos["team/sub/app"]["encryptionConfiguration"]["encryptionType"] == "KMS_DSSE"
    assert json.loads(ecr.get_repository_policy(repositoryName="team/app")["policyText"]) == json.loads(POLICY)
    assert aws.call(ecr, "GetRepositoryPolicy", {"repositoryName": "elsewhere/app"}).code \
        == "RepositoryPolicyNotFoundException"
    assert json.loads(ecr.get_lifecycle_policy(repositoryName="team/app")["lifecyclePolicyText"]) \
        == json.loads(LIFECYCLE)  # the template's lifecycle policy came with it
    assert aws.call(ecr, "GetLifecyclePolicy", {"repositoryName": "elsewhere/app"}).code \
        == "LifecyclePolicyNotFoundException"
    with OciClient(server.url) as oci:  # the template's immutability holds on the new repository
        img = random_image()
        for blob in img.blobs:
            assert oci.push_blob("team/app", blob).status_code == 201
        assert oci.put_manifest("team/app", "v1", img.body).status_code == 400


def test_no_create_on_push_template_no_repository(ecr: BaseClient, server: BerthServer) -> None:
    ecr.create_repository_creation_template(prefix="only", appliedFor=["CREATE_ON_PUSH"])
    ecr.create_repository_creation_template(prefix="ROOT", appliedFor=["REPLICATION", "PULL_THROUGH_CACHE"])
    with OciClient(server.url) as oci:
        r = oci.push_blob("missing/app", b"some bytes")
        assert r.status_code == 404 and "NAME_UNKNOWN" in r.text
        assert oci.push_image("only/app", random_image(), "v1").status_code == 201
    assert aws.call(ecr, "DescribeRepositories", {"repositoryNames": ["missing/app"]}).code \
        == "RepositoryNotFoundException"


def test_the_environment_switch_is_a_root_template(tmp_path) -> None:
    srv = BerthServer(tmp_path / "data", env={"BERTH_CREATE_ON_PUSH": "1"}).start()
    try:
        ecr = aws.client("ecr", srv.url, "AKIDTEMPLATES", "templates-secret")
        ecr.create_repository_creation_template(prefix="locked", appliedFor=["CREATE_ON_PUSH"],
                                                imageTagMutability="IMMUTABLE")
        with OciClient(srv.url) as oci:
            assert oci.push_image("anything/app", random_image(), "v1").status_code == 201
            assert oci.push_image("locked/app", random_image(), "v1").status_code == 201
        got = {r["repositoryName"]: r["imageTagMutability"] for r in ecr.describe_repositories()["repositories"]}
        assert got == {"anything/app": "MUTABLE", "locked/app": "IMMUTABLE"}
    finally:
        srv.stop()
