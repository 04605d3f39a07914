"""End to end: skopeo pushes the real-package image to a scanOnPush repository of a real `berth serve`, the
aws CLI waits for the scan, boto3 reads the findings; ENHANCED + CONTINUOUS_SCAN picks up an advisory
imported afterwards with `berth vulndb import`, without a re-push. Both metadata backends."""

from __future__ import annotations

import base64
import hashlib
import json
import os
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import boto3
import pytest
from botocore.client import BaseClient
from botocore.exceptions import ClientError

from tests.support import osv_fixtures as fx
from tests.support.scan_images import ScanImage
from tests.support.servers import BerthServer, require_tool

KEY, SECRET, REGION = "AKIAIOSFODNN7SCANNER", "scan/secret/key/for/the/tests/000000000000", "us-east-1"


@pytest.fixture(scope="module", params=["sqlite", "postgres"])
def server(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[BerthServer]:
    base = tmp_path_factory.mktemp("scan-e2e")
    url = request.getfixturevalue("postgres").new_database() if request.param == "postgres" else ""
    srv = BerthServer(base / "data", database_url=url,
                      env={"BERTH_ADMIN_ACCESS_KEY_ID": KEY, "BERTH_ADMIN_SECRET_ACCESS_KEY": SECRET},
                      args=["--auth", "iam"]).start()
    try:
        yield srv
    finally:
        srv.stop()


@pytest.fixture(scope="module")
def ecr(server: BerthServer) -> BaseClient:
    return boto3.client("ecr", endpoint_url=server.url, region_name=REGION, aws_access_key_id=KEY,
                        aws_secret_access_key=SECRET)


def berth_cli(server: BerthServer, *args: str) -> subprocess.CompletedProcess[str]:
    cmd = [sys.executable, "-m", "berth", *args, "--data-dir", str(server.data_dir)]
    if server.database_url:
        cmd += ["--database-url", server.database_url]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=300,
                          env={**os.environ, **server.extra_env})  # the server's master key file


def push(server: BerthServer, ecr: BaseClient, image: ScanImage, repo: str, tag: str) -> None:
    require_tool("skopeo")
    token = base64.b64decode(ecr.get_authorization_token()["authorizationData"][0]["authorizationToken"]).decode()
    proc = subprocess.run(["skopeo", "copy", "--dest-tls-verify=false", "--dest-creds", token,
                           f"oci:{image.layout.root}:{image.tag}", f"docker://{server.host}/{repo}:{tag}"],
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr


def aws_wait(server: BerthServer, tmp: Path, repo: str, tag: str) -> None:
    config = tmp / "aws-config"
    config.write_text("[default]\ncli_follow_urlparam = false\n")
    env = {**os.environ, "AWS_ACCESS_KEY_ID": KEY, "AWS_SECRET_ACCESS_KEY": SECRET, "AWS_CONFIG_FILE": str(config),
           "AWS_SHARED_CREDENTIALS_FILE": str(tmp / "none")}
    proc = subprocess.run([sys.executable, "-m", "awscli", "ecr", "wait", "image-scan-complete", "--endpoint-url",
                           server.url, "--region", REGION, "--repository-name", repo, "--image-id", f"imageTag={tag}"],
                          capture_output=True, text=True, timeout=400, env=env)
    assert proc.returncode == 0, proc.stderr


def names(findings: list[dict], key: str = "name") -> set[tuple[str, str]]:
    out = set()
    for f in findings:
        if "packageVulnerabilityDetails" in f:
            d = f["packageVulnerabilityDetails"]
            out.add((d["vulnerabilityId"], d["vulnerablePackages"][0]["name"]))
        else:
            attrs = {a["key"]: a["value"] for a in f["attributes"]}
            out.add((f["name"], attrs["package_name"]))
    return out


def test_scan_on_push_basic_then_enhanced_continuous(server: BerthServer, ecr: BaseClient, scan_image: ScanImage,
                                                     tmp_path: Path) -> None:
    # before any vulnerability data: the image is read, its findings are FINDINGS_UNAVAILABLE (not an empty
    # COMPLETE), and the first import completes it without a re-scan
    early = f"scan-early-{uuid.uuid4().hex[:6]}"
    ecr.create_repository(repositoryName=early, imageScanningConfiguration={"scanOnPush": True})
    push(server, ecr, scan_image, early, "v1")
    deadline = time.monotonic() + 120
    while (out := ecr.describe_image_scan_findings(repositoryName=early, imageId={"imageTag": "v1"})
           )["imageScanStatus"]["status"] == "IN_PROGRESS":
        assert time.monotonic() < deadline, "the scan never finished"
        time.sleep(0.3)
    assert out["imageScanStatus"]["status"] == "FINDINGS_UNAVAILABLE", out["imageScanStatus"]
    assert "berth vulndb import" in out["imageScanStatus"]["description"] and "imageScanFindings" not in out
    detail = ecr.describe_images(repositoryName=early, imageIds=[{"imageTag": "v1"}])["imageDetails"][0]
    assert detail["imageScanStatus"]["status"] == "FINDINGS_UNAVAILABLE" and "imageScanFindingsSummary" not in detail

    osv = fx.write_tree(tmp_path / "osv")
    imported = berth_cli(server, "vulndb", "import", "--no-progress", str(osv))
    assert imported.returncode == 0, imported.stderr
    aws_wait(server, tmp_path, early, "v1")  # COMPLETE now, by the import's re-match
    out = ecr.describe_image_scan_findings(repositoryName=early, imageId={"imageTag": "v1"})
    assert names(out["imageScanFindings"]["findings"]) == fx.EXPECTED_OS
    assert "broken.json" in imported.stderr and "no-id.json" in imported.stderr  # named, skipped
    status = berth_cli(server, "vulndb", "status")
    assert "records: 19" in status.stdout and "Debian:12" in status.stdout, status.stdout

    repo = f"scan-basic-{uuid.uuid4().hex[:6]}"
    ecr.create_repository(repositoryName=repo, imageScanningConfiguration={"scanOnPush": True})
    push(server, ecr, scan_image, repo, "v1")
    aws_wait(server, tmp_path, repo, "v1")
    out = ecr.describe_image_scan_findings(repositoryName=repo, imageId={"imageTag": "v1"})
    assert out["imageScanStatus"]["status"] == "COMPLETE"
    found = out["imageScanFindings"]
    assert names(found["findings"]) == fx.EXPECTED_OS  # BASIC: the OS packages only
    assert found["findingSeverityCounts"] == {"CRITICAL": 1}
    assert "enhancedFindings" not in found
    detail = ecr.describe_images(repositoryName=repo, imageIds=[{"imageTag": "v1"}])["imageDetails"][0]
    assert detail["imageScanStatus"]["status"] == "COMPLETE"
    assert detail["imageScanFindingsSummary"]["findingSeverityCounts"] == {"CRITICAL": 1}
    with pytest.raises(ClientError) as e:  # the basic quota: once per image per 24 hours
        ecr.start_image_scan(repositoryName=repo, imageId={"imageTag": "v1"})
    assert e.value.response["Error"]["Code"] == "LimitExceededException"
    with pytest.raises(ClientError) as e:
        ecr.describe_image_scan_findings(repositoryName=repo, imageId={"imageTag": "nope"})
    assert e.value.response["Error"]["Code"] == "ImageNotFoundException"

    # ENHANCED, continuous for cont-*: language packages and binaries too, re-matched on vulndb changes
    rules = [{"scanFrequency": "CONTINUOUS_SCAN", "repositoryFilters": [{"filter": "scan-cont-*",
                                                                          "filterType": "WILDCARD"}]}]
    ecr.put_registry_scanning_configuration(scanType="ENHANCED", rules=rules)
    got = ecr.get_registry_scanning_configuration()["scanningConfiguration"]
    assert got["scanType"] == "ENHANCED" and got["rules"] == rules
    cont = f"scan-cont-{uuid.uuid4().hex[:6]}"
    ecr.create_repository(repositoryName=cont)
    batch = ecr.batch_get_repository_scanning_configuration(repositoryNames=[cont, repo, "missing-repo"])
    by_name = {c["repositoryName"]: c for c in batch["scanningConfigurations"]}
    assert by_name[cont]["scanFrequency"] == "CONTINUOUS_SCAN"
    assert by_name[cont]["appliedScanFilters"] == rules[0]["repositoryFilters"]
    assert by_name[repo]["scanFrequency"] == "SCAN_ON_PUSH" and by_name[repo]["scanOnPush"] is True
    assert [f["failureCode"] for f in batch["failures"]] == ["REPOSITORY_NOT_FOUND"]
    push(server, ecr, scan_image, cont, "v1")
    aws_wait(server, tmp_path, cont, "v1")
    pages, token = [], None
    while True:
        kw = {"nextToken": token} if token else {}
        page = ecr.describe_image_scan_findings(repositoryName=cont, imageId={"imageTag": "v1"}, maxResults=2, **kw)
        pages.append(page["imageScanFindings"]["enhancedFindings"])
        token = page.get("nextToken")
        if not token:
            break
    enhanced = [f for p in pages for f in p]
    assert len(pages) >= 3 and all(len(p) <= 2 for p in pages)
    assert names(enhanced) == fx.EXPECTED_OS | fx.EXPECTED_LANG
    go = next(f for f in enhanced if f["packageVulnerabilityDetails"]["vulnerabilityId"] == "CVE-2022-32149")
    pkg = go["packageVulnerabilityDetails"]["vulnerablePackages"][0]
    assert pkg["filePath"] == "/" + scan_image.go_binary and pkg["fixedInVersion"] == "0.3.8"
    assert pkg["sourceLayerHash"] == scan_image.layers()[1] and pkg["packageManager"] == "GOBINARY"
    crate = next(f for f in enhanced if f["packageVulnerabilityDetails"]["vulnerabilityId"] == "CVE-2021-25900")
    pkg = crate["packageVulnerabilityDetails"]["vulnerablePackages"][0]
    assert (pkg["name"], pkg["version"], pkg["packageManager"], pkg["fixedInVersion"]) == ("smallvec", "1.6.0",
                                                                                          "CARGO", "1.6.1")
    assert pkg["filePath"] == "/usr/local/bin/rusthello" and pkg["sourceLayerHash"] == scan_image.layers()[1]
    req = [f for f in enhanced if f["packageVulnerabilityDetails"]["vulnerablePackages"][0]["name"] == "requests"]
    assert sorted(f["packageVulnerabilityDetails"]["vulnerabilityId"] for f in req) == ["CVE-2018-18074",
                                                                                       "CVE-2023-32681"]

    # a new advisory, imported while the server runs: picked up by re-matching, no re-push
    (tmp_path / "later").mkdir()
    (tmp_path / "later" / "tar.json").write_text(json.dumps(fx.TAR_LATER))
    assert berth_cli(server, "vulndb", "import", "--no-progress", str(tmp_path / "later")).returncode == 0
    deadline = time.monotonic() + 120
    while True:
        out = ecr.describe_image_scan_findings(repositoryName=cont, imageId={"imageTag": "v1"}, maxResults=1000)
        if ("CVE-2005-2541", "tar") in names(out["imageScanFindings"]["enhancedFindings"]):
            break
        assert time.monotonic() < deadline, "the new advisory was never matched"
        time.sleep(0.5)
    # the basic repository's image was not scanned continuously: unchanged
    basic = ecr.describe_image_scan_findings(repositoryName=repo, imageId={"imageTag": "v1"}, maxResults=1000)
    assert ("CVE-2005-2541", "tar") not in names(basic["imageScanFindings"]["enhancedFindings"])


def test_sbom_cyclonedx_with_purls(server: BerthServer, ecr: BaseClient, scan_image: ScanImage,
                                   tmp_path: Path) -> None:
    from cyclonedx.schema import SchemaVersion
    from cyclonedx.validation.json import JsonStrictValidator

    repo = f"sbom-{uuid.uuid4().hex[:6]}"
    ecr.create_repository(repositoryName=repo)  # no scan: the SBOM reads the layers itself
    push(server, ecr, scan_image, repo, "v1")
    by_tag = berth_cli(server, "sbom", f"{repo}:v1")
    assert by_tag.returncode == 0, by_tag.stderr
    assert JsonStrictValidator(SchemaVersion.V1_5).validate_str(by_tag.stdout) is None
    doc = json.loads(by_tag.stdout)
    assert doc["metadata"]["component"]["version"] == scan_image.digest
    purls = {c.get("purl") for c in doc["components"]}
    libc = scan_image.dpkg["libc6"]
    assert f"pkg:deb/debian/libc6@{libc.replace('+', '%2B')}?distro=debian-12&upstream=glibc" in purls
    assert {"pkg:pypi/requests@2.19.1", "pkg:pypi/jinja2@2.10", "pkg:npm/minimist@1.2.5",
            "pkg:golang/golang.org/x/text@v0.3.7"} <= purls
    assert not any(p and ("urllib3" in p or "lodash" in p) for p in purls)  # whited out, deleted
    by_digest = berth_cli(server, "sbom", f"{repo}@{scan_image.digest}", "-o", str(tmp_path / "sbom.json"))
    assert by_digest.returncode == 0, by_digest.stderr
    assert {c.get("purl") for c in json.loads((tmp_path / "sbom.json").read_text())["components"]} == purls
    missing = berth_cli(server, "sbom", f"{repo}:nope")
    assert missing.returncode == 1 and "no image" in missing.stderr


def test_scan_statuses_and_errors(server: BerthServer, ecr: BaseClient) -> None:
    """UNSUPPORTED_IMAGE (an artifact, an image without a known OS on BASIC), FAILED (a layer that is not a
    tar), UnsupportedImageTypeException (an index), ScanNotFoundException (never scanned)."""
    from tests.integration.test_ecr_images import OCI_INDEX, OCI_MANIFEST, Img, Oci, make_image, make_index

    ecr.put_registry_scanning_configuration(scanType="BASIC", rules=[])
    basic = str(ecr.get_authorization_token()["authorizationData"][0]["authorizationToken"])
    oci = Oci(server, basic)
    repo = f"scan-status-{uuid.uuid4().hex[:6]}"
    ecr.create_repository(repositoryName=repo)
    try:
        def push(img: Img, tag: str) -> None:
            for b in img.blobs:
                oci.blob(repo, b)
            oci.manifest(repo, tag, img.body, img.media_type)

        plain, artifact = make_image(), make_image(artifact_type="application/vnd.example.thing")
        bad = make_image()
        doc = json.loads(bad.body)
        garbage = os.urandom(4096)
        doc["layers"][0].update(digest="sha256:" + hashlib.sha256(garbage).hexdigest(), size=4096)
        bad = Img(bad.config, [garbage], json.dumps(doc).encode(), OCI_MANIFEST)
        for img, tag in ((plain, "plain"), (artifact, "artifact"), (bad, "bad")):
            push(img, tag)
        oci.manifest(repo, "index", make_index([plain]), OCI_INDEX)
        with pytest.raises(ClientError) as e:
            ecr.describe_image_scan_findings(repositoryName=repo, imageId={"imageTag": "plain"})
        assert e.value.response["Error"]["Code"] == "ScanNotFoundException"
        with pytest.raises(ClientError) as e:
            ecr.start_image_scan(repositoryName=repo, imageId={"imageTag": "index"})
        assert e.value.response["Error"]["Code"] == "UnsupportedImageTypeException"
        want = {"plain": "UNSUPPORTED_IMAGE", "artifact": "UNSUPPORTED_IMAGE", "bad": "FAILED"}
        for tag in want:
            out = ecr.start_image_scan(repositoryName=repo, imageId={"imageTag": tag})
            assert out["imageScanStatus"]["status"] == "IN_PROGRESS"
        deadline = time.monotonic() + 120
        got: dict[str, str] = {}
        while got != want:
            assert time.monotonic() < deadline, got
            time.sleep(0.3)
            got = {t: ecr.describe_image_scan_findings(repositoryName=repo, imageId={"imageTag": t})
                   ["imageScanStatus"]["status"] for t in want}
        bad_status = ecr.describe_images(repositoryName=repo, imageIds=[{"imageTag": "bad"}])["imageDetails"][0]
        assert bad_status["imageScanStatus"]["status"] == "FAILED" and "imageScanFindingsSummary" not in bad_status
    finally:
        oci.client.close()


def test_sbom_pushed_as_referrer(server: BerthServer, ecr: BaseClient, scan_image: ScanImage) -> None:
    """A repository tagged berth:sbom=push gets each scanned image's SBOM as an OCI artifact with the image as
    its subject: listed by the OCI referrers API and ListImageReferrers, its blob a CycloneDX document."""
    import httpx

    repo = f"scan-sbom-ref-{uuid.uuid4().hex[:6]}"
    ecr.create_repository(repositoryName=repo, imageScanningConfiguration={"scanOnPush": True},
                          tags=[{"Key": "berth:sbom", "Value": "push"}])
    push(server, ecr, scan_image, repo, "v1")
    basic = str(ecr.get_authorization_token()["authorizationData"][0]["authorizationToken"])
    with httpx.Client(base_url=server.url, headers={"Authorization": f"Basic {basic}"}, timeout=30) as http:
        deadline = time.monotonic() + 180
        while True:
            index = http.get(f"/v2/{repo}/referrers/{scan_image.digest}").json()
            sboms = [m for m in index["manifests"] if m.get("artifactType") == "application/vnd.cyclonedx+json"]
            if sboms:
                break
            assert time.monotonic() < deadline, index
            time.sleep(0.5)
        listed = ecr.list_image_referrers(repositoryName=repo, subjectId={"imageDigest": scan_image.digest})
        assert [r["digest"] for r in listed["referrers"]] == [sboms[0]["digest"]]
        manifest = http.get(f"/v2/{repo}/manifests/{sboms[0]['digest']}",
                            headers={"Accept": "application/vnd.oci.image.manifest.v1+json"}).json()
        assert manifest["subject"]["digest"] == scan_image.digest
        doc = http.get(f"/v2/{repo}/blobs/{manifest['layers'][0]['digest']}", follow_redirects=True).json()
    assert doc["bomFormat"] == "CycloneDX"
    assert "pkg:pypi/requests@2.19.1" in {c.get("purl") for c in doc["components"]}
    findings = ecr.describe_image_scan_findings(repositoryName=repo, imageId={"imageTag": "v1"})
    assert findings["imageScanStatus"]["status"] == "COMPLETE"
