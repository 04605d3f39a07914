"""The Secrets Manager face on the registry's port, through boto3 and the aws CLI, on SQLite and PostgreSQL:
CreateSecret, GetSecretValue, PutSecretValue, DescribeSecret, ListSecrets, DeleteSecret with Secrets
Manager's shapes and errors; values are encrypted at rest; IAM decides who may read a secret."""

from __future__ import annotations

import asyncio
import json
import sqlite3
from pathlib import Path

import asyncpg
import pytest
from botocore.client import BaseClient

from tests.support import aws
from tests.support.servers import BerthServer

pytestmark = pytest.mark.integration

KEY, SECRET = aws.IAM_ADMIN_KEY, aws.IAM_ADMIN_SECRET  # the identity suites' shared server (identity_server)
PLAINTEXT = "correct-horse-battery-staple-5f2c"


@pytest.fixture(scope="module")
def server(identity_server: BerthServer) -> BerthServer:
    return identity_server  # `berth serve --auth iam`, SQLite and PostgreSQL, shared with the identity suites


@pytest.fixture
def sm(server: BerthServer) -> BaseClient:
    return aws.client("secretsmanager", server.url, KEY, SECRET)


def test_secret_lifecycle(sm: BaseClient, server: BerthServer) -> None:
    made = sm.create_secret(Name="ecr-pullthroughcache/life", Description="hub credentials",
                            SecretString=json.dumps({"username": "u", "accessToken": PLAINTEXT}),
                            Tags=[{"Key": "team", "Value": "core"}])
    assert made["Name"] == "ecr-pullthroughcache/life"
    assert made["ARN"].startswith("arn:aws:secretsmanager:us-east-1:123456789012:secret:ecr-pullthroughcache/life-")
    assert len(made["ARN"].rsplit("-", 1)[1]) == 6
    for secret_id in (made["Name"], made["ARN"], made["ARN"][:-7]):  # name, full ARN, partial ARN
        got = sm.get_secret_value(SecretId=secret_id)
        assert json.loads(got["SecretString"])["accessToken"] == PLAINTEXT
        assert got["VersionId"] == made["VersionId"] and got["VersionStages"] == ["AWSCURRENT"]
    assert aws.call(sm, "CreateSecret", {"Name": "ecr-pullthroughcache/life", "SecretString": "x"}).code \
        == "ResourceExistsException"
    put = sm.put_secret_value(SecretId=made["ARN"], SecretString="second")
    assert put["VersionId"] != made["VersionId"]
    assert sm.get_secret_value(SecretId=made["Name"])["SecretString"] == "second"
    blob = sm.create_secret(Name="binary-one", SecretBinary=b"\x00\x01binary")
    assert sm.get_secret_value(SecretId=blob["ARN"])["SecretBinary"] == b"\x00\x01binary"
    desc = sm.describe_secret(SecretId=made["Name"])
    assert desc["Description"] == "hub credentials" and desc["Tags"] == [{"Key": "team", "Value": "core"}]
    assert desc["VersionIdsToStages"] == {put["VersionId"]: ["AWSCURRENT"]} and "DeletedDate" not in desc
    names = [s["Name"] for s in sm.list_secrets()["SecretList"]]
    assert {"ecr-pullthroughcache/life", "binary-one"} <= set(names)
    page = sm.list_secrets(MaxResults=1)
    assert len(page["SecretList"]) == 1 and "NextToken" in page

    deleted = sm.delete_secret(SecretId=made["Name"], RecoveryWindowInDays=7)
    assert deleted["ARN"] == made["ARN"] and "DeletionDate" in deleted
    assert aws.call(sm, "GetSecretValue", {"SecretId": made["Name"]}).code == "InvalidRequestException"
    assert "DeletedDate" in sm.describe_secret(SecretId=made["Name"])
    assert made["Name"] not in [s["Name"] for s in sm.list_secrets()["SecretList"]]
    assert made["Name"] in [s["Name"] for s in sm.list_secrets(IncludePlannedDeletion=True)["SecretList"]]
    assert aws.call(sm, "CreateSecret", {"Name": made["Name"], "SecretString": "x"}).code == "InvalidRequestException"
    sm.delete_secret(SecretId="binary-one", ForceDeleteWithoutRecovery=True)
    assert aws.call(sm, "DescribeSecret", {"SecretId": "binary-one"}).code == "ResourceNotFoundException"


@pytest.mark.parametrize("op,params,code", [
    ("GetSecretValue", {"SecretId": "no-such-secret"}, "ResourceNotFoundException"),
    ("PutSecretValue", {"SecretId": "no-such-secret", "SecretString": "x"}, "ResourceNotFoundException"),
    ("DeleteSecret", {"SecretId": "no-such-secret"}, "ResourceNotFoundException"),
    ("CreateSecret", {"Name": "bad name!", "SecretString": "x"}, "InvalidParameterException"),
    ("CreateSecret", {"Name": "both", "SecretString": "x", "SecretBinary": b"y"}, "InvalidParameterException"),
    ("DeleteSecret", {"SecretId": "no-such-secret", "RecoveryWindowInDays": 3}, "ResourceNotFoundException"),
])
def test_refusals(sm: BaseClient, op: str, params: dict, code: str) -> None:
    assert aws.call(sm, op, params).code == code


def test_window_out_of_range(sm: BaseClient) -> None:
    sm.create_secret(Name="window", SecretString="x")
    assert aws.call(sm, "DeleteSecret", {"SecretId": "window", "RecoveryWindowInDays": 3}).code \
        == "InvalidParameterException"
    assert aws.call(sm, "DeleteSecret", {"SecretId": "window", "RecoveryWindowInDays": 7,
                                         "ForceDeleteWithoutRecovery": True}).code == "InvalidParameterException"
    sm.delete_secret(SecretId="window", ForceDeleteWithoutRecovery=True)


def test_values_are_encrypted_at_rest(sm: BaseClient, server: BerthServer) -> None:
    sm.create_secret(Name="at-rest", SecretString=PLAINTEXT)
    if server.database_url:
        async def read() -> str:
            conn = await asyncpg.connect(server.database_url)
            try:
                return str(await conn.fetchval("SELECT sealed FROM secrets WHERE name = 'at-rest'"))
            finally:
                await conn.close()

        sealed = asyncio.run(read())
    else:
        raw = b"".join(p.read_bytes() for p in server.data_dir.glob("berth.db*"))
        assert PLAINTEXT.encode() not in raw
        with sqlite3.connect(server.data_dir / "berth.db") as conn:
            sealed = conn.execute("SELECT sealed FROM secrets WHERE name = 'at-rest'").fetchone()[0]
    assert sealed.startswith("enc1:") and PLAINTEXT not in sealed  # sealed with the master key (berth/keys)
    key = Path(server.extra_env.get("BERTH_MASTER_KEY_FILE") or server.data_dir / "keys" / "master.key")
    assert key.stat().st_mode & 0o777 == 0o600


def test_iam_decides_who_reads(sm: BaseClient, server: BerthServer) -> None:
    arn = sm.create_secret(Name="ecr-pullthroughcache/guarded", SecretString="v")["ARN"]
    iam = aws.client("iam", server.url, KEY, SECRET)
    users = aws.create_users(iam, [
        aws.UserSpec("sm-reader", {"Version": "2012-10-17", "Statement": [
            {"Effect": "Allow", "Action": "secretsmanager:GetSecretValue", "Resource": arn}]}),
        aws.UserSpec("sm-nobody", {"Version": "2012-10-17", "Statement": [
            {"Effect": "Allow", "Action": "ecr:DescribeRepositories", "Resource": "*"}]})])
    reader = aws.client("secretsmanager", server.url, *users["sm-reader"])
    nobody = aws.client("secretsmanager", server.url, *users["sm-nobody"])
    assert reader.get_secret_value(SecretId=arn)["SecretString"] == "v"
    assert aws.call(reader, "PutSecretValue", {"SecretId": arn, "SecretString": "w"}).code == "AccessDeniedException"
    assert aws.call(nobody, "GetSecretValue", {"SecretId": arn}).code == "AccessDeniedException"
    assert aws.call(aws.client("secretsmanager", server.url, "AKIAUNKNOWNKEY000000", "x"), "ListSecrets", {}).code \
        == "UnrecognizedClientException"


def test_the_aws_cli_unchanged(server: BerthServer, tmp_path: Path) -> None:
    out = json.loads(aws.aws_cli(server.url, KEY, SECRET, tmp_path, "secretsmanager", "create-secret",
                                 "--name", "ecr-pullthroughcache/cli", "--secret-string", '{"username":"a"}'))
    got = json.loads(aws.aws_cli(server.url, KEY, SECRET, tmp_path, "secretsmanager", "get-secret-value",
                                 "--secret-id", out["ARN"]))
    assert json.loads(got["SecretString"]) == {"username": "a"}
    listed = json.loads(aws.aws_cli(server.url, KEY, SECRET, tmp_path, "secretsmanager", "list-secrets"))
    assert "ecr-pullthroughcache/cli" in [s["Name"] for s in listed["SecretList"]]
