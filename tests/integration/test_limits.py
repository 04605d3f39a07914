"""Rate limits on a real `berth serve --auth iam`: ECR ThrottlingException, IAM/STS Throttling and OCI
429 TOOMANYREQUESTS, each with Retry-After; per principal, and per account across its principals;
off by default (the other suites run without them)."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator

import httpx
import pytest
from botocore.exceptions import ClientError

from tests.support.aws import basic, client, registry_token
from tests.support.servers import BerthServer

pytestmark = pytest.mark.integration

KEY, SECRET = "AKIALIMITSADMIN0001", "limits-admin-secret-9f8h3f9h3f9h3f9h3f93"


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[BerthServer]:
    srv = BerthServer(tmp_path_factory.mktemp("limits") / "data", args=["--auth", "iam"],
                      env={"BERTH_ADMIN_ACCESS_KEY_ID": KEY, "BERTH_ADMIN_SECRET_ACCESS_KEY": SECRET,
                           "BERTH_RATE_LIMIT_PRINCIPAL": "1", "BERTH_RATE_LIMIT_PRINCIPAL_BURST": "5",
                           "BERTH_RATE_LIMIT_ACCOUNT": "1", "BERTH_RATE_LIMIT_ACCOUNT_BURST": "12"}).start()
    try:
        yield srv
    finally:
        srv.stop()


def _until_refused(fn: object, limit: int = 20) -> tuple[int, ClientError]:
    for i in range(limit):
        try:
            fn()  # type: ignore[operator]
        except ClientError as e:
            return i, e
    raise AssertionError(f"no refusal in {limit} calls")


def test_throttled_per_principal_then_per_account(server: BerthServer) -> None:
    iam = client("iam", server.url, KEY, SECRET)
    iam.create_user(UserName="busy")
    k = iam.create_access_key(UserName="busy")["AccessKey"]
    iam.put_user_policy(UserName="busy", PolicyName="ecr", PolicyDocument='{"Version": "2012-10-17", '
                        '"Statement": [{"Effect": "Allow", "Action": "*", "Resource": "*"}]}')
    time.sleep(6)  # the admin's bucket fills again (3 calls above, 1 a second)
    # IAM: the admin is refused after its burst, with IAM's own code and a Retry-After
    n, err = _until_refused(lambda: iam.list_users())
    assert 3 <= n <= 7, n
    assert err.response["Error"]["Code"] == "Throttling"
    assert int(err.response["ResponseMetadata"]["HTTPHeaders"]["retry-after"]) >= 1
    # ECR: another principal of the account has its own bucket, until the account's runs dry
    ecr = client("ecr", server.url, k["AccessKeyId"], k["SecretAccessKey"])
    token = registry_token(ecr)
    n2, err2 = _until_refused(lambda: ecr.describe_repositories())
    assert err2.response["Error"]["Code"] == "ThrottlingException"
    assert int(err2.response["ResponseMetadata"]["HTTPHeaders"]["retry-after"]) >= 1
    assert "Rate exceeded" in err2.response["Error"]["Message"]
    # the account's bucket (12) is empty now too: a third principal is refused at once
    sts = client("sts", server.url, KEY, SECRET)
    with pytest.raises(ClientError) as e3:
        for _ in range(3):
            sts.get_caller_identity()
    assert e3.value.response["Error"]["Code"] == "Throttling"
    # /v2 with a registry token: 429 TOOMANYREQUESTS and Retry-After
    r = httpx.get(f"{server.url}/v2/", headers={"Authorization": basic(token)})
    assert r.status_code == 429, r.text
    assert r.json()["errors"][0]["code"] == "TOOMANYREQUESTS"
    assert int(r.headers["retry-after"]) >= 1
    # and after the wait it says, a call passes again
    time.sleep(int(r.headers["retry-after"]) + 1)
    assert httpx.get(f"{server.url}/v2/", headers={"Authorization": basic(token)}).status_code == 200


def test_two_workers_share_the_buckets(tmp_path_factory: pytest.TempPathFactory) -> None:
    """`serve --workers 2`: both workers answer, and together they allow the configured rate, not twice it."""
    srv = BerthServer(tmp_path_factory.mktemp("limits2") / "data", args=["--workers", "2"],
                      env={"BERTH_RATE_LIMIT_PRINCIPAL": "1", "BERTH_RATE_LIMIT_PRINCIPAL_BURST": "8"}).start()
    try:
        time.sleep(1.5)  # the readiness probe's GET /v2/ took a token: the bucket is full (8) again
        start, statuses = time.monotonic(), []
        for _ in range(40):  # a new connection each: the kernel hands them to either worker
            r = httpx.get(f"{srv.url}/v2/_catalog")
            statuses.append(r.status_code)
            if r.status_code != 200:
                assert r.status_code == 429 and r.json()["errors"][0]["code"] == "TOOMANYREQUESTS", r.text
        elapsed = time.monotonic() - start
        allowed = statuses.count(200)
        assert 8 <= allowed <= 8 + elapsed * 1 + 1, (allowed, elapsed)  # per worker it was up to 16 + 2 × elapsed
        rids = [json.loads(ln)["request_id"] for ln in srv.read_log().splitlines()
                if '"path":"/v2/_catalog"' in ln]
        assert len({rid[:24] for rid in rids}) == 2, rids  # both workers answered (a per-process id prefix)
    finally:
        srv.stop()
