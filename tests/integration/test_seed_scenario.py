"""The README's quick start, as a user runs it: the real aws CLI, docker login, skopeo push and pull."""

from __future__ import annotations

import json
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.aws import aws_cli
from tests.support.images import build_umoci_image
from tests.support.servers import BerthServer, require_tool

pytestmark = pytest.mark.integration

KEY, SECRET = "AKIASEEDSCENARIO0001", "seed-scenario-secret-0123456789"


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[BerthServer]:
    base = tmp_path_factory.mktemp("seed")
    srv = BerthServer(base / "data", env={"BERTH_ADMIN_ACCESS_KEY_ID": KEY,
                                          "BERTH_ADMIN_SECRET_ACCESS_KEY": SECRET,
                                          "BERTH_CREATE_ON_PUSH": "0"}, args=["--auth", "iam"]).start()
    try:
        yield srv
    finally:
        srv.stop()


def run(*cmd: str, env: dict[str, str] | None = None, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=120, env={**os.environ, **(env or {})},
                          input=stdin)
    assert proc.returncode == 0, f"{cmd[0]} failed: {proc.stderr}"
    return proc


def test_seed_scenario(server: BerthServer, tmp_path: Path) -> None:
    require_tool("docker", "skopeo", "umoci")

    def aws(*args: str) -> str:
        return aws_cli(server.url, KEY, SECRET, tmp_path, *args)

    created = json.loads(aws("ecr", "create-repository", "--repository-name", "my-app"))
    repo = created["repository"]
    assert repo["repositoryName"] == "my-app"
    assert repo["registryId"] == "123456789012"
    assert repo["repositoryArn"] == "arn:aws:ecr:us-east-1:123456789012:repository/my-app"
    assert repo["repositoryUri"] == f"127.0.0.1:{server.port}/my-app"  # the host the client reached
    assert repo["imageTagMutability"] == "MUTABLE"
    assert repo["imageScanningConfiguration"] == {"scanOnPush": False}
    assert repo["encryptionConfiguration"] == {"encryptionType": "AES256"}

    # aws ecr get-login-password | docker login --username AWS --password-stdin HOST
    password = aws("ecr", "get-login-password").strip()
    docker_config = tmp_path / "docker"
    docker_config.mkdir()
    login = run("docker", "login", "--username", "AWS", "--password-stdin", server.host,
                env={"DOCKER_CONFIG": str(docker_config)}, stdin=password)
    assert "Login Succeeded" in login.stdout
    bad = subprocess.run(["docker", "login", "--username", "AWS", "--password-stdin", server.host],
                         env={**os.environ, "DOCKER_CONFIG": str(tmp_path / "other")}, input="not-a-token",
                         capture_output=True, text=True, timeout=60)
    assert bad.returncode != 0 and "401" in bad.stderr
    authfile = str(docker_config / "config.json")

    # docker push, with skopeo standing in (no engine here), using the credentials docker login stored
    image = build_umoci_image(tmp_path / "layout", tmp_path, "latest",
                              [{"app/main.txt": b"hello from berth\n"}, {"app/config.txt": b"v=1\n"}])
    run("skopeo", "copy", "--dest-tls-verify=false", "--dest-authfile", authfile,
        f"oci:{tmp_path / 'layout'}:latest", f"docker://{server.host}/my-app:latest")
    unauthenticated = subprocess.run(["skopeo", "inspect", "--tls-verify=false", "--no-creds",
                                      f"docker://{server.host}/my-app:latest"], capture_output=True, text=True)
    assert unauthenticated.returncode != 0
    run("skopeo", "copy", "--src-tls-verify=false", "--src-authfile", authfile,
        f"docker://{server.host}/my-app:latest", f"oci:{tmp_path / 'pulled'}:latest")
    pulled_index = json.loads((tmp_path / "pulled" / "index.json").read_text())
    assert pulled_index["manifests"][0]["digest"] == image.digest

    repos = json.loads(aws("ecr", "describe-repositories"))["repositories"]
    assert [r["repositoryName"] for r in repos] == ["my-app"]
    assert set(repos[0]) >= {"repositoryArn", "registryId", "repositoryName", "repositoryUri", "createdAt",
                             "imageTagMutability", "imageScanningConfiguration", "encryptionConfiguration"}

    listed = json.loads(aws("ecr", "list-images", "--repository-name", "my-app"))
    assert listed == {"imageIds": [{"imageDigest": image.digest, "imageTag": "latest"}]}

    scanning = json.loads(aws("ecr", "put-image-scanning-configuration", "--repository-name",
                              "my-app", "--image-scanning-configuration", "scanOnPush=true"))
    assert scanning == {"registryId": "123456789012", "repositoryName": "my-app",
                        "imageScanningConfiguration": {"scanOnPush": True}}

    deleted = json.loads(aws("ecr", "batch-delete-image", "--repository-name", "my-app",
                             "--image-ids", "imageTag=latest"))
    assert deleted == {"imageIds": [{"imageDigest": image.digest, "imageTag": "latest"}], "failures": []}
    after = json.loads(aws("ecr", "list-images", "--repository-name", "my-app"))
    assert after == {"imageIds": []}  # ECR: removing an image's last tag deletes the image
