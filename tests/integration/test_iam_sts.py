"""IAM and STS through the real aws CLI and boto3 against a real `berth serve --auth iam` (SQLite).

The user, access key and inline policy lifecycle; every identity error with IAM's code and status;
list pagination through the CLI's and botocore's paginators; who the caller is; a new user's key
denied, then allowed once a policy says so (on IAM and on ECR); inactive keys and wrong secrets.

The CLI costs about two seconds a call here, so independent CLI calls run side by side (`aws_many`).
"""

from __future__ import annotations

import json
import os
import subprocess
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from typing import Any
from xml.etree import ElementTree

import boto3
import httpx
import pytest
from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.client import BaseClient
from botocore.config import Config
from botocore.credentials import Credentials
from botocore.exceptions import ClientError

from berth.api.iam import app as iam_app
from berth.api.iam import model as iam_model
from berth.api.iam import operations as iam_operations
from berth.iam import errors as iam_errors
from tests.support.aws import AWS_CLI
from tests.support.servers import BerthServer

pytestmark = pytest.mark.integration

ACCOUNT, REGION = "123456789012", "us-east-1"
KEY, SECRET = "AKIAIAMSTSTESTADMIN1", "iam-sts-admin-secret-0123456789abcdef"
IAM_NS = "https://iam.amazonaws.com/doc/2010-05-08/"
STS_NS = "https://sts.amazonaws.com/doc/2011-06-15/"


def policy(*statements: dict[str, Any]) -> str:
    return json.dumps({"Version": "2012-10-17", "Statement": list(statements)})


def allow(action: str | list[str], resource: str = "*") -> dict[str, Any]:
    return {"Effect": "Allow", "Action": action, "Resource": resource}


@pytest.fixture(scope="module")
def clean_env(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, str]]:
    """No AWS configuration from the machine: private, nonexistent config and credentials files."""
    home = tmp_path_factory.mktemp("aws-home")
    env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
    env.update(AWS_CONFIG_FILE=str(home / "config"), AWS_SHARED_CREDENTIALS_FILE=str(home / "credentials"),
               AWS_DEFAULT_REGION=REGION, AWS_EC2_METADATA_DISABLED="true", AWS_PAGER="")
    with pytest.MonkeyPatch.context() as mp:
        for k in os.environ:
            if k.startswith("AWS_"):
                mp.delenv(k)
        for k, v in env.items():
            if k.startswith("AWS_"):
                mp.setenv(k, v)
        yield env


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory, clean_env: dict[str, str]) -> Iterator[BerthServer]:
    base = tmp_path_factory.mktemp("iam-sts")
    srv = BerthServer(base / "data", env={"BERTH_ADMIN_ACCESS_KEY_ID": KEY, "BERTH_ADMIN_SECRET_ACCESS_KEY": SECRET},
                      args=["--auth", "iam"]).start()
    try:
        yield srv
    finally:
        srv.stop()


def client(server: BerthServer, service: str, key: str = KEY, secret: str = SECRET,
           validate: bool = True) -> BaseClient:
    return boto3.client(service, endpoint_url=server.url, region_name=REGION,  # type: ignore[call-overload]
                        aws_access_key_id=key, aws_secret_access_key=secret,
                        config=Config(retries={"total_max_attempts": 1}, parameter_validation=validate))


@pytest.fixture(scope="module")
def iam(server: BerthServer) -> BaseClient:
    return client(server, "iam")


class Cli:
    def __init__(self, server: BerthServer, env: dict[str, str]) -> None:
        self.server = server
        self.env = env

    def run(self, *args: str, key: str = KEY, secret: str = SECRET) -> subprocess.CompletedProcess[str]:
        env = {**self.env, "AWS_ACCESS_KEY_ID": key, "AWS_SECRET_ACCESS_KEY": secret}
        return subprocess.run([str(AWS_CLI), "--endpoint-url", self.server.url, "--output", "json", *args],
                              env=env, capture_output=True, text=True, timeout=60)

    def ok(self, *args: str, **creds: str) -> Any:
        done = self.run(*args, **creds)
        assert done.returncode == 0, (args, done.stderr)
        return json.loads(done.stdout) if done.stdout.strip() else None

    def fails(self, code: str, *args: str, **creds: str) -> str:
        done = self.run(*args, **creds)
        assert done.returncode != 0, (args, done.stdout)
        assert f"An error occurred ({code})" in done.stderr, (args, done.stderr)
        return done.stderr

    def many(self, *calls: Callable[[], Any]) -> list[Any]:
        """Independent CLI calls, side by side."""
        with ThreadPoolExecutor(len(calls)) as pool:
            return [f.result() for f in [pool.submit(c) for c in calls]]


@pytest.fixture(scope="module")
def aws(server: BerthServer, clean_env: dict[str, str]) -> Cli:
    assert AWS_CLI.exists(), AWS_CLI
    return Cli(server, clean_env)


def error(info: pytest.ExceptionInfo[ClientError], code: str, status: int) -> str:
    response = info.value.response
    assert response["Error"]["Code"] == code, response
    assert response["ResponseMetadata"]["HTTPStatusCode"] == status, response
    return str(response["Error"]["Message"])


def recent(moment: datetime) -> bool:
    return abs((moment - datetime.now(UTC)).total_seconds()) < 600


# --- the aws CLI ------------------------------------------------------------------------------


def test_cli_lifecycle_errors_and_a_new_users_key(aws: Cli) -> None:
    ecr_policy = policy(allow("ecr:DescribeRegistry"))
    created, me, dup, malformed, wrong = aws.many(
        lambda: aws.ok("iam", "create-user", "--user-name", "cli-user"),
        lambda: aws.ok("sts", "get-caller-identity"),
        lambda: aws.fails("EntityAlreadyExists", "iam", "create-user", "--user-name", "admin"),
        lambda: aws.fails("MalformedPolicyDocument", "iam", "put-user-policy", "--user-name", "admin",
                          "--policy-name", "bad", "--policy-document", '{"Version": "2012-10-17", "Statement": '),
        lambda: aws.fails("SignatureDoesNotMatch", "sts", "get-caller-identity", secret="not-the-secret"),
    )
    user = created["User"]
    assert set(user) == {"Path", "UserName", "UserId", "Arn", "CreateDate"}
    assert user["UserName"] == "cli-user" and user["Path"] == "/" and user["UserId"].startswith("AIDA")
    assert user["Arn"] == f"arn:aws:iam::{ACCOUNT}:user/cli-user"
    assert recent(datetime.fromisoformat(user["CreateDate"]))
    assert me["Account"] == ACCOUNT and me["Arn"] == f"arn:aws:iam::{ACCOUNT}:user/admin"
    assert me["UserId"].startswith("AIDA")
    assert "User with name admin already exists" in dup
    assert "not valid JSON" in malformed
    assert "signature we calculated does not match" in wrong

    key, _ = aws.many(
        lambda: aws.ok("iam", "create-access-key", "--user-name", "cli-user")["AccessKey"],
        lambda: aws.ok("iam", "put-user-policy", "--user-name", "cli-user", "--policy-name", "ecr",
                       "--policy-document", ecr_policy),
    )
    assert key["UserName"] == "cli-user" and key["Status"] == "Active" and key["SecretAccessKey"]
    creds = {"key": key["AccessKeyId"], "secret": key["SecretAccessKey"]}

    who, denied, doc, conflict = aws.many(
        lambda: aws.ok("sts", "get-caller-identity", **creds),
        lambda: aws.fails("AccessDenied", "iam", "list-users", **creds),
        lambda: aws.ok("iam", "get-user-policy", "--user-name", "cli-user", "--policy-name", "ecr"),
        lambda: aws.fails("DeleteConflict", "iam", "delete-user", "--user-name", "cli-user"),
    )
    assert who == {"UserId": user["UserId"], "Account": ACCOUNT, "Arn": user["Arn"]}
    assert f"User: {user['Arn']} is not authorized to perform: iam:ListUsers" in denied
    assert doc["UserName"] == "cli-user" and doc["PolicyName"] == "ecr"
    assert doc["PolicyDocument"] == json.loads(ecr_policy)  # sent URL-encoded, decoded by the CLI

    aws.ok("iam", "update-access-key", "--user-name", "cli-user", "--access-key-id", key["AccessKeyId"],
           "--status", "Inactive")
    inactive = aws.fails("InvalidClientTokenId", "sts", "get-caller-identity", **creds)
    assert "security token included in the request is invalid" in inactive


def test_cli_list_users_pagination(aws: Cli, iam: BaseClient) -> None:
    names = [f"page-{i}" for i in range(5)]
    for name in names:
        iam.create_user(UserName=name, Path="/paging/")
    args = ("iam", "list-users", "--path-prefix", "/paging/", "--page-size", "1", "--max-items", "2")
    first = aws.ok(*args)
    assert [u["UserName"] for u in first["Users"]] == names[:2]
    assert all(u["Arn"] == f"arn:aws:iam::{ACCOUNT}:user/paging/{u['UserName']}" for u in first["Users"])
    second = aws.ok(*args, "--starting-token", first["NextToken"])
    assert [u["UserName"] for u in second["Users"]] == names[2:4] and "NextToken" in second
    third = aws.ok(*args, "--starting-token", second["NextToken"])
    assert [u["UserName"] for u in third["Users"]] == names[4:] and "NextToken" not in third


# --- boto3 ------------------------------------------------------------------------------------


def test_boto3_user_key_and_policy_lifecycle(iam: BaseClient) -> None:
    user = iam.create_user(UserName="dora")["User"]
    assert user["UserName"] == "dora" and recent(user["CreateDate"])
    assert iam.get_user(UserName="dora")["User"] == user
    assert iam.get_user()["User"]["UserName"] == "admin"  # no UserName: the caller

    keys = [iam.create_access_key(UserName="dora")["AccessKey"] for _ in range(2)]
    with pytest.raises(iam.exceptions.LimitExceededException) as limit:
        iam.create_access_key(UserName="dora")
    assert "AccessKeysPerUser" in error(limit, "LimitExceeded", 409)
    listed = iam.list_access_keys(UserName="dora")
    assert listed["IsTruncated"] is False
    assert sorted(k["AccessKeyId"] for k in listed["AccessKeyMetadata"]) == sorted(k["AccessKeyId"] for k in keys)
    assert all(set(k) == {"UserName", "AccessKeyId", "Status", "CreateDate"} for k in listed["AccessKeyMetadata"])
    page = iam.list_access_keys(UserName="dora", MaxItems=1)
    assert page["IsTruncated"] is True and len(page["AccessKeyMetadata"]) == 1
    rest = iam.list_access_keys(UserName="dora", Marker=page["Marker"])
    assert len(rest["AccessKeyMetadata"]) == 1 and rest["IsTruncated"] is False

    docs = {"pull": policy(allow(["ecr:BatchGetImage", "ecr:GetDownloadUrlForLayer"], "arn:aws:ecr:*:*:repository/*")),
            "tricky": policy(allow("ecr:DescribeRepositories", "arn:aws:ecr:*:*:repository/a+b%20c&d<e>"))}
    for name, doc in docs.items():
        assert iam.put_user_policy(UserName="dora", PolicyName=name, PolicyDocument=doc)["ResponseMetadata"][
            "HTTPStatusCode"] == 200
    for name, doc in docs.items():
        got = iam.get_user_policy(UserName="dora", PolicyName=name)
        assert (got["UserName"], got["PolicyName"], got["PolicyDocument"]) == ("dora", name, json.loads(doc))
    assert iam.list_user_policies(UserName="dora")["PolicyNames"] == ["pull", "tricky"]
    pager = iam.get_paginator("list_user_policies").paginate(UserName="dora", PaginationConfig={"PageSize": 1})
    assert [p["PolicyNames"] for p in pager] == [["pull"], ["tricky"]]

    with pytest.raises(iam.exceptions.DeleteConflictException) as conflict:
        iam.delete_user(UserName="dora")
    error(conflict, "DeleteConflict", 409)
    with pytest.raises(iam.exceptions.MalformedPolicyDocumentException) as bad:
        iam.put_user_policy(UserName="dora", PolicyName="bad", PolicyDocument='{"Statement": "nope"}')
    error(bad, "MalformedPolicyDocument", 400)
    with pytest.raises(iam.exceptions.EntityAlreadyExistsException) as dup:
        iam.create_user(UserName="dora")
    error(dup, "EntityAlreadyExists", 409)

    for name in docs:
        iam.delete_user_policy(UserName="dora", PolicyName=name)
    iam.update_access_key(UserName="dora", AccessKeyId=keys[0]["AccessKeyId"], Status="Inactive")
    for key in keys:
        iam.delete_access_key(UserName="dora", AccessKeyId=key["AccessKeyId"])
    iam.delete_user(UserName="dora")

    for call, kwargs in [
        (iam.get_user, {"UserName": "dora"}),
        (iam.delete_user, {"UserName": "dora"}),
        (iam.list_access_keys, {"UserName": "dora"}),
        (iam.list_user_policies, {"UserName": "dora"}),
        (iam.get_user_policy, {"UserName": "admin", "PolicyName": "nope"}),
        (iam.delete_user_policy, {"UserName": "admin", "PolicyName": "nope"}),
        (iam.delete_access_key, {"UserName": "admin", "AccessKeyId": keys[0]["AccessKeyId"]}),
        (iam.update_access_key, {"UserName": "admin", "AccessKeyId": "AKIANOSUCHKEY0000000", "Status": "Active"}),
        (iam.create_access_key, {"UserName": "dora"}),
    ]:
        with pytest.raises(iam.exceptions.NoSuchEntityException) as gone:
            call(**kwargs)
        error(gone, "NoSuchEntity", 404)


def test_boto3_list_users_markers(iam: BaseClient) -> None:
    for i in range(3):
        iam.create_user(UserName=f"mark-{i}", Path="/markers/")
    seen, marker = [], None
    while True:
        page = iam.list_users(PathPrefix="/markers/", MaxItems=2, **({"Marker": marker} if marker else {}))
        seen.append([u["UserName"] for u in page["Users"]])
        if not page["IsTruncated"]:
            assert "Marker" not in page
            break
        marker = page["Marker"]
    assert seen == [["mark-0", "mark-1"], ["mark-2"]]
    everyone = [u["UserName"] for p in iam.get_paginator("list_users").paginate() for u in p["Users"]]
    assert "admin" in everyone and everyone == sorted(everyone)


def test_new_user_is_denied_until_a_policy_allows(server: BerthServer, iam: BaseClient) -> None:
    iam.create_user(UserName="erin")
    key = iam.create_access_key(UserName="erin")["AccessKey"]
    creds = {"key": key["AccessKeyId"], "secret": key["SecretAccessKey"]}
    erin_iam, erin_ecr = client(server, "iam", **creds), client(server, "ecr", **creds)
    sts = client(server, "sts", **creds)
    arn = f"arn:aws:iam::{ACCOUNT}:user/erin"
    assert sts.get_caller_identity()["Arn"] == arn  # needs no permission, as in AWS

    for call in (erin_iam.list_users, erin_iam.get_user, erin_iam.create_access_key):
        with pytest.raises(ClientError) as denied:
            call()
        assert error(denied, "AccessDenied", 403).startswith(f"User: {arn} is not authorized to perform: iam:")
    with pytest.raises(ClientError) as ecr_denied:
        erin_ecr.describe_registry()
    assert "ecr:DescribeRegistry" in error(ecr_denied, "AccessDeniedException", 400)

    iam.put_user_policy(UserName="erin", PolicyName="self", PolicyDocument=policy(
        allow("ecr:DescribeRegistry"),
        allow("iam:ListUsers", f"arn:aws:iam::{ACCOUNT}:user/*"),
        allow(["iam:GetUser", "iam:ListAccessKeys"], f"arn:aws:iam::{ACCOUNT}:user/${{aws:username}}"),
    ))
    assert erin_ecr.describe_registry()["registryId"] == ACCOUNT
    assert "erin" in [u["UserName"] for u in erin_iam.list_users()["Users"]]
    assert erin_iam.get_user()["User"]["Arn"] == arn
    assert [k["AccessKeyId"] for k in erin_iam.list_access_keys()["AccessKeyMetadata"]] == [key["AccessKeyId"]]
    with pytest.raises(ClientError) as other:  # ${aws:username} is erin only
        erin_iam.get_user(UserName="admin")
    error(other, "AccessDenied", 403)
    with pytest.raises(ClientError) as create:
        erin_iam.create_user(UserName="mallory")
    error(create, "AccessDenied", 403)

    iam.update_access_key(UserName="erin", AccessKeyId=key["AccessKeyId"], Status="Inactive")
    for call in (sts.get_caller_identity, erin_ecr.describe_registry):
        with pytest.raises(ClientError) as inactive:
            call()
        assert inactive.value.response["Error"]["Code"] in ("InvalidClientTokenId", "UnrecognizedClientException")
    iam.update_access_key(UserName="erin", AccessKeyId=key["AccessKeyId"], Status="Active")
    assert sts.get_caller_identity()["Arn"] == arn


def test_boto3_validation(iam: BaseClient, server: BerthServer) -> None:
    raw = client(server, "iam", validate=False)  # let the server do the checking
    cases = [
        (raw.create_user, {"UserName": "bad name"}, "Member must satisfy regular expression pattern"),
        (raw.create_user, {"UserName": "x" * 65}, "Member must have length less than or equal to 64"),
        (raw.create_user, {}, "Value null at 'userName' failed to satisfy constraint: Member must not be null"),
        (raw.list_users, {"MaxItems": 0}, "Member must have value greater than or equal to 1"),
        (raw.update_access_key, {"AccessKeyId": "AKIAADMIN00000000000", "Status": "Expiring"},
         "Member must satisfy enum value set"),
        (raw.put_user_policy, {"UserName": "admin", "PolicyName": "p/q", "PolicyDocument": "{}"},
         "at 'policyName'"),
    ]
    for call, kwargs, text in cases:
        with pytest.raises(ClientError) as info:
            call(**kwargs)
        assert text in error(info, "ValidationError", 400)
    with pytest.raises(ClientError) as boundary:  # a parameter Berth does not implement: refused, not dropped
        raw.create_user(UserName="tagged",
                        PermissionsBoundary="arn:aws:iam::aws:policy/AmazonEC2ContainerRegistryReadOnly")
    assert "PermissionsBoundary" in error(boundary, "ValidationError", 400)
    with pytest.raises(ClientError) as unsupported:
        raw.create_instance_profile(InstanceProfileName="p")
    assert "CreateInstanceProfile" in error(unsupported, "InvalidAction", 400)
    with pytest.raises(iam.exceptions.NoSuchEntityException):
        iam.get_user(UserName="tagged")


# --- the wire, byte for byte ------------------------------------------------------------------


def signed(server: BerthServer, service: str, form: dict[str, str], secret: str = SECRET) -> httpx.Response:
    request = AWSRequest("POST", server.url + "/", data=form,
                         headers={"Content-Type": "application/x-www-form-urlencoded; charset=utf-8"})
    SigV4Auth(Credentials(KEY, secret), service, REGION).add_auth(request)
    prepared = request.prepare()
    return httpx.post(prepared.url, content=prepared.body, headers=dict(prepared.headers))


def parse(response: httpx.Response) -> ElementTree.Element:
    assert response.headers["content-type"].startswith("text/xml")
    return ElementTree.fromstring(response.content)


def test_xml_envelopes_and_protocol_errors(server: BerthServer) -> None:
    r = signed(server, "iam", {"Action": "GetUser", "Version": "2010-05-08"})
    root = parse(r)
    assert r.status_code == 200 and root.tag == f"{{{IAM_NS}}}GetUserResponse"
    assert [c.tag for c in root] == [f"{{{IAM_NS}}}GetUserResult", f"{{{IAM_NS}}}ResponseMetadata"]
    assert root.findtext(f"{{{IAM_NS}}}ResponseMetadata/{{{IAM_NS}}}RequestId") == r.headers["x-amzn-requestid"]
    assert root.findtext(f".//{{{IAM_NS}}}User/{{{IAM_NS}}}UserName") == "admin"

    r = signed(server, "sts", {"Action": "GetCallerIdentity", "Version": "2011-06-15"})
    root = parse(r)
    assert r.status_code == 200 and root.tag == f"{{{STS_NS}}}GetCallerIdentityResponse"
    assert root.findtext(f"{{{STS_NS}}}GetCallerIdentityResult/{{{STS_NS}}}Account") == ACCOUNT

    def err(response: httpx.Response, ns: str) -> tuple[int, str | None, str | None]:
        root = parse(response)
        assert root.tag == f"{{{ns}}}ErrorResponse" and root.findtext(f"{{{ns}}}RequestId")
        return (response.status_code, root.findtext(f"{{{ns}}}Error/{{{ns}}}Type"),
                root.findtext(f"{{{ns}}}Error/{{{ns}}}Code"))

    assert err(signed(server, "iam", {"Action": "Frobnicate", "Version": "2010-05-08"}), IAM_NS) == (
        400, "Sender", "InvalidAction")
    assert err(signed(server, "iam", {"Version": "2010-05-08"}), IAM_NS) == (400, "Sender", "MissingAction")
    assert err(signed(server, "sts", {"Action": "ListUsers", "Version": "2011-06-15"}), STS_NS) == (
        400, "Sender", "InvalidAction")
    assert err(signed(server, "sts", {"Action": "GetCallerIdentity", "Version": "2011-06-15"}, "nope"), STS_NS) == (
        403, "Sender", "SignatureDoesNotMatch")
    unsigned = httpx.post(server.url + "/", data={"Action": "ListUsers", "Version": "2010-05-08"})
    assert err(unsigned, IAM_NS) == (403, "Sender", "MissingAuthenticationToken")


def test_error_table_matches_botocore_models() -> None:
    """Identity errors keep the codes and statuses of IAM's model; every operation is IAM's or STS's."""
    iam_model_ = iam_model.service_model("iam")
    modelled = {s.metadata["error"]["code"]: s.metadata["error"]["httpStatusCode"]
                for s in (iam_model_.shape_for(n) for n in iam_model_.shape_names)
                if s.metadata.get("exception") and "error" in s.metadata}
    for cls in (iam_errors.NoSuchEntity, iam_errors.EntityAlreadyExists, iam_errors.DeleteConflict,
                iam_errors.LimitExceeded, iam_errors.MalformedPolicyDocument, iam_errors.InvalidInput,
                iam_errors.PolicyNotAttachable):
        assert modelled[cls.code] == cls.status, cls.code
    assert modelled["ServiceFailure"] == iam_app.STATUS["ServiceFailure"]
    for (service, op), operation in iam_operations.OPERATIONS.items():
        op_model = iam_model.operation_model(service, op)
        assert op_model is not None, op
        members = set(op_model.input_shape.members) if op_model.input_shape else set()
        assert operation.params <= members, op


def test_presigned_query_request(server: BerthServer) -> None:
    """SigV4's query form: a presigned STS GetCallerIdentity URL works as a plain GET, and not once altered."""
    sts = boto3.client("sts", endpoint_url=server.url, region_name="us-east-1", aws_access_key_id=KEY,
                       aws_secret_access_key=SECRET)
    url = sts.generate_presigned_url("get_caller_identity", ExpiresIn=60, HttpMethod="GET")
    ok = httpx.get(url)
    assert ok.status_code == 200, ok.text
    assert "<Arn>arn:aws:iam::123456789012:user/admin</Arn>" in ok.text
    bad = httpx.get(url.replace("X-Amz-Expires=60", "X-Amz-Expires=61"))
    assert bad.status_code == 403 and "SignatureDoesNotMatch" in bad.text
