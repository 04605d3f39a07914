"""The pull-through cache against real upstreams on loopback: CNCF distribution (open, and behind htpasswd
basic auth, credentials from a Secrets Manager secret) holding images pushed with skopeo, and another Berth
with its registry token. Pulled through Berth (on SQLite and PostgreSQL) with skopeo and podman; an index
brings its children; concurrent pulls of a missing blob fetch it once (distribution's access log counts);
a tag is re-checked after the staleness; with the upstream stopped, what is cached is still served.
"""

from __future__ import annotations

import json
import os
import subprocess
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
from botocore.client import BaseClient

from tests.support import aws
from tests.support.distribution import Distribution, GatedProxy, TokenService
from tests.support.images import ContainerTool, UmociImages, run
from tests.support.oci import OCI_INDEX, Image, OciClient, artifact, dumps, random_image, sha256
from tests.support.servers import BerthServer, free_port, require_tool

pytestmark = pytest.mark.integration

STALENESS_HOURS = 0.001  # 3.6 s: the re-check and the outage are seen within a test
STALE = STALENESS_HOURS * 3600 + 0.5
USERS = {"puller": "s3cret-pw"}
ADMIN_KEY, ADMIN_SECRET = "AKIAPULLTHROUGHUPSTRM", "pull-through-upstream-secret-0123456789"


@pytest.fixture(scope="module")
def open_upstream(tmp_path_factory: pytest.TempPathFactory, umoci_images: UmociImages) -> Iterator[Distribution]:
    require_tool("skopeo")
    d = Distribution(tmp_path_factory.mktemp("open-upstream")).start()
    layout = umoci_images.layout.root
    run(["skopeo", "copy", "--dest-tls-verify=false", f"oci:{layout}:app", f"docker://{d.host}/library/app:1"])
    run(["skopeo", "copy", "--all", "--dest-tls-verify=false", f"oci:{layout}:{umoci_images.index_tag}",
         f"docker://{d.host}/library/multi:1"])
    try:
        yield d
    finally:
        d.stop()


@pytest.fixture(scope="module")
def basic_upstream(tmp_path_factory: pytest.TempPathFactory, umoci_images: UmociImages) -> Iterator[Distribution]:
    d = Distribution(tmp_path_factory.mktemp("basic-upstream"), USERS).start()
    run(["skopeo", "copy", "--dest-tls-verify=false", "--dest-creds", "puller:s3cret-pw",
         f"oci:{umoci_images.layout.root}:app", f"docker://{d.host}/team/app:1"])
    try:
        yield d
    finally:
        d.stop()


@pytest.fixture(scope="module", params=["sqlite", "postgres"])
def cache(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[BerthServer]:
    url = request.getfixturevalue("postgres").new_database() if request.param == "postgres" else ""
    srv = BerthServer(tmp_path_factory.mktemp("cache") / "data", database_url=url,
                      env={"BERTH_CREATE_ON_PUSH": "0",
                           "BERTH_PULL_THROUGH_STALENESS_HOURS": str(STALENESS_HOURS)}).start()
    try:
        yield srv
    finally:
        srv.stop()


def push_upstream(d: Distribution, name: str, image: Image, tag: str) -> None:
    """Push over distribution's POST-then-PUT upload (it has no monolithic POST)."""
    with httpx.Client(base_url=d.url, timeout=60) as c:
        for blob in image.blobs:
            r = c.post(f"/v2/{name}/blobs/uploads/")
            assert r.status_code == 202, r.text
            loc = httpx.URL(r.headers["location"])
            r = c.put(loc.copy_merge_params({"digest": sha256(blob)}), content=blob,
                      headers={"Content-Type": "application/octet-stream"})
            assert r.status_code == 201, r.text
        r = c.put(f"/v2/{name}/manifests/{tag}", content=image.body, headers={"Content-Type": image.media_type})
        assert r.status_code == 201, r.text


def ecr_of(server: BerthServer) -> BaseClient:
    return aws.client("ecr", server.url, "AKIDPULLTHROUGH", "pull-through-secret")


def rule(ecr: BaseClient, prefix: str, url: str, **extra: str) -> None:
    if aws.call(ecr, "DescribePullThroughCacheRules", {"ecrRepositoryPrefixes": [prefix]}).error is None:
        ecr.delete_pull_through_cache_rule(ecrRepositoryPrefix=prefix)
    ecr.create_pull_through_cache_rule(ecrRepositoryPrefix=prefix, upstreamRegistryUrl=url, **extra)


def skopeo_pull(server: BerthServer, ref: str, dest: Path, *extra: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["skopeo", "copy", "--src-tls-verify=false", *extra, f"docker://{server.host}/{ref}",
                           f"oci:{dest}:x"], capture_output=True, text=True, timeout=120)


def raw_manifest(host: str, ref: str, *extra: str) -> str:
    return run(["skopeo", "inspect", "--raw", "--tls-verify=false", *extra, f"docker://{host}/{ref}"]).stdout


def wait_images(ecr: BaseClient, repo: str, count: int, timeout: float = 30.0) -> list[dict]:
    deadline = time.monotonic() + timeout
    while True:
        out = aws.call(ecr, "DescribeImages", {"repositoryName": repo})
        found = out.output["imageDetails"] if out.output else []
        if len(found) >= count or time.monotonic() > deadline:
            return found
        time.sleep(0.2)


def test_rule_operations(cache: BerthServer) -> None:
    ecr = ecr_of(cache)
    sm = aws.client("secretsmanager", cache.url, "AKIDPULLTHROUGH", "pull-through-secret")
    arn = sm.create_secret(Name="ecr-pullthroughcache/ops", SecretString=json.dumps(
        {"username": "u", "accessToken": "t"}))["ARN"]
    made = ecr.create_pull_through_cache_rule(ecrRepositoryPrefix="ops", upstreamRegistryUrl="127.0.0.1:9",
                                              credentialArn=arn, upstreamRepositoryPrefix="mirror")
    assert made["ecrRepositoryPrefix"] == "ops" and made["credentialArn"] == arn
    assert made["upstreamRepositoryPrefix"] == "mirror" and made["registryId"] == "123456789012"
    assert aws.call(ecr, "CreatePullThroughCacheRule", {"ecrRepositoryPrefix": "ops",
                                                        "upstreamRegistryUrl": "127.0.0.1:9"}).code \
        == "PullThroughCacheRuleAlreadyExistsException"
    assert aws.call(ecr, "CreatePullThroughCacheRule", {"ecrRepositoryPrefix": "q1", "upstreamRegistry": "quay",
                                                        "upstreamRegistryUrl": "127.0.0.1:9"}).code \
        == "UnsupportedUpstreamRegistryException"
    assert aws.call(ecr, "CreatePullThroughCacheRule", {"ecrRepositoryPrefix": "h1",
                                                        "upstreamRegistryUrl": "http://registry.example.com"}).code \
        == "InvalidParameterException"
    assert aws.call(ecr, "CreatePullThroughCacheRule", {"ecrRepositoryPrefix": "h2",
                                                        "upstreamRegistryUrl": "not a url"}).code \
        == "InvalidParameterException"
    missing = arn.replace("ecr-pullthroughcache/ops", "ecr-pullthroughcache/none")
    assert aws.call(ecr, "CreatePullThroughCacheRule", {"ecrRepositoryPrefix": "s1", "credentialArn": missing,
                                                        "upstreamRegistryUrl": "127.0.0.1:9"}).code \
        == "SecretNotFoundException"
    listed = ecr.describe_pull_through_cache_rules(ecrRepositoryPrefixes=["ops"])["pullThroughCacheRules"]
    assert [r["upstreamRegistryUrl"] for r in listed] == ["127.0.0.1:9"]
    assert aws.call(ecr, "DescribePullThroughCacheRules", {"ecrRepositoryPrefixes": ["nope"]}).code \
        == "PullThroughCacheRuleNotFoundException"
    invalid = ecr.validate_pull_through_cache_rule(ecrRepositoryPrefix="ops")
    assert invalid["isValid"] is False and "cannot be reached" in invalid["failure"]
    upd = ecr.update_pull_through_cache_rule(ecrRepositoryPrefix="ops", credentialArn=arn)
    assert upd["credentialArn"] == arn and "updatedAt" in upd
    assert aws.call(ecr, "UpdatePullThroughCacheRule", {"ecrRepositoryPrefix": "nope", "credentialArn": arn}).code \
        == "PullThroughCacheRuleNotFoundException"
    gone = ecr.delete_pull_through_cache_rule(ecrRepositoryPrefix="ops")
    assert gone["upstreamRegistryUrl"] == "127.0.0.1:9"
    assert aws.call(ecr, "DeletePullThroughCacheRule", {"ecrRepositoryPrefix": "ops"}).code \
        == "PullThroughCacheRuleNotFoundException"


def test_pull_through_an_open_distribution(cache: BerthServer, open_upstream: Distribution, tmp_path: Path,
                                           umoci_images: UmociImages) -> None:
    ecr = ecr_of(cache)
    made = aws.call(ecr, "CreateRepositoryCreationTemplate", {
        "prefix": "open", "appliedFor": ["PULL_THROUGH_CACHE"], "imageTagMutability": "MUTABLE",
        "resourceTags": [{"Key": "cached-from", "Value": "distribution"}]})
    assert made.code in ("success", "TemplateAlreadyExistsException")
    rule(ecr, "open", open_upstream.host)  # a bare loopback host: https tried, then plain http
    assert ecr.validate_pull_through_cache_rule(ecrRepositoryPrefix="open")["isValid"] is True
    pulled = skopeo_pull(cache, "open/library/app:1", tmp_path / "app")
    assert pulled.returncode == 0, pulled.stderr
    upstream_digest = sha256(raw_manifest(open_upstream.host, "library/app:1").encode())
    assert upstream_digest == umoci_images.app.digest
    assert json.loads((tmp_path / "app" / "index.json").read_text())["manifests"][0]["digest"] == upstream_digest
    images = wait_images(ecr, "open/library/app", 1)
    assert [(i["imageDigest"], i["imageTags"]) for i in images] == [(upstream_digest, ["1"])]
    repo = ecr.describe_repositories(repositoryNames=["open/library/app"])["repositories"][0]
    assert ecr.list_tags_for_resource(resourceArn=repo["repositoryArn"])["tags"] == [
        {"Key": "cached-from", "Value": "distribution"}]
    again = skopeo_pull(cache, "open/library/app:1", tmp_path / "again")  # now from the cache
    assert again.returncode == 0, again.stderr
    by_digest = skopeo_pull(cache, f"open/library/app@{upstream_digest}", tmp_path / "by-digest")
    assert by_digest.returncode == 0, by_digest.stderr
    missing = skopeo_pull(cache, "open/library/absent:1", tmp_path / "absent")
    assert missing.returncode != 0 and "manifest unknown" in missing.stderr.lower()
    outside = skopeo_pull(cache, "elsewhere/app:1", tmp_path / "outside")
    assert outside.returncode != 0


def test_an_index_brings_its_children(cache: BerthServer, open_upstream: Distribution, tmp_path: Path,
                                      umoci_images: UmociImages) -> None:
    ecr = ecr_of(cache)
    rule(ecr, "open", open_upstream.host)
    pulled = skopeo_pull(cache, "open/library/multi:1", tmp_path / "multi", "--all")
    assert pulled.returncode == 0, pulled.stderr
    images = wait_images(ecr, "open/library/multi", 3)
    digests = {i["imageDigest"] for i in images}
    assert digests == {umoci_images.index_digest, umoci_images.amd64.digest, umoci_images.arm64.digest}


def test_podman_pulls_through(cache: BerthServer, open_upstream: Distribution, tmp_path: Path,
                              umoci_images: UmociImages) -> None:
    require_tool("podman")
    rule(ecr_of(cache), "open", open_upstream.host)
    podman = ContainerTool("podman", tmp_path / "podman")
    try:
        podman("pull", "--tls-verify=false", f"{cache.host}/open/library/app:1")
        digest = podman("image", "inspect", "--format", "{{.Digest}}", f"{cache.host}/open/library/app:1")
        assert digest == umoci_images.app.digest
    finally:
        podman.close()


def test_concurrent_pulls_fetch_a_blob_once(cache: BerthServer, open_upstream: Distribution) -> None:
    rule(ecr_of(cache), "open", open_upstream.host)
    image = random_image(layers=1, layer_size=24 * 1024 * 1024)
    name = f"library/big-{os.urandom(4).hex()}"
    push_upstream(open_upstream, name, image, "1")
    layer = sha256(image.layers[0])
    with OciClient(cache.url) as oci:
        assert oci.get_manifest(f"open/{name}", "1").status_code == 200
    bodies: list[bytes] = []

    def pull() -> None:
        with httpx.Client(timeout=60) as c:
            r = c.get(f"{cache.url}/v2/open/{name}/blobs/{layer}")
            assert r.status_code == 200, r.text
            bodies.append(r.content)

    threads = [threading.Thread(target=pull) for _ in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(bodies) == 6 and all(b == image.layers[0] for b in bodies)
    wait_images(ecr_of(cache), f"open/{name}", 1)
    assert open_upstream.served(f"GET /v2/{name}/blobs/{layer}") == 1


def test_a_tag_is_rechecked_and_an_outage_serves_the_cache(cache: BerthServer, tmp_path: Path) -> None:
    upstream = Distribution(tmp_path / "flaky").start()
    try:
        rule(ecr_of(cache), "flaky", upstream.host)
        first, second = random_image(), random_image()
        push_upstream(upstream, "app", first, "latest")
        with OciClient(cache.url) as oci:
            assert oci.get_manifest("flaky/app", "latest").headers["docker-content-digest"] == first.digest
            wait_images(ecr_of(cache), "flaky/app", 1)
            push_upstream(upstream, "app", second, "latest")
            # within the staleness the cache does not ask
            assert oci.get_manifest("flaky/app", "latest").headers["docker-content-digest"] == first.digest
            time.sleep(STALE)
            assert oci.get_manifest("flaky/app", "latest").headers["docker-content-digest"] == second.digest
            assert len(wait_images(ecr_of(cache), "flaky/app", 2)) == 2
            deadline = time.monotonic() + 30
            while [i.get("imageTags") for i in wait_images(ecr_of(cache), "flaky/app", 2)
                   if i["imageDigest"] == second.digest] != [["latest"]] and time.monotonic() < deadline:
                time.sleep(0.2)
        upstream.stop()
        time.sleep(STALE)
        pulled = skopeo_pull(cache, "flaky/app:latest", tmp_path / "outage")
        assert pulled.returncode == 0, pulled.stderr
        with OciClient(cache.url) as oci:
            assert oci.get_manifest("flaky/app", "latest").headers["docker-content-digest"] == second.digest
            assert oci.get_manifest("flaky/never", "latest").status_code == 404
    finally:
        upstream.stop()


def test_basic_auth_upstream_credentials_from_secrets_manager(cache: BerthServer, basic_upstream: Distribution,
                                                              tmp_path: Path, umoci_images: UmociImages) -> None:
    secret = json.dumps({"username": "puller", "accessToken": USERS["puller"]})
    name = f"ecr-pullthroughcache/basic-{os.urandom(3).hex()}"
    out = aws.aws_cli(cache.url, "AKIDPULLTHROUGH", "pull-through-secret", tmp_path, "secretsmanager",
                      "create-secret", "--name", name, "--secret-string", secret)
    arn = json.loads(out)["ARN"]
    prefix = f"basic{os.urandom(2).hex()}"
    # A bare host: the aws CLI v1 passes it through (it fetches values starting with http:// or https://).
    aws.aws_cli(cache.url, "AKIDPULLTHROUGH", "pull-through-secret", tmp_path, "ecr",
                "create-pull-through-cache-rule", "--ecr-repository-prefix", f"{prefix}-anon",
                "--upstream-registry-url", basic_upstream.host)
    aws.aws_cli(cache.url, "AKIDPULLTHROUGH", "pull-through-secret", tmp_path, "ecr",
                "create-pull-through-cache-rule", "--ecr-repository-prefix", prefix,
                "--upstream-registry-url", basic_upstream.host, "--credential-arn", arn)
    ecr = ecr_of(cache)
    anon = ecr.validate_pull_through_cache_rule(ecrRepositoryPrefix=f"{prefix}-anon")
    assert anon["isValid"] is False and "credentials" in anon["failure"]
    assert skopeo_pull(cache, f"{prefix}-anon/team/app:1", tmp_path / "anon").returncode != 0
    assert ecr.validate_pull_through_cache_rule(ecrRepositoryPrefix=prefix)["isValid"] is True
    pulled = skopeo_pull(cache, f"{prefix}/team/app:1", tmp_path / "basic")
    assert pulled.returncode == 0, pulled.stderr
    assert [i["imageDigest"] for i in wait_images(ecr, f"{prefix}/team/app", 1)] == [umoci_images.app.digest]


def test_the_cli_fetches_http_urls_unless_told_not_to(cache: BerthServer, open_upstream: Distribution,
                                                      tmp_path: Path) -> None:
    env = {**os.environ, "AWS_ACCESS_KEY_ID": "AKIDPULLTHROUGH", "AWS_SECRET_ACCESS_KEY": "x",
           "AWS_DEFAULT_REGION": "us-east-1", "AWS_CONFIG_FILE": str(tmp_path / "config"),
           "AWS_SHARED_CREDENTIALS_FILE": str(tmp_path / "none")}
    (tmp_path / "config").write_text("[default]\n")
    argv = [str(aws.AWS_CLI), "--endpoint-url", cache.url, "ecr", "create-pull-through-cache-rule",
            "--ecr-repository-prefix", "cliurl", "--upstream-registry-url", f"{open_upstream.url}"]
    fetched = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=60)
    assert fetched.returncode != 0  # the CLI sent distribution's answer to GET / instead of the URL
    (tmp_path / "config").write_text("[default]\ncli_follow_urlparam = false\n")
    literal = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=60)
    assert literal.returncode == 0, literal.stderr
    assert json.loads(literal.stdout)["upstreamRegistryUrl"] == open_upstream.url
    pulled = skopeo_pull(cache, "cliurl/library/app:1", tmp_path / "cli")
    assert pulled.returncode == 0, pulled.stderr


@dataclass
class BerthUpstream:
    """Another Berth (--auth iam) holding base/app:1, with an IAM user and two roles for customRoleArn."""

    server: BerthServer
    token: str  # the administrator's registry token
    caller: tuple[str, str]  # the user's access key: the secret of a customRoleArn rule
    roles: dict[str, str]  # ptc-puller (trusts the caller), ptc-refused (does not): role ARNs


@pytest.fixture(scope="module")
def berth_upstream(tmp_path_factory: pytest.TempPathFactory, umoci_images: UmociImages) -> Iterator[BerthUpstream]:
    upstream = BerthServer(tmp_path_factory.mktemp("berth-upstream") / "data", args=["--auth", "iam"], env={
        "BERTH_ADMIN_ACCESS_KEY_ID": ADMIN_KEY, "BERTH_ADMIN_SECRET_ACCESS_KEY": ADMIN_SECRET}).start()
    try:
        token = aws.registry_token(aws.client("ecr", upstream.url, ADMIN_KEY, ADMIN_SECRET))
        run(["skopeo", "copy", "--dest-tls-verify=false", "--dest-creds", f"AWS:{token}",
             f"oci:{umoci_images.layout.root}:app", f"docker://{upstream.host}/base/app:1"])
        iam = aws.client("iam", upstream.url, ADMIN_KEY, ADMIN_SECRET)
        caller = aws.create_users(iam, [aws.UserSpec("cache-caller", {"Version": "2012-10-17", "Statement": [
            {"Effect": "Allow", "Action": "sts:AssumeRole", "Resource": "*"}]})])["cache-caller"]
        caller_arn = iam.get_user(UserName="cache-caller")["User"]["Arn"]
        roles = {}
        for name, trusted in (("ptc-puller", caller_arn), ("ptc-refused", caller_arn.replace("cache-caller", "other"))):
            roles[name] = iam.create_role(RoleName=name, AssumeRolePolicyDocument=json.dumps({
                "Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Principal": {"AWS": trusted},
                                                        "Action": "sts:AssumeRole"}]}))["Role"]["Arn"]
            iam.put_role_policy(RoleName=name, PolicyName="pull", PolicyDocument=json.dumps({
                "Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Resource": "*", "Action": [
                    "ecr:BatchGetImage", "ecr:GetDownloadUrlForLayer", "ecr:BatchCheckLayerAvailability",
                    "ecr:GetAuthorizationToken"]}]}))
        yield BerthUpstream(upstream, token, caller, roles)
    finally:
        upstream.stop()


def test_another_berth_as_upstream_with_its_token(cache: BerthServer, berth_upstream: BerthUpstream, tmp_path: Path,
                                                  umoci_images: UmociImages) -> None:
    upstream, token = berth_upstream.server, berth_upstream.token
    sm = aws.client("secretsmanager", cache.url, "AKIDPULLTHROUGH", "pull-through-secret")
    arn = sm.create_secret(Name=f"ecr-pullthroughcache/berth-{upstream.port}", SecretString=json.dumps(
        {"username": "AWS", "accessToken": token}))["ARN"]
    rule(ecr_of(cache), f"peer{upstream.port}", f"http://{upstream.host}", credentialArn=arn)
    pulled = skopeo_pull(cache, f"peer{upstream.port}/base/app:1", tmp_path / "peer")
    assert pulled.returncode == 0, pulled.stderr
    assert [i["imageDigest"] for i in wait_images(ecr_of(cache), f"peer{upstream.port}/base/app", 1)] \
        == [umoci_images.app.digest]
    # a referrer pushed to the upstream after the image was cached: from its referrers API
    subject = {"mediaType": "application/vnd.oci.image.manifest.v1+json", "digest": umoci_images.app.digest,
               "size": len(raw_manifest(cache.host, f"peer{upstream.port}/base/app:1").encode())}
    sig = artifact(subject, "application/vnd.example.signature")
    with OciClient(upstream.url) as up:
        up.http.auth = httpx.BasicAuth("AWS", token)
        for blob in sig.blobs:
            assert up.push_blob("base/app", blob).status_code == 201
        assert up.put_manifest("base/app", sig.digest, sig.body).status_code == 201
    there = {e["digest"] for e in referrers_of(upstream, "base/app", umoci_images.app.digest, ("AWS", token))}
    assert sig.digest in there  # (the other backend's run pushed one too)
    listed = referrers_of(cache, f"peer{upstream.port}/base/app", umoci_images.app.digest)
    assert {e["digest"] for e in listed} == there
    assert {e.get("artifactType") for e in listed} == {"application/vnd.example.signature"}


def test_nothing_listens_on_the_upstream_port(cache: BerthServer) -> None:
    rule(ecr_of(cache), "dead", f"127.0.0.1:{free_port()}")
    with OciClient(cache.url) as oci:
        r = oci.get_manifest("dead/app", "1")
        assert r.status_code == 404 and "MANIFEST_UNKNOWN" in r.text


PULL = ["ecr:BatchGetImage", "ecr:GetDownloadUrlForLayer", "ecr:BatchCheckLayerAvailability"]


def test_importing_needs_its_iam_actions(tmp_path: Path, open_upstream: Distribution,
                                         umoci_images: UmociImages) -> None:
    srv = BerthServer(tmp_path / "iam", env={"BERTH_ADMIN_ACCESS_KEY_ID": ADMIN_KEY,
                                             "BERTH_ADMIN_SECRET_ACCESS_KEY": ADMIN_SECRET,
                                             "BERTH_PULL_THROUGH_STALENESS_HOURS": str(STALENESS_HOURS)},
                      args=["--auth", "iam"]).start()
    try:
        aws.client("ecr", srv.url, ADMIN_KEY, ADMIN_SECRET).create_pull_through_cache_rule(
            ecrRepositoryPrefix="open", upstreamRegistryUrl=open_upstream.host)
        iam = aws.client("iam", srv.url, ADMIN_KEY, ADMIN_SECRET)
        users = aws.create_users(iam, [
            aws.UserSpec("puller", {"Version": "2012-10-17", "Statement": [
                {"Effect": "Allow", "Action": [*PULL, "ecr:GetAuthorizationToken"], "Resource": "*"}]}),
            aws.UserSpec("importer", {"Version": "2012-10-17", "Statement": [
                {"Effect": "Allow", "Action": [*PULL, "ecr:GetAuthorizationToken", "ecr:BatchImportUpstreamImage",
                                               "ecr:CreateRepository"], "Resource": "*"}]}),
            # the import actions only when Berth calls them on the user's behalf (aws:CalledVia, issue 10)
            aws.UserSpec("via-importer", {"Version": "2012-10-17", "Statement": [
                {"Effect": "Allow", "Action": [*PULL, "ecr:GetAuthorizationToken"], "Resource": "*"},
                {"Effect": "Allow", "Action": ["ecr:BatchImportUpstreamImage", "ecr:CreateRepository"],
                 "Resource": "*",
                 "Condition": {"ForAnyValue:StringEquals": {"aws:CalledVia": "ecr.amazonaws.com"}}}]})])
        tokens = {u: aws.registry_token(aws.client("ecr", srv.url, *users[u])) for u in users}
        denied = skopeo_pull(srv, "open/library/app:1", tmp_path / "denied", "--src-creds",
                             f"AWS:{tokens['puller']}")
        assert denied.returncode != 0 and "denied" in denied.stderr.lower()
        bgi = {"repositoryName": "open/library/app", "imageIds": [{"imageTag": "1"}]}
        assert aws.call(aws.client("ecr", srv.url, *users["puller"]), "BatchGetImage", bgi).code \
            == "AccessDeniedException"
        allowed = skopeo_pull(srv, "open/library/app:1", tmp_path / "allowed", "--src-creds",
                              f"AWS:{tokens['importer']}")
        assert allowed.returncode == 0, allowed.stderr
        wait_images(aws.client("ecr", srv.url, ADMIN_KEY, ADMIN_SECRET), "open/library/app", 1)
        time.sleep(STALE)  # once cached, pulling needs only the pull actions, also when the tag is due a check
        cached = skopeo_pull(srv, "open/library/app:1", tmp_path / "cached", "--src-creds",
                             f"AWS:{tokens['puller']}")
        assert cached.returncode == 0, cached.stderr
        got = aws.client("ecr", srv.url, *users["puller"]).batch_get_image(**bgi)
        assert [i["imageId"]["imageDigest"] for i in got["images"]] == [umoci_images.app.digest]
        via = skopeo_pull(srv, "open/library/multi:1", tmp_path / "via", "--src-creds",
                          f"AWS:{tokens['via-importer']}")
        assert via.returncode == 0, via.stderr
        via_ecr = aws.client("ecr", srv.url, *users["via-importer"])
        assert aws.call(via_ecr, "CreateRepository", {"repositoryName": "open/direct"}).code == "AccessDeniedException"
    finally:
        srv.stop()


def test_several_server_processes_share_an_import(tmp_path: Path, open_upstream: Distribution,
                                                  umoci_images: UmociImages) -> None:
    """With --workers 2 the manifest and the blobs of one pull may reach different processes."""
    srv = BerthServer(tmp_path / "workers", env={"BERTH_CREATE_ON_PUSH": "0"}, args=["--workers", "2"]).start()
    try:
        rule(ecr_of(srv), "open", open_upstream.host)
        for i in range(3):
            pulled = skopeo_pull(srv, "open/library/multi:1", tmp_path / f"multi{i}", "--all")
            assert pulled.returncode == 0, pulled.stderr
        pulled = skopeo_pull(srv, "open/library/app:1", tmp_path / "app")
        assert pulled.returncode == 0, pulled.stderr
        assert len(wait_images(ecr_of(srv), "open/library/multi", 3)) == 3
    finally:
        srv.stop()


def test_a_blob_streams_to_the_client_before_it_is_stored(cache: BerthServer, open_upstream: Distribution) -> None:
    """The upstream (behind a proxy that holds its bytes after 4 MiB) has sent only part of a 24 MiB layer,
    yet the client already has bytes of it; the blob is stored only once the rest arrives."""
    image = random_image(layers=1, layer_size=24 * 1024 * 1024)
    name = f"library/slow-{os.urandom(4).hex()}"
    push_upstream(open_upstream, name, image, "1")
    proxy = GatedProxy(open_upstream.port, limit=4 * 1024 * 1024)
    try:
        prefix = f"gated{proxy.port}"
        rule(ecr_of(cache), prefix, proxy.host)
        layer = sha256(image.layers[0])
        ecr = ecr_of(cache)
        with httpx.Client(base_url=cache.url, timeout=60) as c:
            assert c.get(f"/v2/{prefix}/{name}/manifests/1").status_code == 200
            url = f"/v2/{prefix}/{name}/blobs/{layer}"
            with c.stream("GET", url) as r, c.stream("GET", url, headers={"Range": "bytes=1-"}) as r2:
                assert r.status_code == 200 and r.headers["content-length"] == str(len(image.layers[0]))
                assert r2.status_code == 206  # a second reader of the same fill, while it is in progress
                chunks, chunks2 = r.iter_raw(), r2.iter_raw()
                head, head2 = next(chunks), next(chunks2)
                assert head and image.layers[0].startswith(head) and image.layers[0][1:].startswith(head2)
                check = ecr.batch_check_layer_availability(repositoryName=f"{prefix}/{name}", layerDigests=[layer])
                assert [x["layerAvailability"] for x in check["layers"]] == ["UNAVAILABLE"]
                proxy.release()
                body = head + b"".join(chunks)
                body2 = head2 + b"".join(chunks2)
            assert body == image.layers[0] and body2 == image.layers[0][1:]
        assert [i["imageDigest"] for i in wait_images(ecr, f"{prefix}/{name}", 1)] == [image.digest]
        assert open_upstream.served(f"GET /v2/{name}/blobs/{layer}") == 1
        check = ecr.batch_check_layer_availability(repositoryName=f"{prefix}/{name}", layerDigests=[layer])
        assert [x["layerAvailability"] for x in check["layers"]] == ["AVAILABLE"]
    finally:
        proxy.close()


def test_an_upstream_blob_that_does_not_match_its_digest_is_cut_and_not_stored(
        cache: BerthServer, open_upstream: Distribution) -> None:
    """distribution serves whatever its file holds: with the last byte of a layer's file changed, a client
    already streaming the layer through the cache (the proxy holds the rest back until then) gets a cut
    connection, never the whole wrong body; nothing is stored, so the next GET fetches it again."""
    image = random_image(layers=1, layer_size=4 * 1024 * 1024)
    name = f"library/bad-{os.urandom(4).hex()}"
    push_upstream(open_upstream, name, image, "1")
    layer = sha256(image.layers[0])
    stored = open_upstream.root / "data/docker/registry/v2/blobs/sha256" / layer[7:9] / layer[7:] / "data"
    wrong = image.layers[0][:-1] + bytes([image.layers[0][-1] ^ 0xFF])
    stored.write_bytes(wrong)
    proxy = GatedProxy(open_upstream.port, limit=2 * 1024 * 1024)
    try:
        prefix = f"bad{proxy.port}"
        rule(ecr_of(cache), prefix, proxy.host)
        ecr = ecr_of(cache)
        url = f"/v2/{prefix}/{name}/blobs/{layer}"
        with httpx.Client(base_url=cache.url, timeout=60) as c:
            assert c.get(f"/v2/{prefix}/{name}/manifests/1").status_code == 200
            with c.stream("GET", url) as r:
                assert r.status_code == 200
                chunks = r.iter_raw()
                got = next(chunks)
                proxy.release()
                with pytest.raises(httpx.RemoteProtocolError):  # cut short of its Content-Length
                    for chunk in chunks:
                        got += chunk
            assert len(got) < len(wrong) and wrong.startswith(got)
            with c.stream("GET", url) as r:  # a new fill, failing again: cut, or refused before the status
                if r.status_code == 200:
                    with pytest.raises(httpx.RemoteProtocolError):
                        r.read()
                else:
                    assert r.status_code == 404 and json.loads(r.read())["errors"][0]["code"] == "BLOB_UNKNOWN"
        assert open_upstream.served(f"GET /v2/{name}/blobs/{layer}") >= 2  # the wrong bytes were not kept
        check = ecr.batch_check_layer_availability(repositoryName=f"{prefix}/{name}", layerDigests=[layer])
        assert all(x["layerAvailability"] != "AVAILABLE" for x in check["layers"])
        assert ecr.describe_images(repositoryName=f"{prefix}/{name}")["imageDetails"] == []
    finally:
        proxy.close()


def test_a_token_authenticated_upstream(cache: BerthServer, tmp_path: Path, umoci_images: UmociImages) -> None:
    """distribution with `auth: token` (Docker Hub's scheme): 401 with a Bearer challenge, a token from the
    realm for Basic credentials, then the pull with that token."""
    tokens = TokenService(tmp_path / "tokens", USERS)
    upstream = Distribution(tmp_path / "token-upstream", token=tokens).start()
    try:
        run(["skopeo", "copy", "--dest-tls-verify=false", "--dest-creds", "puller:s3cret-pw",
             f"oci:{umoci_images.layout.root}:app", f"docker://{upstream.host}/team/app:1"])
        before = tokens.issued
        sm = aws.client("secretsmanager", cache.url, "AKIDPULLTHROUGH", "pull-through-secret")
        arn = sm.create_secret(Name=f"ecr-pullthroughcache/token-{upstream.port}", SecretString=json.dumps(
            {"username": "puller", "accessToken": USERS["puller"]}))["ARN"]
        prefix = f"tok{upstream.port}"
        rule(ecr_of(cache), prefix, upstream.host, credentialArn=arn)
        assert ecr_of(cache).validate_pull_through_cache_rule(ecrRepositoryPrefix=prefix)["isValid"] is True
        pulled = skopeo_pull(cache, f"{prefix}/team/app:1", tmp_path / "token")
        assert pulled.returncode == 0, pulled.stderr
        assert [i["imageDigest"] for i in wait_images(ecr_of(cache), f"{prefix}/team/app", 1)] \
            == [umoci_images.app.digest]
        assert tokens.issued > before  # Berth asked the realm for a token
    finally:
        upstream.stop()
        tokens.close()


def test_fifty_rules_per_registry(tmp_path: Path) -> None:
    srv = BerthServer(tmp_path / "limits").start()
    try:
        ecr = ecr_of(srv)
        for i in range(50):
            ecr.create_pull_through_cache_rule(ecrRepositoryPrefix=f"r{i:02d}", upstreamRegistryUrl="127.0.0.1:9")
        assert aws.call(ecr, "CreatePullThroughCacheRule", {"ecrRepositoryPrefix": "r50",
                                                            "upstreamRegistryUrl": "127.0.0.1:9"}).code \
            == "LimitExceededException"
        page = ecr.describe_pull_through_cache_rules(maxResults=30)
        rest = ecr.describe_pull_through_cache_rules(maxResults=30, nextToken=page["nextToken"])
        assert len(page["pullThroughCacheRules"]) + len(rest["pullThroughCacheRules"]) == 50
        assert "nextToken" not in rest
    finally:
        srv.stop()


def test_a_crashed_fill_leaves_no_spool(tmp_path: Path, open_upstream: Distribution) -> None:
    srv = BerthServer(tmp_path / "spool").start()
    try:
        spool = srv.data_dir / "pullthrough-spool"
        spool.mkdir()
        dead = subprocess.Popen(["true"])
        dead.wait()
        (spool / f"sha256-{'0' * 64}.{dead.pid}.part").write_bytes(b"partial")
        rule(ecr_of(srv), "open", open_upstream.host)
        pulled = skopeo_pull(srv, "open/library/app:1", tmp_path / "app")
        assert pulled.returncode == 0, pulled.stderr
        wait_images(ecr_of(srv), "open/library/app", 1)  # every fill of the import is over
        assert list(spool.iterdir()) == []
    finally:
        srv.stop()


def test_the_last_check_survives_a_restart(tmp_path: Path) -> None:
    """The time a tag was last checked is in the database: a restarted server (or another process) does
    not ask the upstream again before the staleness is over."""
    upstream = Distribution(tmp_path / "up").start()
    srv = BerthServer(tmp_path / "restart", env={"BERTH_PULL_THROUGH_STALENESS_HOURS": "0.05"}).start()
    try:
        rule(ecr_of(srv), "up", upstream.host)
        first, second = random_image(), random_image()
        push_upstream(upstream, "app", first, "latest")
        with OciClient(srv.url) as oci:
            assert oci.get_manifest("up/app", "latest").headers["docker-content-digest"] == first.digest
        wait_images(ecr_of(srv), "up/app", 1)
        srv.restart()
        push_upstream(upstream, "app", second, "latest")
        with OciClient(srv.url) as oci:
            assert oci.get_manifest("up/app", "latest").headers["docker-content-digest"] == first.digest
    finally:
        srv.stop()
        upstream.stop()


def test_batch_get_image_imports_from_the_upstream(cache: BerthServer, open_upstream: Distribution,
                                                   umoci_images: UmociImages) -> None:
    """ECR's BatchGetImage on a cached prefix takes the /v2 pull's path: a miss is fetched from the upstream
    (the repository created), then served from the cache; the upstream's refusals in ECR's shapes."""
    ecr = ecr_of(cache)
    rule(ecr, "bgi", open_upstream.host)
    got = ecr.batch_get_image(repositoryName="bgi/library/app", imageIds=[{"imageTag": "1"}])
    assert got["failures"] == []
    assert [(i["imageId"], i["repositoryName"]) for i in got["images"]] == [
        ({"imageDigest": umoci_images.app.digest, "imageTag": "1"}, "bgi/library/app")]
    assert sha256(got["images"][0]["imageManifest"].encode()) == umoci_images.app.digest
    assert [i["imageDigest"] for i in wait_images(ecr, "bgi/library/app", 1)] == [umoci_images.app.digest]
    again = ecr.batch_get_image(repositoryName="bgi/library/app", imageIds=[
        {"imageDigest": umoci_images.app.digest, "imageTag": "1"}, {"imageTag": "absent"}])
    assert [i["imageId"]["imageDigest"] for i in again["images"]] == [umoci_images.app.digest]
    assert [(f["imageId"], f["failureCode"]) for f in again["failures"]] == [({"imageTag": "absent"},
                                                                             "ImageNotFound")]
    missing = ecr.batch_get_image(repositoryName="bgi/library/nothing", imageIds=[{"imageTag": "1"}])
    assert missing["images"] == [] and [f["failureCode"] for f in missing["failures"]] == ["ImageNotFound"]
    assert aws.call(ecr, "BatchGetImage", {"repositoryName": "nobgi/app", "imageIds": [{"imageTag": "1"}]}).code \
        == "RepositoryNotFoundException"
    rule(ecr, "bgidead", f"127.0.0.1:{free_port()}")
    dead = ecr.batch_get_image(repositoryName="bgidead/app", imageIds=[{"imageTag": "1"}])
    assert [f["failureCode"] for f in dead["failures"]] == ["UpstreamUnavailable"]
    sm = aws.client("secretsmanager", cache.url, "AKIDPULLTHROUGH", "pull-through-secret")
    name = f"ecr-pullthroughcache/bgi-{os.urandom(3).hex()}"
    arn = sm.create_secret(Name=name, SecretString=json.dumps({"username": "u", "accessToken": "t"}))["ARN"]
    rule(ecr, "bgisecret", open_upstream.host, credentialArn=arn)
    sm.put_secret_value(SecretId=name, SecretString="not json")
    broken = aws.call(ecr, "BatchGetImage", {"repositoryName": "bgisecret/library/app",
                                             "imageIds": [{"imageTag": "1"}]})
    assert broken.code == "UnableToGetUpstreamImageException", broken


SBOM = "application/vnd.example.sbom+json"


def referrers_of(server: BerthServer, name: str, digest: str, auth: tuple[str, str] | None = None) -> list[dict]:
    r = httpx.get(f"{server.url}/v2/{name}/referrers/{digest}", auth=auth, timeout=60)
    assert r.status_code == 200, r.text
    return r.json()["manifests"]


def test_referrers_from_a_distribution_upstream_by_the_tag_schema(cache: BerthServer, tmp_path: Path) -> None:
    """distribution 2.8 has no referrers API (404): the referrers come from its `sha256-<hex>` index, are
    stored (then listed locally, also by ListImageReferrers), and are still listed with the upstream gone."""
    upstream = Distribution(tmp_path / "refs").start()
    try:
        image = random_image()
        push_upstream(upstream, "app", image, "1")
        sbom = artifact(image.descriptor(), SBOM, annotations={"org.example": "sbom"})
        push_upstream(upstream, "app", sbom, sbom.digest)
        fallback = Image(b"{}", [], OCI_INDEX, dumps({"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": [
            sbom.descriptor(artifactType=SBOM, annotations={"org.example": "sbom"})]}))
        r = httpx.put(f"{upstream.url}/v2/app/manifests/{image.digest.replace(':', '-')}", content=fallback.body,
                      headers={"Content-Type": OCI_INDEX})
        assert r.status_code == 201, r.text
        assert httpx.get(f"{upstream.url}/v2/app/referrers/{image.digest}").status_code == 404
        prefix = f"refs{upstream.port}"
        ecr = ecr_of(cache)
        rule(ecr, prefix, upstream.host)
        with OciClient(cache.url) as oci:
            assert oci.get_manifest(f"{prefix}/app", "1").status_code == 200
        wait_images(ecr, f"{prefix}/app", 1)
        listed = referrers_of(cache, f"{prefix}/app", image.digest)
        assert [(e["digest"], e.get("artifactType"), e.get("annotations")) for e in listed] == [
            (sbom.digest, SBOM, {"org.example": "sbom"})]
        assert {i["imageDigest"] for i in wait_images(ecr, f"{prefix}/app", 2)} == {image.digest, sbom.digest}
        with OciClient(cache.url) as oci:  # the referrer and its blob are served from the cache
            assert oci.get_manifest(f"{prefix}/app", sbom.digest).content == sbom.body
            assert oci.get_blob(f"{prefix}/app", sha256(sbom.layers[0])).content == sbom.layers[0]
        by_ecr = ecr.list_image_referrers(repositoryName=f"{prefix}/app", subjectId={"imageDigest": image.digest})
        assert [x["digest"] for x in by_ecr["referrers"]] == [sbom.digest]
        upstream.stop()
        time.sleep(STALE)
        assert [e["digest"] for e in referrers_of(cache, f"{prefix}/app", image.digest)] == [sbom.digest]
    finally:
        upstream.stop()


def test_a_custom_role_on_a_berth_upstream(cache: BerthServer, berth_upstream: BerthUpstream, tmp_path: Path,
                                           umoci_images: UmociImages) -> None:
    """customRoleArn: Berth assumes the role on the upstream's STS with the access key in the rule's secret, then
    pulls with the upstream's ECR token for the role; a role whose trust policy refuses the caller fails cleanly."""
    upstream, roles = berth_upstream.server, berth_upstream.roles
    sm = aws.client("secretsmanager", cache.url, "AKIDPULLTHROUGH", "pull-through-secret")
    arn = sm.create_secret(Name=f"ecr-pullthroughcache/role-{upstream.port}", SecretString=json.dumps(
        {"username": berth_upstream.caller[0], "accessToken": berth_upstream.caller[1]}))["ARN"]
    ecr = ecr_of(cache)
    prefix = f"role{upstream.port}"
    bad = {"ecrRepositoryPrefix": f"{prefix}-bad", "upstreamRegistryUrl": upstream.host, "credentialArn": arn}
    assert aws.call(ecr, "CreatePullThroughCacheRule", {**bad, "customRoleArn": "arn:aws:iam::12:role/x"}).code \
        == "InvalidParameterException"
    # a role but no access key to assume it with: stored (ECR checks a rule's shape when it is written), and
    # ValidatePullThroughCacheRule and the pulls say why it cannot work
    rule(ecr, f"{prefix}-nokey", upstream.host, customRoleArn=roles["ptc-puller"])
    checked = ecr.validate_pull_through_cache_rule(ecrRepositoryPrefix=f"{prefix}-nokey")
    assert checked["isValid"] is False and "no credentialArn" in checked["failure"], checked
    got = aws.call(ecr, "BatchGetImage", {"repositoryName": f"{prefix}-nokey/base/app",
                                          "imageIds": [{"imageTag": "1"}]})
    assert got.code == "UnableToGetUpstreamImageException", got
    rule(ecr, prefix, upstream.host, credentialArn=arn, customRoleArn=roles["ptc-puller"])
    assert ecr.validate_pull_through_cache_rule(ecrRepositoryPrefix=prefix)["isValid"] is True
    pulled = skopeo_pull(cache, f"{prefix}/base/app:1", tmp_path / "role")
    assert pulled.returncode == 0, pulled.stderr
    assert [i["imageDigest"] for i in wait_images(ecr, f"{prefix}/base/app", 1)] == [umoci_images.app.digest]
    refused = f"{prefix}-refused"
    rule(ecr, refused, upstream.host, credentialArn=arn, customRoleArn=roles["ptc-refused"])
    checked = ecr.validate_pull_through_cache_rule(ecrRepositoryPrefix=refused)
    assert checked["isValid"] is False and "AccessDenied" in checked["failure"], checked
    got = aws.call(ecr, "BatchGetImage", {"repositoryName": f"{refused}/base/app", "imageIds": [{"imageTag": "1"}]})
    assert got.code == "UnableToGetUpstreamImageException", got
    with OciClient(cache.url) as oci:
        r = oci.get_manifest(f"{refused}/base/app", "1")
        assert r.status_code == 404 and "MANIFEST_UNKNOWN" in r.text
