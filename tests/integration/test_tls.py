"""--tls-cert/--tls-key: both faces over HTTPS, verified against the server's certificate."""

from __future__ import annotations

import base64
import ssl
import subprocess
from collections.abc import Iterator
from pathlib import Path

import boto3
import httpx
import pytest

from tests.support.images import build_umoci_image
from tests.support.servers import BerthServer, require_tool

pytestmark = pytest.mark.integration

KEY, SECRET = "AKIATLSTEST000000001", "tls-test-secret-0123456789"


@pytest.fixture(scope="module")
def tls(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[BerthServer, Path]]:
    require_tool("openssl")
    base = tmp_path_factory.mktemp("tls")
    certs = base / "certs"
    certs.mkdir()
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", str(base / "key.pem"),
                    "-out", str(certs / "ca.crt"), "-days", "2", "-subj", "/CN=127.0.0.1",
                    "-addext", "subjectAltName=IP:127.0.0.1"], check=True, capture_output=True)
    srv = BerthServer(base / "data", env={"BERTH_ADMIN_ACCESS_KEY_ID": KEY, "BERTH_ADMIN_SECRET_ACCESS_KEY": SECRET,
                                          "BERTH_CREATE_ON_PUSH": "1"},
                      args=["--auth", "iam", "--tls-cert", str(certs / "ca.crt"), "--tls-key", str(base / "key.pem")])
    srv.start()
    try:
        yield srv, certs
    finally:
        srv.stop()


def test_control_plane_and_registry_over_https(tls: tuple[BerthServer, Path], tmp_path: Path) -> None:
    require_tool("skopeo", "umoci")
    server, certs = tls
    ecr = boto3.client("ecr", endpoint_url=server.url, region_name="us-east-1", aws_access_key_id=KEY,
                       aws_secret_access_key=SECRET, verify=str(certs / "ca.crt"))
    data = ecr.get_authorization_token()["authorizationData"][0]
    # the registry host of the caller's registry: the plain host it called (with its port: not 443)
    assert data["proxyEndpoint"] == f"https://127.0.0.1:{server.port}"
    token = base64.b64decode(data["authorizationToken"]).decode()
    assert token.startswith("AWS:")
    with httpx.Client(verify=ssl.create_default_context(cafile=certs / "ca.crt")) as http:
        assert http.get(server.url + "/v2/").status_code == 401
        assert http.get(server.url + "/v2/", auth=("AWS", token[4:])).status_code == 200
    image = build_umoci_image(tmp_path / "layout", tmp_path, "v1", [{"hello.txt": b"over tls\n"}])
    subprocess.run(["skopeo", "copy", "--dest-cert-dir", str(certs), "--dest-creds", token,
                    f"oci:{tmp_path / 'layout'}:v1", f"docker://{server.host}/secure/app:v1"],
                   check=True, capture_output=True, timeout=120)
    listed = ecr.list_images(repositoryName="secure/app")["imageIds"]
    assert listed == [{"imageDigest": image.digest, "imageTag": "v1"}]
