"""Managed signing, end to end: PutSigningConfiguration selects repositories, Berth signs each push there (a
job) in the sigstore/cosign format, and Debian 13's skopeo, with a `sigstoreSigned` policy holding the key
`berth signing public-key` prints, pulls a signed image, refuses an unsigned one, and refuses a tag moved
to a manifest signed by no one; the Notary Project signature beside it is verified by the real `notation`
CLI (Debian unstable's) with the certificate `berth signing certificate` prints. Both metadata backends."""

from __future__ import annotations

import asyncio
import base64
import json
import subprocess
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import boto3
import pytest
from botocore.client import BaseClient
from botocore.exceptions import ClientError

from tests.integration.scanning.test_scan_e2e import KEY, REGION, SECRET, berth_cli
from tests.support import trixie_debs
from tests.support.images import UmociImages
from tests.support.servers import BerthServer, require_tool, unavailable
from tests.support.trixie_skopeo import argv

PROFILE = "berthprofile"
ARN = f"arn:aws:signer:{REGION}:123456789012:/signing-profiles/{PROFILE}"


@pytest.fixture(scope="module", params=["sqlite", "postgres"])
def server(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[BerthServer]:
    base = tmp_path_factory.mktemp("signing")
    url = request.getfixturevalue("postgres").new_database() if request.param == "postgres" else ""
    srv = BerthServer(base / "data", database_url=url,
                      env={"BERTH_ADMIN_ACCESS_KEY_ID": KEY, "BERTH_ADMIN_SECRET_ACCESS_KEY": SECRET},
                      args=["--auth", "iam"]).start()
    try:
        yield srv
    finally:
        srv.stop()


@pytest.fixture(scope="session")
def notation(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The Notary Project's `notation` CLI: Debian unstable's package (1.3.2; in no stable release), unpacked.
    Its only dependency is libc6 >= 2.34, so it runs on Debian 12 as it is."""
    require_tool("apt-get", "dpkg-deb")
    try:
        root = trixie_debs.unpack(tmp_path_factory.mktemp("notation") / "root", ("notation",), suite="sid")
    except (subprocess.SubprocessError, OSError) as e:
        unavailable(f"Debian unstable's notation could not be fetched: {e}")
        raise
    return root / "usr/bin/notation"


@pytest.fixture(scope="session")
def trixie_skopeo(trixie_root: Path) -> list[str]:
    return argv(trixie_root)  # unpacked in the scanning tests' shared Debian 13 root (conftest.py)


async def _stored_private_key(server: BerthServer) -> str:
    sql = "SELECT private_key FROM signing_profiles"
    if server.database_url:
        import asyncpg

        conn = await asyncpg.connect(server.database_url)
        try:
            return str(await conn.fetchval(sql))
        finally:
            await conn.close()
    import sqlite3

    with sqlite3.connect(server.data_dir / "berth.db") as db:
        return str(db.execute(sql).fetchone()[0])


def test_signed_pull_unsigned_refused_moved_tag_refused(server: BerthServer, umoci_images: UmociImages,
                                                        trixie_skopeo: list[str], notation: Path,
                                                        tmp_path: Path) -> None:
    ecr: BaseClient = boto3.client("ecr", endpoint_url=server.url, region_name=REGION, aws_access_key_id=KEY,
                                   aws_secret_access_key=SECRET)
    with pytest.raises(ClientError) as e:
        ecr.get_signing_configuration()
    assert e.value.response["Error"]["Code"] == "SigningConfigurationNotFoundException"
    rules = [{"signingProfileArn": ARN,
              "repositoryFilters": [{"filter": "signed-*", "filterType": "WILDCARD_MATCH"}]}]
    put = ecr.put_signing_configuration(signingConfiguration={"rules": rules})
    assert put["signingConfiguration"]["rules"] == rules
    stored = asyncio.run(_stored_private_key(server))
    assert stored.startswith("enc1:") and "PRIVATE KEY" not in stored  # sealed with the master key at rest
    assert ecr.get_signing_configuration()["signingConfiguration"]["rules"] == rules
    signed, plain = f"signed-{uuid.uuid4().hex[:6]}", f"plain-{uuid.uuid4().hex[:6]}"
    token = base64.b64decode(ecr.get_authorization_token()["authorizationData"][0]["authorizationToken"]).decode()
    layout = umoci_images.layout.root

    def push(tag: str, repo: str, dest_tag: str) -> None:
        proc = subprocess.run(["skopeo", "copy", "--dest-tls-verify=false", "--dest-creds", token,
                               f"oci:{layout}:{tag}", f"docker://{server.host}/{repo}:{dest_tag}"],
                              capture_output=True, text=True, timeout=300)
        assert proc.returncode == 0, proc.stderr

    def status(repo: str, tag: str) -> list[dict]:
        return ecr.describe_image_signing_status(repositoryName=repo, imageId={"imageTag": tag})["signingStatuses"]

    for repo in (signed, plain):
        ecr.create_repository(repositoryName=repo)
        push(umoci_images.app.tag, repo, "v1")
    deadline = time.monotonic() + 120
    while [s["status"] for s in status(signed, "v1")] != ["COMPLETE"]:
        assert time.monotonic() < deadline, status(signed, "v1")
        time.sleep(0.3)
    assert status(signed, "v1")[0]["signingProfileArn"] == ARN
    assert status(plain, "v1") == []
    sig_tag = "sha256-" + umoci_images.app.digest.split(":", 1)[1] + ".sig"
    tags = ecr.list_images(repositoryName=signed)["imageIds"]
    assert sig_tag in {t.get("imageTag") for t in tags}

    pub = berth_cli(server, "signing", "public-key", PROFILE)
    assert pub.returncode == 0 and "BEGIN PUBLIC KEY" in pub.stdout, pub.stderr
    (tmp_path / "berth.pub").write_text(pub.stdout)
    policy = {"default": [{"type": "reject"}], "transports": {"docker": {server.host: [
        {"type": "sigstoreSigned", "keyPath": str(tmp_path / "berth.pub"),
         "signedIdentity": {"type": "matchRepository"}}]}}}
    (tmp_path / "policy.json").write_text(json.dumps(policy))
    regd = tmp_path / "registries.d"
    regd.mkdir()
    (regd / "berth.yaml").write_text(f"docker:\n  {server.host}:\n    use-sigstore-attachments: true\n")

    def pull(repo: str, tag: str) -> subprocess.CompletedProcess[str]:
        dest = tmp_path / f"out-{uuid.uuid4().hex[:6]}"
        return subprocess.run([*trixie_skopeo, "--policy", str(tmp_path / "policy.json"), "--registries.d", str(regd),
                               "copy", "--src-tls-verify=false", "--src-creds", token,
                               f"docker://{server.host}/{repo}:{tag}", f"dir:{dest}"],
                              capture_output=True, text=True, timeout=300)

    ok = pull(signed, "v1")
    assert ok.returncode == 0, ok.stderr
    refused = pull(plain, "v1")
    assert refused.returncode != 0 and "signature" in refused.stderr.lower(), refused.stderr

    # the Notary Project signature beside it, a referrer: notation verifies it with the profile's certificate
    cert = berth_cli(server, "signing", "certificate", PROFILE)
    assert cert.returncode == 0 and "BEGIN CERTIFICATE" in cert.stdout, cert.stderr
    assert berth_cli(server, "signing", "certificate", PROFILE).stdout == cert.stdout  # the same, every time
    conf = tmp_path / "xdg"
    store = conf / "notation" / "truststore" / "x509" / "ca" / "berth"
    store.mkdir(parents=True)
    (store / "berth.crt").write_text(cert.stdout)
    (conf / "notation" / "trustpolicy.json").write_text(json.dumps({"version": "1.0", "trustPolicies": [
        {"name": "berth", "registryScopes": ["*"], "signatureVerification": {"level": "strict"},
         "trustStores": ["ca:berth"], "trustedIdentities": ["*"]}]}))
    user, password = token.split(":", 1)

    def verify(repo: str, digest: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([str(notation), "verify", "--insecure-registry", "-u", user, "-p", password,
                               f"{server.host}/{repo}@{digest}"], capture_output=True, text=True, timeout=300,
                              env={"PATH": "/usr/bin:/bin", "HOME": str(tmp_path), "XDG_CONFIG_HOME": str(conf)})

    good = verify(signed, umoci_images.app.digest)
    assert good.returncode == 0 and "Successfully verified" in good.stdout, good.stdout + good.stderr
    unsigned = verify(plain, umoci_images.app.digest)
    assert unsigned.returncode != 0 and "no signature" in (unsigned.stdout + unsigned.stderr).lower(), unsigned.stderr

    # the tag moved to a manifest nobody signed (signing off while it was pushed): refused
    ecr.delete_signing_configuration()
    push(umoci_images.amd64.tag, signed, "v1")
    assert status(signed, "v1") == []
    moved = pull(signed, "v1")
    assert moved.returncode != 0 and "signature" in moved.stderr.lower(), moved.stderr
    moved_n = verify(signed, umoci_images.amd64.digest)
    assert moved_n.returncode != 0, moved_n.stdout
    with pytest.raises(ClientError) as e:
        ecr.delete_signing_configuration()
    assert e.value.response["Error"]["Code"] == "SigningConfigurationNotFoundException"
