"""AWS-side helpers for tests: botocore clients against a berth server, registry tokens, IAM users.

Clients are real botocore clients (SigV4 signing, JSON serialisation, error parsing) pointed at the
server with `endpoint_url`; they never retry, so each call is exactly one request.
"""

from __future__ import annotations

import base64
import json
import os
import sqlite3
import subprocess
import sys
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import botocore.session
from botocore import UNSIGNED, xform_name
from botocore.client import BaseClient
from botocore.config import Config
from botocore.exceptions import ClientError

REGION = "us-east-1"
# the admin key of the identity suites' shared server (tests/integration/conftest.py: identity_server)
IAM_ADMIN_KEY, IAM_ADMIN_SECRET = "AKIAIDENTITYADMIN001", "identity-admin-secret-0123456789abcdefgh"
_NO_RETRY = Config(retries={"total_max_attempts": 1}, connect_timeout=10, read_timeout=60)
_SESSION = botocore.session.get_session()  # one loader: service models are parsed once per process


def client(service: str, url: str, key: str | None, secret: str | None, region: str = REGION) -> BaseClient:
    """A botocore client; `key=None` sends unsigned requests."""
    if key is None:
        return _SESSION.create_client(service, region_name=region, endpoint_url=url,
                                      config=_NO_RETRY.merge(Config(signature_version=UNSIGNED)))
    return _SESSION.create_client(service, region_name=region, endpoint_url=url, aws_access_key_id=key,
                                  aws_secret_access_key=secret, config=_NO_RETRY)


def session_client(service: str, url: str, creds: Mapping[str, Any], region: str = REGION) -> BaseClient:
    """A botocore client signing with STS temporary credentials (AccessKeyId, SecretAccessKey, SessionToken),
    from the shared loader (a fresh botocore session per client costs ~0.4 s of model parsing)."""
    return _SESSION.create_client(service, region_name=region, endpoint_url=url,
                                  aws_access_key_id=creds["AccessKeyId"],
                                  aws_secret_access_key=creds["SecretAccessKey"],
                                  aws_session_token=creds["SessionToken"], config=_NO_RETRY)


@dataclass(frozen=True)
class Outcome:
    """What one ECR call answered: the parsed output, or the AWS error code."""

    output: dict[str, Any] | None
    error: str | None = None
    message: str = ""

    @property
    def code(self) -> str:
        return self.error or "success"


def call(c: BaseClient, operation: str, params: Mapping[str, Any]) -> Outcome:
    """Call `operation` (its model name, e.g. "BatchGetImage"); AWS errors come back as an Outcome."""
    try:
        out = getattr(c, xform_name(operation))(**params)
    except ClientError as e:
        return Outcome(None, e.response["Error"]["Code"], e.response["Error"].get("Message", ""))
    out.pop("ResponseMetadata", None)
    return Outcome(out)


def registry_token(ecr: BaseClient) -> str:
    """The registry token from GetAuthorizationToken (the part after `AWS:`)."""
    data = ecr.get_authorization_token()["authorizationData"][0]
    user, _, token = base64.b64decode(data["authorizationToken"]).decode().partition(":")
    assert user == "AWS", user
    return token


def basic(token: str, user: str = "AWS") -> str:
    """An Authorization header value as docker sends it after `docker login -u AWS`."""
    return "Basic " + base64.b64encode(f"{user}:{token}".encode()).decode()


def token_claims(token: str) -> dict[str, Any]:
    """The (unverified) claims of a berth registry token `<key id>.<claims>.<mac>`."""
    payload = token.split(".")[1]
    return json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))


def signing_keys(db_path: Path) -> dict[str, bytes]:
    """The registry-token signing keys, read from the server's SQLite metadata database and opened with
    its master key (<data dir>/keys/master.key)."""
    from berth.keys import MasterKey

    master = MasterKey.load(db_path.parent / "keys" / "master.key")
    with sqlite3.connect(db_path) as conn:
        rows = conn.execute("SELECT id, secret FROM signing_keys ORDER BY created_at").fetchall()
    return {key_id: bytes.fromhex(master.open(secret, f"signing_keys:{key_id}")) for key_id, secret in rows}


@dataclass(frozen=True)
class UserSpec:
    name: str
    policy: Mapping[str, Any]  # one inline identity policy document


def create_users(iam: BaseClient, users: Iterable[UserSpec]) -> dict[str, tuple[str, str]]:
    """IAM users (through the server's IAM API, as `iam`'s caller) with one inline policy and one
    access key each. Returns user name -> (key id, secret)."""
    out = {}
    for u in users:
        iam.create_user(UserName=u.name)
        iam.put_user_policy(UserName=u.name, PolicyName="inline", PolicyDocument=json.dumps(u.policy))
        key = iam.create_access_key(UserName=u.name)["AccessKey"]
        out[u.name] = (key["AccessKeyId"], key["SecretAccessKey"])
    return out


AWS_CLI = Path(sys.executable).parent / "aws"  # the awscli installed beside the test runner


def aws_cli(url: str, key: str, secret: str, tmp: Path, *args: str, stdin: str | None = None) -> str:
    """Run the real `aws` CLI against `url` with only these credentials (no machine configuration);
    its stdout, after asserting it succeeded."""
    env = {**os.environ, "AWS_ACCESS_KEY_ID": key, "AWS_SECRET_ACCESS_KEY": secret, "AWS_DEFAULT_REGION": REGION,
           "AWS_CONFIG_FILE": str(tmp / "no-config"), "AWS_SHARED_CREDENTIALS_FILE": str(tmp / "no-creds")}
    proc = subprocess.run([str(AWS_CLI), "--endpoint-url", url, "--output", "json", *args], env=env,
                          capture_output=True, text=True, timeout=60, input=stdin)
    assert proc.returncode == 0, proc.stderr
    return proc.stdout
