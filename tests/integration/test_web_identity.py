"""Web identity, as a CI system without stored secrets uses it: an OIDC issuer the test runs on
loopback (its own RSA key, discovery document and JWKS), an IAM OIDC provider and a role trusting
it on `<provider>:sub` and `<provider>:aud`, the real `aws sts assume-role-with-web-identity`
(unsigned, no credentials at all), then a skopeo push with the temporary credentials. Wrong
audience, wrong subject, expired, foreign-signed and unknown-issuer tokens are refused with STS's
errors. Against a real `berth serve --auth iam`, SQLite and PostgreSQL.
"""

from __future__ import annotations

import json
import os
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from botocore.client import BaseClient
from cryptography.hazmat.primitives.asymmetric import rsa

from tests.support.aws import AWS_CLI, IAM_ADMIN_KEY, IAM_ADMIN_SECRET, call, client, registry_token, session_client
from tests.support.images import build_umoci_image
from tests.support.oidc import AUDIENCE, SUBJECT, Issuer
from tests.support.servers import BerthServer, require_tool

pytestmark = pytest.mark.integration

A, REGION = "123456789012", "us-east-1"
KEY, SECRET = IAM_ADMIN_KEY, IAM_ADMIN_SECRET  # the identity suites' shared server (conftest.py: identity_server)
POWER_USER = "arn:aws:iam::aws:policy/AmazonEC2ContainerRegistryPowerUser"


@pytest.fixture(scope="module")
def issuer() -> Iterator[Issuer]:
    made = Issuer()
    try:
        yield made
    finally:
        made.close()


@pytest.fixture(scope="module")
def server(identity_server: BerthServer) -> BerthServer:
    return identity_server  # `berth serve --auth iam`, SQLite and PostgreSQL, shared with the other identity suites


@pytest.fixture(scope="module")
def role_arn(server: BerthServer, issuer: Issuer) -> str:
    iam = client("iam", server.url, KEY, SECRET)
    provider = iam.create_open_id_connect_provider(Url=issuer.url, ClientIDList=[AUDIENCE],
                                                   ThumbprintList=["9e99a48a9960b14926bb7f3b02e22da2b0ab7280"])
    arn = provider["OpenIDConnectProviderArn"]
    url = issuer.url.split("://", 1)[1]
    assert arn == f"arn:aws:iam::{A}:oidc-provider/{url}"
    got = iam.get_open_id_connect_provider(OpenIDConnectProviderArn=arn)
    assert (got["Url"], got["ClientIDList"]) == (url, [AUDIENCE])
    assert {"Arn": arn} in iam.list_open_id_connect_providers()["OpenIDConnectProviderList"]
    trust = {"Version": "2012-10-17", "Statement": [{
        "Effect": "Allow", "Principal": {"Federated": arn}, "Action": "sts:AssumeRoleWithWebIdentity",
        "Condition": {"StringEquals": {f"{url}:aud": AUDIENCE}, "StringLike": {f"{url}:sub": "repo:example/app:*"}}}]}
    iam.create_role(RoleName="github-ci", Path="/ci/", AssumeRolePolicyDocument=json.dumps(trust))
    iam.attach_role_policy(RoleName="github-ci", PolicyArn=POWER_USER)
    client("ecr", server.url, KEY, SECRET).create_repository(repositoryName="ci/app")  # PowerUser cannot
    return f"arn:aws:iam::{A}:role/ci/github-ci"


def unsigned_sts(server: BerthServer) -> BaseClient:
    return client("sts", server.url, None, None)


def test_a_ci_job_assumes_a_role_with_its_oidc_token_and_pushes(
        server: BerthServer, issuer: Issuer, role_arn: str, tmp_path: Path) -> None:
    require_tool("skopeo", "umoci")
    env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}  # no credentials at all
    env.update(AWS_DEFAULT_REGION=REGION, AWS_CONFIG_FILE=str(tmp_path / "none"),
               AWS_SHARED_CREDENTIALS_FILE=str(tmp_path / "none"), AWS_EC2_METADATA_DISABLED="true")
    done = subprocess.run([str(AWS_CLI), "--endpoint-url", server.url, "--output", "json", "sts",
                           "assume-role-with-web-identity", "--role-arn", role_arn, "--role-session-name", "run-7",
                           "--web-identity-token", issuer.token()], env=env, capture_output=True, text=True,
                          timeout=60)
    assert done.returncode == 0, done.stderr
    out = json.loads(done.stdout)
    assert out["SubjectFromWebIdentityToken"] == SUBJECT and out["Audience"] == AUDIENCE
    assert out["AssumedRoleUser"]["Arn"] == f"arn:aws:sts::{A}:assumed-role/github-ci/run-7"
    creds = out["Credentials"]
    assert creds["AccessKeyId"].startswith("ASIA")
    env.update(AWS_ACCESS_KEY_ID=creds["AccessKeyId"], AWS_SECRET_ACCESS_KEY=creds["SecretAccessKey"],
               AWS_SESSION_TOKEN=creds["SessionToken"])
    password = subprocess.run([str(AWS_CLI), "--endpoint-url", server.url, "ecr", "get-login-password"], env=env,
                              capture_output=True, text=True, timeout=60)
    assert password.returncode == 0, password.stderr
    build_umoci_image(tmp_path / "layout", tmp_path, "v1", [{"app/ci.txt": b"pushed by a CI job\n"}])
    pushed = subprocess.run(["skopeo", "copy", "--dest-tls-verify=false", "--dest-creds",
                             f"AWS:{password.stdout.strip()}", f"oci:{tmp_path / 'layout'}:v1",
                             f"docker://{server.host}/ci/app:v1"], capture_output=True, text=True, timeout=120)
    assert pushed.returncode == 0, pushed.stderr
    admin_ecr = client("ecr", server.url, KEY, SECRET)
    assert admin_ecr.describe_images(repositoryName="ci/app")["imageDetails"][0]["imageTags"] == ["v1"]


def test_tokens_that_do_not_fit_are_refused(server: BerthServer, issuer: Issuer, role_arn: str) -> None:
    sts = unsigned_sts(server)

    def attempt(token: str) -> tuple[str, str]:
        outcome = call(sts, "AssumeRoleWithWebIdentity", {"RoleArn": role_arn, "RoleSessionName": "try",
                                                         "WebIdentityToken": token})
        return outcome.code, outcome.message

    assert attempt(issuer.token())[0] == "success"
    assert attempt(issuer.token(aud="someone-else")) == ("InvalidIdentityToken", "Incorrect token audience")
    assert attempt(issuer.token(sub="repo:evil/app:ref:refs/heads/main"))[0] == "AccessDenied"
    assert attempt(issuer.token(exp=int(time.time()) - 60))[0] == "ExpiredTokenException"
    foreign = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    assert attempt(issuer.token(key=foreign))[0] == "InvalidIdentityToken"
    assert attempt(issuer.token(iss="https://token.example.com"))[0] == "InvalidIdentityToken"
    assert attempt("not-a-jwt")[0] == "InvalidIdentityToken"
    # a rotated key is fetched when a token names it
    kid = issuer.rotate()
    assert attempt(issuer.token(kid=kid))[0] == "success"
    # a signed call of the same operation works too; a role the provider is not trusted by refuses
    iam = client("iam", server.url, KEY, SECRET)
    iam.create_role(RoleName="not-federated", AssumeRolePolicyDocument=json.dumps({"Version": "2012-10-17",
        "Statement": [{"Effect": "Allow", "Principal": {"AWS": f"arn:aws:iam::{A}:root"},
                       "Action": "sts:AssumeRole"}]}))
    outcome = call(sts, "AssumeRoleWithWebIdentity", {"RoleArn": f"arn:aws:iam::{A}:role/not-federated",
                                                     "RoleSessionName": "try", "WebIdentityToken": issuer.token()})
    assert outcome.code == "AccessDenied"
    # the session's registry token pulls what it pushed
    creds = sts.assume_role_with_web_identity(RoleArn=role_arn, RoleSessionName="pull",
                                              WebIdentityToken=issuer.token())["Credentials"]
    ecr = session_client("ecr", server.url, creds)
    assert registry_token(ecr)


def test_air_gapped_keys_from_a_jwks_file(server: BerthServer, issuer: Issuer) -> None:
    """BERTH_OIDC_JWKS_DIR: an issuer Berth cannot reach, its keys given as a file (the shared server's
    directory, read per request)."""
    offline = "https://token.airgap.invalid/ci"
    (server.jwks_dir / "token.airgap.invalid_ci.json").write_text(json.dumps(issuer.jwks()))  # type: ignore[attr-defined]
    iam = client("iam", server.url, KEY, SECRET)
    provider = iam.create_open_id_connect_provider(Url=offline, ClientIDList=[AUDIENCE])["OpenIDConnectProviderArn"]
    iam.create_role(RoleName="offline-ci", AssumeRolePolicyDocument=json.dumps({"Version": "2012-10-17",
        "Statement": [{"Effect": "Allow", "Principal": {"Federated": provider},
                       "Action": "sts:AssumeRoleWithWebIdentity",
                       "Condition": {"StringEquals": {"token.airgap.invalid/ci:sub": SUBJECT}}}]}))
    sts = client("sts", server.url, None, None)
    params = {"RoleArn": f"arn:aws:iam::{A}:role/offline-ci", "RoleSessionName": "offline"}
    assert call(sts, "AssumeRoleWithWebIdentity", {**params, "WebIdentityToken": issuer.token(iss=offline)}
                ).code == "success"
    foreign = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    assert call(sts, "AssumeRoleWithWebIdentity", {**params, "WebIdentityToken": issuer.token(
        iss=offline, key=foreign)}).code == "InvalidIdentityToken"
    # an issuer with neither a file nor a network answer
    other = "https://unreachable.invalid"
    iam.create_open_id_connect_provider(Url=other, ClientIDList=[AUDIENCE])
    assert call(sts, "AssumeRoleWithWebIdentity", {**params, "WebIdentityToken": issuer.token(iss=other)}
                ).code == "IDPCommunicationError"
