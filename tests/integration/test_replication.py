"""Replication inside one deployment, through a real `berth serve` (IAM on), on SQLite and on PostgreSQL.

Account A = 123456789012 serves us-east-1 and us-west-2; account B = 111122223333 (made with `berth admin
create-account`) is a second account of the same deployment. Images are pushed over /v2 with A's registry
token and read back from the destinations over /v2 (the Host header selects account and region), and the
status is read with DescribeImageReplicationStatus.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import pytest
from botocore.client import BaseClient

from tests.support.aws import basic, call, client, registry_token
from tests.support.oci import OCI_INDEX, OciClient, artifact, index_of, random_image, sha256
from tests.support.servers import BerthServer

A, B = "123456789012", "111122223333"
EAST, WEST = "us-east-1", "us-west-2"
A_KEY, A_SECRET = "AKIAREPLICATIONAAAAA", "replication-admin-a-secret-0123456789"
B_KEY, B_SECRET = "AKIAREPLICATIONBBBBB", "replication-admin-b-secret-0123456789"


@dataclass
class Deployment:
    server: BerthServer
    ecr: dict[tuple[str, str], BaseClient]  # (account, region) -> a client signed by that account's admin
    tokens: dict[str, str]

    def oci(self, account: str, region: str) -> OciClient:
        c = OciClient(self.server.url, host=f"{account}.dkr.ecr.{region}.localhost:{self.server.port}")
        c.http.headers["Authorization"] = basic(self.tokens[account])
        return c


@pytest.fixture(scope="module", params=["sqlite", "postgres"])
def deployment(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Deployment]:
    data = tmp_path_factory.mktemp("replication") / "data"
    url = request.getfixturevalue("postgres").new_database() if request.param == "postgres" else ""
    env = {"BERTH_ADMIN_ACCESS_KEY_ID": A_KEY, "BERTH_ADMIN_SECRET_ACCESS_KEY": A_SECRET,
           "BERTH_REGIONS": f"{EAST},{WEST}"}
    server = BerthServer(data, database_url=url, env=env, args=["--auth", "iam"]).start()
    try:
        cmd = [sys.executable, "-m", "berth", "admin", "create-account", B, "--access-key-id", B_KEY,
               "--secret-access-key", B_SECRET, "--data-dir", str(data)] + (["--database-url", url] if url else [])
        done = subprocess.run(cmd, capture_output=True, text=True, timeout=120,
                              env={**os.environ, **server.extra_env})  # the server's master key file too
        assert done.returncode == 0, done.stdout + done.stderr
        keys = {A: (A_KEY, A_SECRET), B: (B_KEY, B_SECRET)}
        ecr = {(acct, region): client("ecr", server.url, *keys[acct], region=region)
               for acct in (A, B) for region in (EAST, WEST)}
        tokens = {acct: registry_token(ecr[(acct, EAST)]) for acct in (A, B)}
        yield Deployment(server, ecr, tokens)
    finally:
        server.stop()


def configure(d: Deployment, account: str, region: str, rules: list[dict[str, Any]]) -> None:
    out = call(d.ecr[(account, region)], "PutReplicationConfiguration", {"replicationConfiguration": {"rules": rules}})
    assert out.error is None, out


def rule(*dests: tuple[str, str], prefixes: tuple[str, ...] = (), deletes: bool = False) -> dict[str, Any]:
    r: dict[str, Any] = {"destinations": [{"region": region, "registryId": acct} for acct, region in dests]}
    if prefixes:
        r["repositoryFilters"] = [{"filter": p, "filterType": "PREFIX_MATCH"} for p in prefixes]
    if deletes:
        r["deleteReplication"] = {"enabled": True}
    return r


def statuses(d: Deployment, name: str, digest: str, account: str = A, region: str = EAST) -> dict[tuple[str, str], Any]:
    out = call(d.ecr[(account, region)], "DescribeImageReplicationStatus",
               {"repositoryName": name, "imageId": {"imageDigest": digest}})
    assert out.error is None, out
    assert out.output is not None
    return {(s["registryId"], s["region"]): s for s in out.output["replicationStatuses"]}


def wait_for(check: Callable[[], Any], what: str, timeout: float = 60.0) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        got = check()
        if got:
            return got
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.1)


def settled(d: Deployment, name: str, digest: str, dests: list[tuple[str, str]], status: str = "COMPLETE",
            account: str = A, region: str = EAST) -> dict[tuple[str, str], Any]:
    def check() -> dict[tuple[str, str], Any] | None:
        s = statuses(d, name, digest, account, region)
        return s if all(s.get(k, {}).get("status") == status for k in dests) else None

    return wait_for(check, f"{name}@{digest} {status} at {dests}")  # type: ignore[no-any-return]


# the configuration

def test_put_replication_configuration_validates_as_ecr(deployment: Deployment) -> None:
    ecr = deployment.ecr[(A, EAST)]
    same = call(ecr, "PutReplicationConfiguration",
                {"replicationConfiguration": {"rules": [rule((A, EAST))]}})
    assert same.error == "InvalidParameterException"
    assert same.message == ("Invalid parameter at 'replicationConfiguration' failed to satisfy constraint: "
                            "'Replication destination cannot be the same as the source registry'")
    many = [rule(*[(f"{i:012d}", WEST) for i in range(j * 10, j * 10 + 10)]) for j in range(3)]  # 30 unique
    too_many = call(ecr, "PutReplicationConfiguration", {"replicationConfiguration": {"rules": many}})
    assert too_many.error == "InvalidParameterException", too_many
    assert "25 unique destinations" in too_many.message
    bad_filter = call(ecr, "PutReplicationConfiguration", {"replicationConfiguration": {"rules": [
        {"destinations": [{"region": WEST, "registryId": A}],
         "repositoryFilters": [{"filter": "Bad Prefix", "filterType": "PREFIX_MATCH"}]}]}})
    assert bad_filter.error == "InvalidParameterException", bad_filter
    bad_region = call(ecr, "PutReplicationConfiguration", {"replicationConfiguration": {"rules": [
        {"destinations": [{"region": "US_WEST", "registryId": A}]}]}})
    assert bad_region.error == "InvalidParameterException", bad_region
    # nothing stored by a refusal
    assert call(ecr, "DescribeRegistry", {}).output == {"registryId": A, "replicationConfiguration": {"rules": []}}
    good = [rule((A, WEST), prefixes=("prod/", "team-a/")), rule((B, EAST))]
    out = call(ecr, "PutReplicationConfiguration", {"replicationConfiguration": {"rules": good}})
    assert out.output == {"replicationConfiguration": {"rules": good}}
    assert call(ecr, "DescribeRegistry", {}).output == {"registryId": A, "replicationConfiguration": {"rules": good}}
    # per registry: us-west-2 of A and B have their own (empty) configuration
    assert call(deployment.ecr[(A, WEST)], "DescribeRegistry", {}).output["replicationConfiguration"] == {"rules": []}
    assert call(deployment.ecr[(B, EAST)], "DescribeRegistry", {}).output["replicationConfiguration"] == {"rules": []}
    configure(deployment, A, EAST, [])
    assert call(ecr, "DescribeRegistry", {}).output["replicationConfiguration"] == {"rules": []}


# inside one deployment

def test_a_push_is_replicated_to_another_region_with_its_referrers_and_index(deployment: Deployment) -> None:
    d = deployment
    configure(d, A, EAST, [rule((A, WEST), prefixes=("prod/",))])
    image = random_image()
    children = [random_image(1), random_image(1)]
    with d.oci(A, EAST) as src, d.oci(A, WEST) as west:
        assert src.push_image("prod/app", image, "v1").status_code == 201
        sig = artifact(image.descriptor(), "application/vnd.example.signature")
        assert src.push_image("prod/app", sig, sig.digest).status_code == 201
        for c in children:
            assert src.push_image("prod/app", c, c.digest).status_code == 201
        index = index_of(children)
        assert src.put_manifest("prod/app", "multi", index, OCI_INDEX).status_code == 201
        assert src.push_image("dev/app", random_image(), "v1").status_code == 201  # outside the filter

        s = settled(d, "prod/app", image.digest, [(A, WEST)])
        assert set(s) == {(A, WEST)} and "failureCode" not in s[(A, WEST)]
        got = west.get_manifest("prod/app", "v1")
        assert got.status_code == 200 and got.content == image.body
        for blob in image.blobs:
            assert west.get_blob("prod/app", sha256(blob)).content == blob
        # the referrer came with its subject (and by its own push)
        wait_for(lambda: west.get_manifest("prod/app", sig.digest).status_code == 200, "the signature")
        refs = west.request("GET", f"/v2/prod/app/referrers/{image.digest}").json()
        assert [m["digest"] for m in refs["manifests"]] == [sig.digest]
        # the index, with its children
        settled(d, "prod/app", sha256(index), [(A, WEST)])
        assert west.get_manifest("prod/app", "multi").content == index
        for c in children:
            assert west.get_manifest("prod/app", c.digest).content == c.body
        # outside the filter: nothing, and no status
        dev = src.get_manifest("dev/app", "v1").headers["Docker-Content-Digest"]
        assert statuses(d, "dev/app", dev) == {}
        assert west.get_manifest("dev/app", "v1").status_code == 404


def test_cross_account_needs_the_destination_registry_policy(deployment: Deployment) -> None:
    d = deployment
    configure(d, A, EAST, [rule((B, EAST), prefixes=("shared/",))])
    first = random_image()
    with d.oci(A, EAST) as src, d.oci(B, EAST) as dst:
        assert src.push_image("shared/denied", first, "v1").status_code == 201
        s = settled(d, "shared/denied", first.digest, [(B, EAST)], status="FAILED")
        assert s[(B, EAST)]["failureCode"] == "ACCESS_DENIED"
        assert dst.get_manifest("shared/denied", "v1").status_code == 404
        # B allows A to replicate, but not to create repositories: an existing one only
        only_replicate = {"Version": "2012-10-17", "Statement": [{
            "Sid": "ReplicationFromA", "Effect": "Allow", "Principal": {"AWS": f"arn:aws:iam::{A}:root"},
            "Action": ["ecr:ReplicateImage"], "Resource": f"arn:aws:ecr:{EAST}:{B}:repository/*"}]}
        out = call(d.ecr[(B, EAST)], "PutRegistryPolicy", {"policyText": json.dumps(only_replicate)})
        assert out.error is None, out
        second = random_image()
        assert src.push_image("shared/new", second, "v1").status_code == 201
        s = settled(d, "shared/new", second.digest, [(B, EAST)], status="FAILED")
        assert s[(B, EAST)]["failureCode"] == "ACCESS_DENIED"
        assert call(d.ecr[(B, EAST)], "CreateRepository", {"repositoryName": "shared/existing"}).error is None
        third = random_image()
        assert src.push_image("shared/existing", third, "v1").status_code == 201
        settled(d, "shared/existing", third.digest, [(B, EAST)])
        assert dst.get_manifest("shared/existing", "v1").content == third.body
        # with ecr:CreateRepository too, replication creates the repository
        both = json.loads(json.dumps(only_replicate))
        both["Statement"][0]["Action"] = ["ecr:ReplicateImage", "ecr:CreateRepository"]
        assert call(d.ecr[(B, EAST)], "PutRegistryPolicy", {"policyText": json.dumps(both)}).error is None
        fourth = random_image()
        assert src.push_image("shared/created", fourth, "v1").status_code == 201
        settled(d, "shared/created", fourth.digest, [(B, EAST)])
        assert dst.get_manifest("shared/created", "v1").content == fourth.body
        repos = call(d.ecr[(B, EAST)], "DescribeRepositories", {"repositoryNames": ["shared/created"]})
        assert repos.error is None, repos
        # the copy shares the source's blobs: B reads them
        for blob in fourth.blobs:
            assert dst.get_blob("shared/created", sha256(blob)).content == blob


def test_an_immutable_tag_at_the_destination_is_left_out(deployment: Deployment) -> None:
    d = deployment
    configure(d, A, EAST, [rule((A, WEST), prefixes=("locked/",))])
    assert call(d.ecr[(A, WEST)], "CreateRepository",
                {"repositoryName": "locked/app", "imageTagMutability": "IMMUTABLE"}).error is None
    theirs, ours = random_image(), random_image()
    with d.oci(A, EAST) as src, d.oci(A, WEST) as west:
        assert west.push_image("locked/app", theirs, "v1").status_code == 201
        assert src.push_image("locked/app", ours, "v1").status_code == 201
        s = settled(d, "locked/app", ours.digest, [(A, WEST)])
        assert "failureCode" not in s[(A, WEST)]
        assert west.get_manifest("locked/app", ours.digest).content == ours.body  # replicated, untagged
        assert west.get_manifest("locked/app", "v1").content == theirs.body  # the tag still names theirs


def test_not_transitive_and_nothing_deleted_at_the_destination(deployment: Deployment) -> None:
    d = deployment
    configure(d, A, EAST, [rule((A, WEST), prefixes=("chain/",))])
    configure(d, A, WEST, [rule((A, EAST), prefixes=("chain/",))])  # back to the source: would loop if transitive
    image = random_image()
    with d.oci(A, EAST) as src, d.oci(A, WEST) as west:
        assert src.push_image("chain/app", image, "v1").status_code == 201
        settled(d, "chain/app", image.digest, [(A, WEST)])
        # the copy in us-west-2 was not replicated on: it has no status of its own
        assert statuses(d, "chain/app", image.digest, A, WEST) == {}
        # a delete at the source leaves the destination alone (no deleteReplication)
        assert src.request("DELETE", f"/v2/chain/app/manifests/{image.digest}").status_code == 202
        time.sleep(1.0)
        assert west.get_manifest("chain/app", "v1").content == image.body
    configure(d, A, WEST, [])


def test_delete_replication_when_the_rule_asks(deployment: Deployment) -> None:
    d = deployment
    configure(d, A, EAST, [rule((A, WEST), prefixes=("mirror/",), deletes=True)])
    image, other = random_image(), random_image()
    with d.oci(A, EAST) as src, d.oci(A, WEST) as west:
        assert src.push_image("mirror/app", image, "v1").status_code == 201
        assert src.put_manifest("mirror/app", "v2", image.body).status_code == 201
        assert src.push_image("mirror/app", other, "keep").status_code == 201
        settled(d, "mirror/app", image.digest, [(A, WEST)])
        settled(d, "mirror/app", other.digest, [(A, WEST)])
        wait_for(lambda: sorted(west.all_tags("mirror/app")) == ["keep", "v1", "v2"], "the tags at the destination")
        assert src.request("DELETE", "/v2/mirror/app/manifests/v2").status_code == 202  # a tag
        wait_for(lambda: sorted(west.all_tags("mirror/app")) == ["keep", "v1"], "the tag removed at the destination")
        assert src.request("DELETE", f"/v2/mirror/app/manifests/{image.digest}").status_code == 202  # the image
        wait_for(lambda: west.get_manifest("mirror/app", image.digest).status_code == 404, "the image deleted")
        assert west.get_manifest("mirror/app", "keep").content == other.body


def test_image_replication_status_errors(deployment: Deployment) -> None:
    ecr = deployment.ecr[(A, EAST)]
    missing = call(ecr, "DescribeImageReplicationStatus",
                   {"repositoryName": "no/such", "imageId": {"imageTag": "v1"}})
    assert missing.error == "RepositoryNotFoundException"
    assert call(ecr, "CreateRepository", {"repositoryName": "status/empty"}).error is None
    no_image = call(ecr, "DescribeImageReplicationStatus",
                    {"repositoryName": "status/empty", "imageId": {"imageTag": "v1"}})
    assert no_image.error == "ImageNotFoundException"


def test_backfill_copies_images_pushed_before_the_rule(deployment: Deployment) -> None:
    d = deployment
    ecr = d.ecr[(A, EAST)]
    configure(d, A, EAST, [])
    old = [random_image() for _ in range(3)]
    with d.oci(A, EAST) as src, d.oci(A, WEST) as west:
        for i, image in enumerate(old):
            assert src.push_image("legacy/app", image, f"v{i}").status_code == 201
        dest = {"region": WEST, "registryId": A}
        unconfigured = call(ecr, "StartReplicationBackfill", {"destination": dest})
        assert unconfigured.error == "InvalidParameterException", unconfigured
        configure(d, A, EAST, [rule((A, WEST), prefixes=("legacy/",))])
        time.sleep(0.5)
        assert west.get_manifest("legacy/app", "v0").status_code == 404  # only pushes after the rule
        started = call(ecr, "StartReplicationBackfill", {"destination": dest})
        assert started.error is None, started
        out = started.output
        assert out is not None and out["status"] == "PREPARING" and out["destination"] == dest
        backfill = out["replicationBackfillId"]

        def finished() -> dict[str, Any] | None:
            r = call(ecr, "DescribeReplicationBackfillResults", {"replicationBackfillId": backfill}).output
            return r if r is not None and r["status"] == "COMPLETE" else None

        result = wait_for(finished, "the back-fill")
        assert result["progress"] == {"totalReplicationCount": 3, "completedReplicationCount": 3,
                                      "failedReplicationCount": 0, "failureCodes": []}
        assert sorted(r["imageId"]["imageDigest"] for r in result["results"]) == sorted(i.digest for i in old)
        assert {r["status"] for r in result["results"]} == {"COMPLETE"}
        for i, image in enumerate(old):
            assert west.get_manifest("legacy/app", f"v{i}").content == image.body
        listed = call(ecr, "ListReplicationBackfills", {}).output
        assert listed is not None and [b["replicationBackfillId"] for b in listed["backfills"]][:1] == [backfill]
        stop = call(ecr, "StopReplicationBackfill", {"replicationBackfillId": backfill})
        assert stop.error == "ReplicationBackfillInvalidStatusException", stop
        unknown = call(ecr, "DescribeReplicationBackfillResults",
                       {"replicationBackfillId": "00000000-0000-0000-0000-000000000000"})
        assert unknown.error == "ReplicationBackfillNotFoundException"


def signed_post(d: Deployment, target: str, body: dict[str, Any], region: str = EAST) -> tuple[int, dict[str, Any]]:
    """A SigV4-signed ECR call sent as raw JSON (botocore's serializer drops members its model lacks)."""
    import httpx
    from botocore.auth import SigV4Auth
    from botocore.awsrequest import AWSRequest
    from botocore.credentials import Credentials

    req = AWSRequest("POST", d.server.url + "/", data=json.dumps(body).encode(), headers={
        "X-Amz-Target": f"AmazonEC2ContainerRegistry_V20150921.{target}",
        "Content-Type": "application/x-amz-json-1.1"})
    SigV4Auth(Credentials(A_KEY, A_SECRET), "ecr", region).add_auth(req)
    r = httpx.post(req.url, content=req.body, headers=dict(req.headers.items()))
    return r.status_code, r.json()


def test_tag_filters_extension_replicates_matching_tags_only(deployment: Deployment) -> None:
    d = deployment
    config = {"rules": [{"destinations": [{"region": WEST, "registryId": A}],
                         "repositoryFilters": [{"filter": "tagged/", "filterType": "PREFIX_MATCH"}],
                         "tagFilters": [{"filter": "v*", "filterType": "WILDCARD"}]}]}
    status, out = signed_post(d, "PutReplicationConfiguration", {"replicationConfiguration": config})
    assert status == 200, out
    assert out == {"replicationConfiguration": config}
    status, out = signed_post(d, "DescribeRegistry", {})
    assert out["replicationConfiguration"] == config
    status, out = signed_post(d, "PutReplicationConfiguration", {"replicationConfiguration": {"rules": [
        {"destinations": [], "tagFilters": [{"filter": "a b", "filterType": "WILDCARD"}]}]}})
    assert status == 400 and out["__type"] == "InvalidParameterException", out
    release, nightly = random_image(), random_image()
    with d.oci(A, EAST) as src, d.oci(A, WEST) as west:
        assert src.push_image("tagged/app", nightly, "nightly").status_code == 201
        assert src.push_image("tagged/app", release, "latest").status_code == 201
        assert src.put_manifest("tagged/app", "v1.0", release.body).status_code == 201
        sig = artifact(release.descriptor(), "application/vnd.example.signature")
        assert src.push_image("tagged/app", sig, sig.digest).status_code == 201
        settled(d, "tagged/app", release.digest, [(A, WEST)])
        settled(d, "tagged/app", sig.digest, [(A, WEST)])  # the referrer follows its subject
        assert west.get_manifest("tagged/app", "v1.0").content == release.body
        assert west.all_tags("tagged/app") == ["v1.0"]  # "latest" names it at the source, but is filtered out
        assert statuses(d, "tagged/app", nightly.digest) == {}
        assert west.get_manifest("tagged/app", nightly.digest).status_code == 404
    configure(d, A, EAST, [])


def test_a_repository_created_by_replication_takes_the_destinations_replication_template(
        deployment: Deployment) -> None:
    d = deployment
    west = d.ecr[(A, WEST)]
    out = call(west, "CreateRepositoryCreationTemplate", {
        "prefix": "tmpl", "appliedFor": ["REPLICATION"], "imageTagMutability": "IMMUTABLE",
        "resourceTags": [{"Key": "made-by", "Value": "replication"}]})
    assert out.error is None, out
    configure(d, A, EAST, [rule((A, WEST), prefixes=("tmpl/", "plain/"))])
    image, other = random_image(), random_image()
    with d.oci(A, EAST) as src:
        assert src.push_image("tmpl/app", image, "v1").status_code == 201
        assert src.push_image("plain/app", other, "v1").status_code == 201
    settled(d, "tmpl/app", image.digest, [(A, WEST)])
    settled(d, "plain/app", other.digest, [(A, WEST)])
    repos = {r["repositoryName"]: r for r in west.describe_repositories()["repositories"]}
    assert repos["tmpl/app"]["imageTagMutability"] == "IMMUTABLE"  # the template's
    assert repos["plain/app"]["imageTagMutability"] == "MUTABLE"  # no template: default settings
    tags = west.list_tags_for_resource(resourceArn=repos["tmpl/app"]["repositoryArn"])["tags"]
    assert {"Key": "made-by", "Value": "replication"} in tags
    configure(d, A, EAST, [])
