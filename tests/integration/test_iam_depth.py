"""IAM depth through boto3 and the real aws CLI against a real `berth serve --auth iam` (SQLite and
PostgreSQL): the AWS managed ECR policies, customer managed policies with versions, attachments,
groups (a user's permissions are its own, its groups' and its attached policies'), roles with
trust policies, STS AssumeRole and GetSessionToken, and temporary credentials on both faces.
"""

from __future__ import annotations

import base64
import json
import os
import subprocess
import time
from collections.abc import Callable, Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
from botocore.client import BaseClient
from botocore.exceptions import ClientError

from berth.iam.managed import AWS_MANAGED
from tests.support.aws import AWS_CLI, IAM_ADMIN_KEY, IAM_ADMIN_SECRET, basic, call, client, registry_token
from tests.support.aws import session_client as aws_session_client
from tests.support.images import build_umoci_image
from tests.support.oci import OciClient, random_image
from tests.support.servers import BerthServer, require_tool

pytestmark = pytest.mark.integration

A, REGION = "123456789012", "us-east-1"
KEY, SECRET = IAM_ADMIN_KEY, IAM_ADMIN_SECRET  # the identity suites' shared server (conftest.py: identity_server)
READ_ONLY = "arn:aws:iam::aws:policy/AmazonEC2ContainerRegistryReadOnly"
POWER_USER = "arn:aws:iam::aws:policy/AmazonEC2ContainerRegistryPowerUser"
FULL = "arn:aws:iam::aws:policy/AmazonEC2ContainerRegistryFullAccess"
PULL_ONLY = "arn:aws:iam::aws:policy/AmazonEC2ContainerRegistryPullOnly"
PTC_ROLE = "arn:aws:iam::aws:policy/aws-service-role/AWSECRPullThroughCache_ServiceRolePolicy"
FAKETIME_LIB = Path("/usr/lib/x86_64-linux-gnu/faketime/libfaketime.so.1")


def doc(*statements: dict[str, Any]) -> str:
    return json.dumps({"Version": "2012-10-17", "Statement": list(statements)})


def allow(action: str | list[str], resource: str = "*") -> dict[str, Any]:
    return {"Effect": "Allow", "Action": action, "Resource": resource}


def deny(action: str | list[str], resource: str = "*") -> dict[str, Any]:
    return {"Effect": "Deny", "Action": action, "Resource": resource}


@pytest.fixture(scope="module")
def server(identity_server: BerthServer) -> BerthServer:
    return identity_server  # `berth serve --auth iam`, SQLite and PostgreSQL, shared with the other identity suites


def settled(server: BerthServer, probe: Callable[[], Any], expected: Any) -> Any:
    deadline = time.monotonic() + server.settle  # type: ignore[attr-defined]
    while (got := probe()) != expected and time.monotonic() < deadline:
        time.sleep(0.1)
    return got


@pytest.fixture(scope="module")
def iam(server: BerthServer) -> BaseClient:
    return client("iam", server.url, KEY, SECRET)


@pytest.fixture(scope="module")
def ecr(server: BerthServer) -> BaseClient:
    return client("ecr", server.url, KEY, SECRET)


@pytest.fixture(scope="module")
def admin_oci(server: BerthServer, ecr: BaseClient) -> Iterator[OciClient]:
    with OciClient(server.url) as oci:
        oci.http.headers["Authorization"] = basic(registry_token(ecr))
        yield oci


def session_client(server: BerthServer, service: str, creds: dict[str, Any]) -> BaseClient:
    return aws_session_client(service, server.url, creds)


def cli(server: BerthServer, tmp: Path, *args: str, key: str = KEY, secret: str = SECRET,
        token: str | None = None) -> Any:
    env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
    env.update(AWS_ACCESS_KEY_ID=key, AWS_SECRET_ACCESS_KEY=secret, AWS_DEFAULT_REGION=REGION,
               AWS_CONFIG_FILE=str(tmp / "no-config"), AWS_SHARED_CREDENTIALS_FILE=str(tmp / "no-creds"))
    if token:
        env["AWS_SESSION_TOKEN"] = token
    done = subprocess.run([str(AWS_CLI), "--endpoint-url", server.url, "--output", "json", *args], env=env,
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, (args, done.stderr)
    return json.loads(done.stdout) if done.stdout.strip() else None


def code(fn: Callable[..., Any], **kwargs: Any) -> str:
    try:
        fn(**kwargs)
    except ClientError as e:
        return str(e.response["Error"]["Code"])
    return "success"


def user_with_key(iam: BaseClient, name: str, path: str = "/") -> tuple[str, str]:
    iam.create_user(UserName=name, Path=path)
    key = iam.create_access_key(UserName=name)["AccessKey"]
    return key["AccessKeyId"], key["SecretAccessKey"]


def pull_status(server: BerthServer, token: str, name: str, ref: str = "v1") -> int:
    return httpx.get(f"{server.url}/v2/{name}/manifests/{ref}", headers={
        "Authorization": basic(token), "Accept": "application/vnd.oci.image.manifest.v1+json"}).status_code


# --- managed policies ------------------------------------------------------------------------------


def test_aws_managed_ecr_policies_with_their_real_arns_and_documents(iam: BaseClient) -> None:
    for arn in (READ_ONLY, POWER_USER, FULL, PULL_ONLY):
        policy = iam.get_policy(PolicyArn=arn)["Policy"]
        assert policy["Arn"] == arn and policy["PolicyName"] == arn.rsplit("/", 1)[1] and policy["IsAttachable"]
        version = iam.get_policy_version(PolicyArn=arn, VersionId=policy["DefaultVersionId"])["PolicyVersion"]
        assert version["IsDefaultVersion"] and version["Document"] == json.loads(AWS_MANAGED[arn].document)
    read = iam.get_policy_version(PolicyArn=READ_ONLY, VersionId="v3")["PolicyVersion"]["Document"]
    assert read["Statement"][0]["Action"][:3] == ["ecr:GetAuthorizationToken", "ecr:BatchCheckLayerAvailability",
                                                  "ecr:GetDownloadUrlForLayer"]
    listed = {p["Arn"] for p in iam.list_policies(Scope="AWS")["Policies"]}
    assert {READ_ONLY, POWER_USER, FULL, PULL_ONLY} <= listed
    assert code(iam.delete_policy, PolicyArn=READ_ONLY) == "InvalidInput"
    assert code(iam.create_policy_version, PolicyArn=READ_ONLY, PolicyDocument=doc(allow("*"))) == "InvalidInput"
    assert code(iam.get_policy, PolicyArn="arn:aws:iam::aws:policy/NoSuchPolicy") == "NoSuchEntity"
    # the pull-through cache's service-role policy: listed and readable, attachable to no user, group or role
    policy = iam.get_policy(PolicyArn=PTC_ROLE)["Policy"]
    assert (policy["Path"], policy["DefaultVersionId"], policy["IsAttachable"]) == ("/aws-service-role/", "v4", False)
    document = iam.get_policy_version(PolicyArn=PTC_ROLE, VersionId="v4")["PolicyVersion"]["Document"]
    assert document["Statement"][1]["Resource"] == "arn:aws:secretsmanager:*:*:secret:ecr-pullthroughcache/*"
    assert PTC_ROLE in listed
    iam.create_user(UserName="service-role-attacher")
    assert code(iam.attach_user_policy, UserName="service-role-attacher", PolicyArn=PTC_ROLE) == "PolicyNotAttachable"
    assert iam.list_attached_user_policies(UserName="service-role-attacher")["AttachedPolicies"] == []
    iam.delete_user(UserName="service-role-attacher")


def test_customer_managed_policy_versions(iam: BaseClient, tmp_path: Path, server: BerthServer) -> None:
    created = cli(server, tmp_path, "iam", "create-policy", "--policy-name", "team-pull", "--path", "/teams/",
                  "--policy-document", doc(allow("ecr:BatchGetImage")), "--description", "pulls")["Policy"]
    arn = created["Arn"]
    assert arn == f"arn:aws:iam::{A}:policy/teams/team-pull" and created["DefaultVersionId"] == "v1"
    assert code(iam.create_policy, PolicyName="team-pull", PolicyDocument=doc(allow("*"))) == "EntityAlreadyExists"
    assert code(iam.create_policy, PolicyName="bad", PolicyDocument='{"Version": "2012-10-17"}') \
        == "MalformedPolicyDocument"
    v2 = iam.create_policy_version(PolicyArn=arn, PolicyDocument=doc(allow(["ecr:BatchGetImage", "ecr:ListImages"])))
    assert v2["PolicyVersion"]["VersionId"] == "v2" and not v2["PolicyVersion"]["IsDefaultVersion"]
    assert iam.get_policy(PolicyArn=arn)["Policy"]["DefaultVersionId"] == "v1"
    iam.set_default_policy_version(PolicyArn=arn, VersionId="v2")
    assert iam.get_policy(PolicyArn=arn)["Policy"]["DefaultVersionId"] == "v2"
    got = iam.get_policy_version(PolicyArn=arn, VersionId="v2")["PolicyVersion"]
    assert got["IsDefaultVersion"] and got["Document"]["Statement"][0]["Action"][1] == "ecr:ListImages"
    assert code(iam.delete_policy_version, PolicyArn=arn, VersionId="v2") == "DeleteConflict"
    iam.delete_policy_version(PolicyArn=arn, VersionId="v1")
    assert code(iam.get_policy_version, PolicyArn=arn, VersionId="v1") == "NoSuchEntity"
    for _ in range(4):
        iam.create_policy_version(PolicyArn=arn, PolicyDocument=doc(allow("ecr:ListImages")), SetAsDefault=True)
    assert [v["VersionId"] for v in iam.list_policy_versions(PolicyArn=arn)["Versions"]] == \
        ["v6", "v5", "v4", "v3", "v2"]
    assert iam.get_policy(PolicyArn=arn)["Policy"]["DefaultVersionId"] == "v6"
    assert code(iam.create_policy_version, PolicyArn=arn, PolicyDocument=doc(allow("*"))) == "LimitExceeded"
    assert arn in {p["Arn"] for p in iam.list_policies(Scope="Local")["Policies"]}
    iam.create_user(UserName="versions-user")
    iam.attach_user_policy(UserName="versions-user", PolicyArn=arn)
    assert iam.get_policy(PolicyArn=arn)["Policy"]["AttachmentCount"] == 1
    assert arn in {p["Arn"] for p in iam.list_policies(Scope="Local", OnlyAttached=True)["Policies"]}
    assert code(iam.delete_policy, PolicyArn=arn) == "DeleteConflict"
    assert code(iam.delete_user, UserName="versions-user") == "DeleteConflict"
    iam.detach_user_policy(UserName="versions-user", PolicyArn=arn)
    assert code(iam.detach_user_policy, UserName="versions-user", PolicyArn=arn) == "NoSuchEntity"
    assert code(iam.delete_policy, PolicyArn=arn) == "DeleteConflict"  # versions besides the default remain
    for v in ("v2", "v3", "v4", "v5"):
        iam.delete_policy_version(PolicyArn=arn, VersionId=v)
    iam.delete_policy(PolicyArn=arn)
    assert code(iam.get_policy, PolicyArn=arn) == "NoSuchEntity"
    iam.delete_user(UserName="versions-user")


# --- groups and the union of a user's policies ----------------------------------------------------


BASIC = doc(allow(["ecr:GetAuthorizationToken", "ecr:BatchGetImage", "ecr:GetDownloadUrlForLayer",
                   "ecr:PutImage"]))  # the seed scenario's "basic IAM policy"


def test_a_group_member_pulls_with_skopeo_and_is_refused_a_layer_push(
        server: BerthServer, iam: BaseClient, ecr: BaseClient, tmp_path: Path) -> None:
    require_tool("skopeo", "umoci")
    build_umoci_image(tmp_path / "layout", tmp_path, "v1", [{"app/ci.txt": b"built in ci\n"}])
    subprocess.run(["skopeo", "copy", "--dest-tls-verify=false", "--dest-creds", f"AWS:{registry_token(ecr)}",
                    f"oci:{tmp_path / 'layout'}:v1", f"docker://{server.host}/depth/ci-app:v1"],
                   check=True, capture_output=True, timeout=120)
    arn = cli(server, tmp_path, "iam", "create-policy", "--policy-name", "basic", "--policy-document",
              BASIC)["Policy"]["Arn"]
    cli(server, tmp_path, "iam", "create-group", "--group-name", "ci", "--path", "/build/")
    cli(server, tmp_path, "iam", "attach-group-policy", "--group-name", "ci", "--policy-arn", arn)
    key, secret = user_with_key(iam, "ci-bot")
    user_ecr = client("ecr", server.url, key, secret)
    assert call(user_ecr, "GetAuthorizationToken", {}).code == "AccessDeniedException"  # no policy yet
    cli(server, tmp_path, "iam", "add-user-to-group", "--group-name", "ci", "--user-name", "ci-bot")
    group = iam.get_group(GroupName="ci")
    assert group["Group"]["Arn"] == f"arn:aws:iam::{A}:group/build/ci"
    assert [u["UserName"] for u in group["Users"]] == ["ci-bot"]
    assert [g["GroupName"] for g in iam.list_groups_for_user(UserName="ci-bot")["Groups"]] == ["ci"]
    assert iam.list_attached_group_policies(GroupName="ci")["AttachedPolicies"] == [
        {"PolicyName": "basic", "PolicyArn": arn}]
    token = settled(server, lambda: call(user_ecr, "GetAuthorizationToken", {}).code, "success") and \
        registry_token(user_ecr)
    pulled = subprocess.run(["skopeo", "copy", "--src-tls-verify=false", "--src-creds", f"AWS:{token}",
                             f"docker://{server.host}/depth/ci-app:v1", f"oci:{tmp_path / 'pulled'}:v1"],
                            capture_output=True, text=True, timeout=120)
    assert pulled.returncode == 0, pulled.stderr
    build_umoci_image(tmp_path / "layout", tmp_path, "v2", [{"app/new.txt": os.urandom(64).hex().encode()}])
    pushed = subprocess.run(["skopeo", "copy", "--dest-tls-verify=false", "--dest-creds", f"AWS:{token}",
                             f"oci:{tmp_path / 'layout'}:v2", f"docker://{server.host}/depth/ci-app:v2"],
                            capture_output=True, text=True, timeout=120)
    assert pushed.returncode != 0 and "403" in pushed.stderr, pushed.stderr
    r = httpx.post(f"{server.url}/v2/depth/ci-app/blobs/uploads/", headers={"Authorization": basic(token)})
    assert r.status_code == 403 and r.json()["errors"][0]["code"] == "DENIED"  # ecr:InitiateLayerUpload
    assert code(iam.delete_group, GroupName="ci") == "DeleteConflict"
    assert code(iam.delete_user, UserName="ci-bot") == "DeleteConflict"
    iam.remove_user_from_group(GroupName="ci", UserName="ci-bot")
    assert settled(server, lambda: pull_status(server, token, "depth/ci-app"), 403) == 403
    iam.detach_group_policy(GroupName="ci", PolicyArn=arn)
    iam.delete_group(GroupName="ci")
    assert code(iam.get_group, GroupName="ci") == "NoSuchEntity"


def test_a_users_permissions_are_the_union_of_its_own_its_groups_and_attached(
        server: BerthServer, iam: BaseClient, ecr: BaseClient, admin_oci: OciClient) -> None:
    admin_oci.push_image("depth/union", random_image(layers=1), "v1")
    key, secret = user_with_key(iam, "union-user", "/people/")
    user = client("ecr", server.url, key, secret)
    iam.put_user_policy(UserName="union-user", PolicyName="own", PolicyDocument=doc(allow("ecr:DescribeRegistry")))
    iam.attach_user_policy(UserName="union-user", PolicyArn=READ_ONLY)
    iam.create_group(GroupName="tag-editors")
    iam.put_group_policy(GroupName="tag-editors", PolicyName="tags", PolicyDocument=doc(allow("ecr:TagResource")))
    iam.attach_group_policy(GroupName="tag-editors", PolicyArn=POWER_USER)
    iam.add_user_to_group(GroupName="tag-editors", UserName="union-user")
    repo_arn = f"arn:aws:ecr:{REGION}:{A}:repository/depth/union"
    ids = [{"imageTag": "v1"}]

    def outcomes() -> tuple[str, ...]:
        return (call(user, "DescribeRegistry", {}).code,  # own inline
                call(user, "BatchGetImage", {"repositoryName": "depth/union", "imageIds": ids}).code,  # attached
                call(user, "TagResource", {"resourceArn": repo_arn, "tags": [{"Key": "a", "Value": "b"}]}).code,
                call(user, "InitiateLayerUpload", {"repositoryName": "depth/union"}).code,  # group attached
                call(user, "DeleteRepository", {"repositoryName": "depth/union"}).code)  # nobody's

    assert settled(server, outcomes, ("success",) * 4 + ("AccessDeniedException",)) == \
        ("success",) * 4 + ("AccessDeniedException",)
    assert {p["PolicyArn"] for p in iam.list_attached_user_policies(UserName="union-user")["AttachedPolicies"]} \
        == {READ_ONLY}
    assert iam.list_group_policies(GroupName="tag-editors")["PolicyNames"] == ["tags"]
    assert iam.get_group_policy(GroupName="tag-editors", PolicyName="tags")["PolicyDocument"]["Statement"][0][
        "Action"] == "ecr:TagResource"
    # a Deny in a group beats the user's own Allow
    iam.put_group_policy(GroupName="tag-editors", PolicyName="no-registry",
                         PolicyDocument=doc(deny("ecr:DescribeRegistry")))
    assert settled(server, lambda: call(user, "DescribeRegistry", {}).code, "AccessDeniedException") \
        == "AccessDeniedException"
    iam.delete_group_policy(GroupName="tag-editors", PolicyName="no-registry")
    iam.detach_user_policy(UserName="union-user", PolicyArn=READ_ONLY)
    iam.remove_user_from_group(GroupName="tag-editors", UserName="union-user")
    assert settled(server, lambda: call(user, "BatchGetImage", {"repositoryName": "depth/union",
                                                                 "imageIds": ids}).code,
                   "AccessDeniedException") == "AccessDeniedException"
    assert "tag-editors" in [g["GroupName"] for g in iam.list_groups()["Groups"]]


# --- roles and STS --------------------------------------------------------------------------------


def trust(principal: str, **condition: Any) -> str:
    statement: dict[str, Any] = {"Effect": "Allow", "Principal": {"AWS": principal}, "Action": "sts:AssumeRole"}
    if condition:
        statement["Condition"] = condition
    return doc(statement)


def test_roles_assume_role_and_temporary_credentials(
        server: BerthServer, iam: BaseClient, admin_oci: OciClient, ecr: BaseClient, tmp_path: Path) -> None:
    admin_oci.push_image("depth/deploy", random_image(layers=1), "v1")
    key, secret = user_with_key(iam, "deployer", "/ci/")
    deployer_arn = f"arn:aws:iam::{A}:user/ci/deployer"
    role = iam.create_role(RoleName="task-role", Path="/ecs/", Description="the ECS task role",
                           AssumeRolePolicyDocument=trust(deployer_arn, StringEquals={"sts:ExternalId": "ext-42"}),
                           MaxSessionDuration=7200)["Role"]
    role_arn = f"arn:aws:iam::{A}:role/ecs/task-role"
    assert role["Arn"] == role_arn and role["RoleId"].startswith("AROA") and role["MaxSessionDuration"] == 7200
    assert iam.get_role(RoleName="task-role")["Role"]["AssumeRolePolicyDocument"]["Statement"][0]["Principal"] == \
        {"AWS": deployer_arn}
    assert "task-role" in {r["RoleName"] for r in iam.list_roles()["Roles"]}
    iam.attach_role_policy(RoleName="task-role", PolicyArn=PULL_ONLY)
    iam.put_role_policy(RoleName="task-role", PolicyName="list", PolicyDocument=doc(allow("ecr:ListImages")))
    assert iam.list_role_policies(RoleName="task-role")["PolicyNames"] == ["list"]
    assert iam.list_attached_role_policies(RoleName="task-role")["AttachedPolicies"][0]["PolicyArn"] == PULL_ONLY
    sts = client("sts", server.url, key, secret)
    assert code(sts.assume_role, RoleArn=role_arn, RoleSessionName="run-1") == "AccessDenied"  # no ExternalId
    assert code(sts.assume_role, RoleArn=role_arn, RoleSessionName="run-1", ExternalId="wrong") == "AccessDenied"
    assert code(sts.assume_role, RoleArn=f"arn:aws:iam::{A}:role/task-role", RoleSessionName="run-1",
                ExternalId="ext-42") == "AccessDenied"  # the wrong path is another role
    assert code(sts.assume_role, RoleArn=role_arn, RoleSessionName="run-1", ExternalId="ext-42",
                DurationSeconds=7201) == "ValidationError"
    # the real CLI, as a CI job runs it
    out = cli(server, tmp_path, "sts", "assume-role", "--role-arn", role_arn, "--role-session-name", "run-1",
              "--external-id", "ext-42", "--duration-seconds", "900", key=key, secret=secret)
    creds = out["Credentials"]
    session_arn = f"arn:aws:sts::{A}:assumed-role/task-role/run-1"
    assert creds["AccessKeyId"].startswith("ASIA") and creds["SessionToken"]
    assert out["AssumedRoleUser"] == {"AssumedRoleId": f"{role['RoleId']}:run-1", "Arn": session_arn}
    me = cli(server, tmp_path, "sts", "get-caller-identity", key=creds["AccessKeyId"],
             secret=creds["SecretAccessKey"], token=creds["SessionToken"])
    assert me == {"UserId": f"{role['RoleId']}:run-1", "Account": A, "Arn": session_arn}
    # the role's permissions, on both faces
    role_ecr = session_client(server, "ecr", creds)
    assert call(role_ecr, "ListImages", {"repositoryName": "depth/deploy"}).code == "success"
    assert call(role_ecr, "CreateRepository", {"repositoryName": "depth/nope"}).code == "AccessDeniedException"
    token = registry_token(role_ecr)
    # a registry token ends no later than the temporary credentials it was obtained with (15 minutes)
    token_expiry = role_ecr.get_authorization_token()["authorizationData"][0]["expiresAt"]
    assert token_expiry <= datetime.fromisoformat(creds["Expiration"].replace("Z", "+00:00"))
    assert json.loads(base64.urlsafe_b64decode(token.split(".")[1] + "==="))["sub"] == session_arn
    assert pull_status(server, token, "depth/deploy") == 200
    # a repository policy naming the session ARN denies it
    ecr.set_repository_policy(repositoryName="depth/deploy", policyText=doc(
        {"Effect": "Deny", "Principal": {"AWS": session_arn}, "Action": "ecr:BatchGetImage"}))
    assert settled(server, lambda: pull_status(server, token, "depth/deploy"), 403) == 403
    ecr.delete_repository_policy(repositoryName="depth/deploy")
    assert settled(server, lambda: pull_status(server, token, "depth/deploy"), 200) == 200
    # a signature with the wrong session token, or none, is refused
    bad = dict(creds, SessionToken=creds["SessionToken"][:-2] + "AA")
    assert call(session_client(server, "ecr", bad), "ListImages", {"repositoryName": "depth/deploy"}).code \
        == "UnrecognizedClientException"
    no_token = client("ecr", server.url, creds["AccessKeyId"], creds["SecretAccessKey"])
    assert call(no_token, "DescribeRegistry", {}).code == "UnrecognizedClientException"
    # a session policy narrows the role
    narrow = sts.assume_role(RoleArn=role_arn, RoleSessionName="narrow", ExternalId="ext-42",
                             Policy=doc(allow("ecr:ListImages")))["Credentials"]
    narrow_ecr = session_client(server, "ecr", narrow)
    assert call(narrow_ecr, "ListImages", {"repositoryName": "depth/deploy"}).code == "success"
    assert call(narrow_ecr, "BatchGetImage", {"repositoryName": "depth/deploy", "imageIds": [{"imageTag": "v1"}]}
                ).code == "AccessDeniedException"
    # GetSessionToken: the user's own permissions, temporary
    iam.put_user_policy(UserName="deployer", PolicyName="registry", PolicyDocument=doc(allow("ecr:DescribeRegistry")))
    user_session = sts.get_session_token(DurationSeconds=900)["Credentials"]
    assert user_session["AccessKeyId"].startswith("ASIA")
    assert session_client(server, "sts", user_session).get_caller_identity()["Arn"] == deployer_arn
    assert settled(server, lambda: call(session_client(server, "ecr", user_session), "DescribeRegistry", {}).code,
                   "success") == "success"
    assert code(session_client(server, "sts", user_session).get_session_token) == "AccessDenied"
    # the role's trust policy changes, and a role that is gone ends its sessions
    iam.update_assume_role_policy(RoleName="task-role", PolicyDocument=trust(f"arn:aws:iam::{A}:user/ci/other"))
    assert settled(server, lambda: code(sts.assume_role, RoleArn=role_arn, RoleSessionName="xx", ExternalId="ext-42"),
                   "AccessDenied") == "AccessDenied"
    assert code(iam.delete_role, RoleName="task-role") == "DeleteConflict"
    iam.detach_role_policy(RoleName="task-role", PolicyArn=PULL_ONLY)
    iam.delete_role_policy(RoleName="task-role", PolicyName="list")
    iam.delete_role(RoleName="task-role")
    assert settled(server, lambda: call(role_ecr, "ListImages", {"repositoryName": "depth/deploy"}).code,
                   "AccessDeniedException") == "AccessDeniedException"
    assert settled(server, lambda: pull_status(server, token, "depth/deploy"), 403) == 403


def test_trust_by_account_needs_the_callers_own_permission(server: BerthServer, iam: BaseClient) -> None:
    iam.create_role(RoleName="account-trust", AssumeRolePolicyDocument=trust(f"arn:aws:iam::{A}:root"))
    key, secret = user_with_key(iam, "assumer")
    sts = client("sts", server.url, key, secret)
    role_arn = f"arn:aws:iam::{A}:role/account-trust"
    assert code(sts.assume_role, RoleArn=role_arn, RoleSessionName="ss") == "AccessDenied"
    iam.put_user_policy(UserName="assumer", PolicyName="assume", PolicyDocument=doc(allow("sts:AssumeRole", role_arn)))
    assert settled(server, lambda: code(sts.assume_role, RoleArn=role_arn, RoleSessionName="ss"), "success") \
        == "success"
    assert code(iam.create_role, RoleName="bad-trust", AssumeRolePolicyDocument=doc(allow("*"))) \
        == "MalformedPolicyDocument"


def test_temporary_credentials_expire_with_expired_token(
        server: BerthServer, iam: BaseClient, tmp_path: Path) -> None:
    require_tool(str(FAKETIME_LIB))
    iam.create_role(RoleName="short", AssumeRolePolicyDocument=trust(f"arn:aws:iam::{A}:root"))
    iam.attach_role_policy(RoleName="short", PolicyArn=READ_ONLY)
    creds = client("sts", server.url, KEY, SECRET).assume_role(
        RoleArn=f"arn:aws:iam::{A}:role/short", RoleSessionName="brief", DurationSeconds=900)["Credentials"]
    later = BerthServer(server.data_dir, database_url=server.database_url, args=["--auth", "iam"],
                        env={"LD_PRELOAD": str(FAKETIME_LIB), "FAKETIME": "+16m", "FAKETIME_DONT_RESET": "1"})
    later.start()
    try:
        assert call(session_client(server, "ecr", creds), "DescribeRepositories", {}).code == "success"
        ecr_later = session_client(later, "ecr", creds)
        outcome = call(ecr_later, "DescribeRepositories", {})
        assert (outcome.code, outcome.message) == ("ExpiredTokenException",
                                                   "The security token included in the request is expired")
        with pytest.raises(ClientError) as info:
            session_client(later, "sts", creds).get_caller_identity()
        assert info.value.response["Error"]["Code"] == "ExpiredToken"
        assert info.value.response["ResponseMetadata"]["HTTPStatusCode"] == 403
    finally:
        later.stop()


def test_session_tags_are_principal_tags(server: BerthServer, iam: BaseClient, admin_oci: OciClient,
                                          ecr: BaseClient) -> None:
    admin_oci.push_image("depth/tagged", random_image(layers=1), "v1")
    base = {"Effect": "Allow", "Principal": {"AWS": f"arn:aws:iam::{A}:root"}}
    iam.create_role(RoleName="tagged", AssumeRolePolicyDocument=doc(
        {**base, "Action": "sts:AssumeRole"},
        {**base, "Action": "sts:TagSession", "Condition": {"StringEquals": {"aws:RequestTag/team": ["web", "db"]}}}))
    iam.put_role_policy(RoleName="tagged", PolicyName="by-team", PolicyDocument=doc(
        {"Effect": "Allow", "Action": ["ecr:BatchGetImage", "ecr:GetAuthorizationToken"], "Resource": "*",
         "Condition": {"StringEquals": {"aws:PrincipalTag/team": "web"}}}))
    sts = client("sts", server.url, KEY, SECRET)
    role_arn = f"arn:aws:iam::{A}:role/tagged"
    ids = {"repositoryName": "depth/tagged", "imageIds": [{"imageTag": "v1"}]}

    def session(**kwargs: Any) -> BaseClient:
        creds = sts.assume_role(RoleArn=role_arn, RoleSessionName="tagged-session", **kwargs)["Credentials"]
        return session_client(server, "ecr", creds)

    web = session(Tags=[{"Key": "team", "Value": "web"}])
    assert call(web, "BatchGetImage", ids).code == "success"
    assert pull_status(server, registry_token(web), "depth/tagged") == 200  # the token carries the tags
    assert call(session(Tags=[{"Key": "team", "Value": "db"}]), "BatchGetImage", ids).code == "AccessDeniedException"
    assert call(session(), "BatchGetImage", ids).code == "AccessDeniedException"  # untagged
    # the trust policy decides which tags may be passed (sts:TagSession)
    assert code(sts.assume_role, RoleArn=role_arn, RoleSessionName="tagged-session",
                Tags=[{"Key": "team", "Value": "admin"}]) == "AccessDenied"


def test_request_tags_on_create_repository_and_tag_resource(server: BerthServer, iam: BaseClient) -> None:
    key, secret = user_with_key(iam, "tagger")
    condition = {"StringEquals": {"aws:RequestTag/team": "web"}, "ForAllValues:StringEquals": {"aws:TagKeys": ["team"]}}
    iam.put_user_policy(UserName="tagger", PolicyName="tags", PolicyDocument=doc(
        {"Effect": "Allow", "Action": ["ecr:CreateRepository", "ecr:TagResource"], "Resource": "*",
         "Condition": condition},
        {"Effect": "Allow", "Action": "ecr:UntagResource", "Resource": "*",
         "Condition": {"ForAllValues:StringEquals": {"aws:TagKeys": ["scratch"]}}}))
    user = client("ecr", server.url, key, secret)

    def create(name: str, *tags: tuple[str, str]) -> str:
        params: dict[str, Any] = {"repositoryName": name}
        if tags:
            params["tags"] = [{"Key": k, "Value": v} for k, v in tags]
        return call(user, "CreateRepository", params).code

    assert settled(server, lambda: create("depth/tag-web", ("team", "web")), "success") == "success"
    assert create("depth/tag-db", ("team", "db")) == "AccessDeniedException"
    assert create("depth/tag-none") == "AccessDeniedException"
    assert create("depth/tag-extra", ("team", "web"), ("owner", "me")) == "AccessDeniedException"
    arn = f"arn:aws:ecr:{REGION}:{A}:repository/depth/tag-web"
    assert call(user, "TagResource", {"resourceArn": arn, "tags": [{"Key": "team", "Value": "web"}]}).code \
        == "success"
    assert call(user, "TagResource", {"resourceArn": arn, "tags": [{"Key": "team", "Value": "db"}]}).code \
        == "AccessDeniedException"
    assert call(user, "UntagResource", {"resourceArn": arn, "tagKeys": ["scratch"]}).code == "success"
    assert call(user, "UntagResource", {"resourceArn": arn, "tagKeys": ["team"]}).code == "AccessDeniedException"


def test_a_resource_policy_naming_a_role_matches_its_sessions(
        server: BerthServer, iam: BaseClient, admin_oci: OciClient, ecr: BaseClient, tmp_path: Path) -> None:
    admin_oci.push_image("depth/by-role", random_image(layers=1), "v1")
    iam.create_role(RoleName="puller", Path="/k8s/nodes/", AssumeRolePolicyDocument=trust(f"arn:aws:iam::{A}:root"))
    iam.put_role_policy(RoleName="puller", PolicyName="login", PolicyDocument=doc(allow("ecr:GetAuthorizationToken")))
    role_arn = f"arn:aws:iam::{A}:role/k8s/nodes/puller"
    creds = cli(server, tmp_path, "sts", "assume-role", "--role-arn", role_arn,
                "--role-session-name", "node-7")["Credentials"]
    as_session = {"key": creds["AccessKeyId"], "secret": creds["SecretAccessKey"], "token": creds["SessionToken"]}
    assert cli(server, tmp_path, "sts", "get-caller-identity", **as_session)["Arn"] == \
        f"arn:aws:sts::{A}:assumed-role/puller/node-7"
    done = subprocess.run([str(AWS_CLI), "--endpoint-url", server.url, "ecr", "get-login-password"], env={
        **{k: v for k, v in os.environ.items() if not k.startswith("AWS_")}, "AWS_ACCESS_KEY_ID": creds["AccessKeyId"],
        "AWS_SECRET_ACCESS_KEY": creds["SecretAccessKey"], "AWS_SESSION_TOKEN": creds["SessionToken"],
        "AWS_DEFAULT_REGION": REGION, "AWS_CONFIG_FILE": str(tmp_path / "none")},
        capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    token = done.stdout.strip()
    assert pull_status(server, token, "depth/by-role") == 403  # the role itself may not pull
    # Allow naming the role (with its path): every session of the role is named
    ecr.set_repository_policy(repositoryName="depth/by-role", policyText=doc(
        {"Effect": "Allow", "Principal": {"AWS": role_arn}, "Action": "ecr:BatchGetImage"}))
    assert settled(server, lambda: pull_status(server, token, "depth/by-role"), 200) == 200
    # ... and Deny naming it refuses them, over the role's own allow
    iam.attach_role_policy(RoleName="puller", PolicyArn=READ_ONLY)
    ecr.set_repository_policy(repositoryName="depth/by-role", policyText=doc(
        {"Effect": "Deny", "Principal": {"AWS": role_arn}, "Action": "ecr:BatchGetImage"}))
    assert settled(server, lambda: pull_status(server, token, "depth/by-role"), 403) == 403
    # aws:PrincipalArn of a session is its role's ARN
    ecr.set_repository_policy(repositoryName="depth/by-role", policyText=doc(
        {"Effect": "Deny", "Principal": "*", "Action": "ecr:BatchGetImage",
         "Condition": {"StringNotEquals": {"aws:PrincipalArn": role_arn}}}))
    assert settled(server, lambda: pull_status(server, token, "depth/by-role"), 200) == 200
    ecr.set_repository_policy(repositoryName="depth/by-role", policyText=doc(
        {"Effect": "Deny", "Principal": "*", "Action": "ecr:BatchGetImage",
         "Condition": {"ArnLike": {"aws:PrincipalArn": f"arn:aws:iam::{A}:role/k8s/*"}}}))
    assert settled(server, lambda: pull_status(server, token, "depth/by-role"), 403) == 403
    # NotPrincipal exempts a session only when its account, its role and the session are all listed
    session_arn = f"arn:aws:sts::{A}:assumed-role/puller/node-7"
    for exempt, expected in (([f"arn:aws:iam::{A}:root", role_arn], 403),
                             ([f"arn:aws:iam::{A}:root", role_arn, session_arn], 200)):
        ecr.set_repository_policy(repositoryName="depth/by-role", policyText=doc(
            {"Effect": "Deny", "NotPrincipal": {"AWS": exempt}, "Action": "ecr:BatchGetImage"}))
        assert settled(server, lambda: pull_status(server, token, "depth/by-role"), expected) == expected
    ecr.delete_repository_policy(repositoryName="depth/by-role")
    iam.detach_role_policy(RoleName="puller", PolicyArn=READ_ONLY)


# --- tags on users and roles -----------------------------------------------------------------------


def test_tags_on_users_and_roles(server: BerthServer, iam: BaseClient, tmp_path: Path) -> None:
    iam.create_user(UserName="tagged-user", Tags=[{"Key": "Team", "Value": "web"}, {"Key": "cost", "Value": ""}])
    assert iam.get_user(UserName="tagged-user")["User"]["Tags"] == [
        {"Key": "cost", "Value": ""}, {"Key": "Team", "Value": "web"}]
    iam.tag_user(UserName="tagged-user", Tags=[{"Key": "team", "Value": "db"}, {"Key": "Env", "Value": "prod é:/=+-@"}])
    # keys compare without case: 'team' overwrote 'Team' and kept the case it was given
    assert iam.list_user_tags(UserName="tagged-user")["Tags"] == [
        {"Key": "cost", "Value": ""}, {"Key": "Env", "Value": "prod é:/=+-@"}, {"Key": "team", "Value": "db"}]
    page = iam.list_user_tags(UserName="tagged-user", MaxItems=2)
    assert page["IsTruncated"] and len(page["Tags"]) == 2
    assert iam.list_user_tags(UserName="tagged-user", Marker=page["Marker"])["Tags"] == [{"Key": "team", "Value": "db"}]
    iam.untag_user(UserName="tagged-user", TagKeys=["COST", "absent"])
    assert [t["Key"] for t in iam.list_user_tags(UserName="tagged-user")["Tags"]] == ["Env", "team"]
    # the limits and errors of IAM's model
    assert code(iam.tag_user, UserName="tagged-user", Tags=[{"Key": f"k{i}", "Value": "v"} for i in range(49)]) \
        == "LimitExceeded"
    assert [t["Key"] for t in iam.list_user_tags(UserName="tagged-user")["Tags"]] == ["Env", "team"]  # nothing written
    iam.tag_user(UserName="tagged-user", Tags=[{"Key": f"k{i}", "Value": "v"} for i in range(48)])  # 50 in all
    assert code(iam.tag_user, UserName="tagged-user", Tags=[{"Key": "team", "Value": "again"}]) == "success"
    for bad, expected in (([{"Key": "a", "Value": "1"}, {"Key": "A", "Value": "2"}], "InvalidInput"),
                          ([{"Key": "aws:team", "Value": "x"}], "InvalidInput"),
                          ([{"Key": "x" * 129, "Value": "x"}], "ValidationError"),
                          ([{"Key": "x", "Value": "v" * 257}], "ValidationError"),
                          ([{"Key": "bad#key", "Value": "x"}], "ValidationError"),
                          ([{"Key": "k", "Value": "bad!value"}], "ValidationError"),
                          ([{"Key": f"n{i}", "Value": ""} for i in range(51)], "ValidationError")):
        assert code(iam.create_user, UserName="never", Tags=bad) == expected, bad
    assert code(iam.get_user, UserName="never") == "NoSuchEntity"
    assert code(iam.tag_user, UserName="nobody", Tags=[{"Key": "a", "Value": "b"}]) == "NoSuchEntity"
    assert code(iam.list_user_tags, UserName="nobody") == "NoSuchEntity"
    # roles, through the real CLI
    cli(server, tmp_path, "iam", "create-role", "--role-name", "tagged-role", "--assume-role-policy-document",
        trust(f"arn:aws:iam::{A}:root"), "--tags", "Key=tier,Value=gold")
    cli(server, tmp_path, "iam", "tag-role", "--role-name", "tagged-role", "--tags", "Key=owner,Value=ops")
    assert cli(server, tmp_path, "iam", "list-role-tags", "--role-name", "tagged-role")["Tags"] == [
        {"Key": "owner", "Value": "ops"}, {"Key": "tier", "Value": "gold"}]
    cli(server, tmp_path, "iam", "untag-role", "--role-name", "tagged-role", "--tag-keys", "owner")
    assert iam.get_role(RoleName="tagged-role")["Role"]["Tags"] == [{"Key": "tier", "Value": "gold"}]
    assert "Tags" not in iam.list_roles()["Roles"][0]  # as IAM: only Get/Create return them
    # a deleted user or role takes its tags along; one made again under the name starts bare
    iam.delete_role(RoleName="tagged-role")
    iam.create_role(RoleName="tagged-role", AssumeRolePolicyDocument=trust(f"arn:aws:iam::{A}:root"))
    assert iam.list_role_tags(RoleName="tagged-role")["Tags"] == []
    iam.delete_role(RoleName="tagged-role")
    iam.delete_user(UserName="tagged-user")
    iam.create_user(UserName="tagged-user")
    assert "Tags" not in iam.get_user(UserName="tagged-user")["User"]
    iam.delete_user(UserName="tagged-user")


def test_principal_tags_are_the_users_or_roles_own(server: BerthServer, iam: BaseClient, admin_oci: OciClient) -> None:
    admin_oci.push_image("depth/by-tag", random_image(layers=1), "v1")
    by_team = doc({"Effect": "Allow", "Action": ["ecr:BatchGetImage", "ecr:GetAuthorizationToken"], "Resource": "*",
                   "Condition": {"StringEquals": {"aws:PrincipalTag/team": "web"}}})
    ids = {"repositoryName": "depth/by-tag", "imageIds": [{"imageTag": "v1"}]}
    # a user's own tags
    key, secret = user_with_key(iam, "tag-puller")
    iam.put_user_policy(UserName="tag-puller", PolicyName="by-team", PolicyDocument=by_team)
    user = client("ecr", server.url, key, secret)
    assert settled(server, lambda: call(user, "BatchGetImage", ids).code, "AccessDeniedException") \
        == "AccessDeniedException"
    iam.tag_user(UserName="tag-puller", Tags=[{"Key": "Team", "Value": "web"}])  # keys match without case
    assert settled(server, lambda: call(user, "BatchGetImage", ids).code, "success") == "success"
    iam.tag_user(UserName="tag-puller", Tags=[{"Key": "team", "Value": "db"}])
    assert settled(server, lambda: call(user, "BatchGetImage", ids).code, "AccessDeniedException") \
        == "AccessDeniedException"
    # a role's own tags, for its sessions; session tags win over them
    base = {"Effect": "Allow", "Principal": {"AWS": f"arn:aws:iam::{A}:root"}}
    iam.create_role(RoleName="team-role", Tags=[{"Key": "team", "Value": "web"}], AssumeRolePolicyDocument=doc(
        {**base, "Action": ["sts:AssumeRole", "sts:TagSession"]}))
    iam.put_role_policy(RoleName="team-role", PolicyName="by-team", PolicyDocument=by_team)
    sts = client("sts", server.url, KEY, SECRET)
    role_arn = f"arn:aws:iam::{A}:role/team-role"
    plain = sts.assume_role(RoleArn=role_arn, RoleSessionName="plain")["Credentials"]
    assert call(session_client(server, "ecr", plain), "BatchGetImage", ids).code == "success"
    overridden = sts.assume_role(RoleArn=role_arn, RoleSessionName="db",
                                 Tags=[{"Key": "team", "Value": "db"}])["Credentials"]
    assert call(session_client(server, "ecr", overridden), "BatchGetImage", ids).code == "AccessDeniedException"
    # aws:RequestTag and aws:TagKeys on the IAM face's own tagging
    iam.put_user_policy(UserName="tag-puller", PolicyName="self-tag", PolicyDocument=doc(
        {"Effect": "Allow", "Action": "iam:TagUser", "Resource": "*",
         "Condition": {"ForAllValues:StringEquals": {"aws:TagKeys": ["project"]}}}))
    own_iam = client("iam", server.url, key, secret)
    assert settled(server, lambda: code(own_iam.tag_user, UserName="tag-puller",
                                        Tags=[{"Key": "project", "Value": "x"}]), "success") == "success"
    assert code(own_iam.tag_user, UserName="tag-puller", Tags=[{"Key": "team", "Value": "web"}]) == "AccessDenied"


def test_called_via_names_berths_own_calls_for_a_user(server: BerthServer, iam: BaseClient) -> None:
    push = ["ecr:GetAuthorizationToken", "ecr:BatchCheckLayerAvailability", "ecr:InitiateLayerUpload",
            "ecr:UploadLayerPart", "ecr:CompleteLayerUpload", "ecr:PutImage", "ecr:BatchGetImage"]
    key, secret = user_with_key(iam, "via-pusher")
    iam.put_user_policy(UserName="via-pusher", PolicyName="push", PolicyDocument=doc(
        allow(push),
        # a repository may be made for a push (create-on-push), never by a CreateRepository call of its own
        {"Effect": "Allow", "Action": "ecr:CreateRepository", "Resource": "*",
         "Condition": {"ForAnyValue:StringEquals": {"aws:CalledVia": ["ecr.amazonaws.com"]},
                       "StringEquals": {"aws:CalledViaFirst": "ecr.amazonaws.com",
                                        "aws:CalledViaLast": "ecr.amazonaws.com"},
                       "Bool": {"aws:ViaAWSService": "true"}}}))
    user = client("ecr", server.url, key, secret)
    assert settled(server, lambda: call(user, "CreateRepository", {"repositoryName": "depth/via-direct"}).code,
                   "AccessDeniedException") == "AccessDeniedException"
    with OciClient(server.url) as oci:
        oci.http.headers["Authorization"] = basic(registry_token(user))
        assert oci.push_image("depth/via-push", random_image(layers=1), "v1").status_code == 201
    assert call(user, "BatchGetImage", {"repositoryName": "depth/via-push", "imageIds": [{"imageTag": "v1"}]}).code \
        == "success"
    # and a Deny on it stops the create-on-push while a direct create stays allowed
    iam.put_user_policy(UserName="via-pusher", PolicyName="push", PolicyDocument=doc(
        allow(push + ["ecr:CreateRepository"]),
        {"Effect": "Deny", "Action": "ecr:CreateRepository", "Resource": "*",
         "Condition": {"ForAnyValue:StringEquals": {"aws:CalledVia": "ecr.amazonaws.com"}}}))
    with OciClient(server.url) as oci:
        oci.http.headers["Authorization"] = basic(registry_token(user))
        assert settled(server, lambda: oci.push_blob("depth/via-denied", b"layer").status_code, 403) == 403
    assert call(user, "CreateRepository", {"repositoryName": "depth/via-direct"}).code == "success"
