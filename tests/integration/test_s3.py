"""Berth on PostgreSQL + S3 (a real radosgw), driven by real clients.

One Berth server per module on the session's `postgres` and `ceph`, its credentials from the
environment (AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY), plus a second node on the same database and
bucket with --storage-redirect (credentials in the storage URL), so every pull through it is a
307 to a presigned radosgw URL. After each test the bucket holds no upload segment and no
incomplete multipart upload.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote

import boto3
import httpx
import pytest
from botocore.config import Config
from botocore.exceptions import ClientError

from tests.support.ceph import CephCluster
from tests.support.images import ContainerTool, OciLayout, UmociImages, image_closure, read_rootfs, run
from tests.support.oci import OciClient, sha256
from tests.support.servers import BerthServer, PostgresCluster, require_tool

pytestmark = pytest.mark.integration

MiB = 1 << 20
PREFIX = "registry"


@dataclass
class S3Berth:
    ceph: CephCluster
    bucket: str
    server: BerthServer  # streams blobs
    redirect: BerthServer  # the same registry on a second node, answering blob GETs with 307

    @property
    def s3(self):  # noqa: ANN201 - a boto3 client
        return self.ceph.client()

    def keys(self, under: str = "") -> list[str]:
        pages = self.s3.get_paginator("list_objects_v2").paginate(Bucket=self.bucket, Prefix=f"{PREFIX}/{under}")
        return [o["Key"] for page in pages for o in page.get("Contents", [])]

    def blob_key(self, digest: str) -> str:
        alg, hexpart = digest.split(":")
        return f"{PREFIX}/blobs/{alg}/{hexpart[:2]}/{hexpart}"

    def leftovers(self) -> list[str]:
        return self.keys("uploads/") + [u["Key"] for u in
                                        self.s3.list_multipart_uploads(Bucket=self.bucket).get("Uploads", [])]


@pytest.fixture(scope="module")
def s3b(ceph: CephCluster, postgres: PostgresCluster, tmp_path_factory: pytest.TempPathFactory) -> Iterator[S3Berth]:
    bucket = ceph.new_bucket("integration")
    database = postgres.new_database()
    base = tmp_path_factory.mktemp("berth-s3")
    url = f"s3://{bucket}/{PREFIX}?endpoint={ceph.endpoint}&region={ceph.region}"
    env = {"AWS_ACCESS_KEY_ID": ceph.access_key, "AWS_SECRET_ACCESS_KEY": ceph.secret_key}
    server = BerthServer(base / "a", database_url=database, env=env, args=["--storage-url", url]).start()
    creds = f"{quote(ceph.access_key, safe='')}:{quote(ceph.secret_key, safe='')}@"
    no_env = {"AWS_ACCESS_KEY_ID": "", "AWS_SECRET_ACCESS_KEY": ""}
    redirect = BerthServer(base / "b", database_url=database, env=no_env,
                           args=["--storage-url", url.replace("s3://", "s3://" + creds), "--storage-redirect"])
    try:
        redirect.start()
        yield S3Berth(ceph, bucket, server, redirect)
    finally:
        redirect.stop()
        server.stop()


@pytest.fixture
def oci(s3b: S3Berth) -> Iterator[OciClient]:
    with OciClient(s3b.server.url, timeout=120) as client:
        yield client
    assert s3b.leftovers() == [], "upload segments or incomplete multipart uploads left in the bucket"


def skopeo(*args: str | Path, timeout: float = 300) -> str:
    return run(["skopeo", *args], timeout=timeout).stdout


def test_skopeo_push_and_pull_of_a_multilayer_image_is_byte_identical(
        s3b: S3Berth, oci: OciClient, umoci_images: UmociImages, tmp_path: Path) -> None:
    require_tool("skopeo")
    img = umoci_images.app
    ref = f"docker://{s3b.server.host}/s3/app:v1"
    pushed = image_closure(img.layout, img.digest)
    skopeo("copy", "--dest-tls-verify=false", f"oci:{img.layout.root}:app", ref)
    stored = set(s3b.keys("blobs/"))
    for digest in pushed:
        if digest != img.digest:  # manifests live in the database; every blob in the bucket
            assert s3b.blob_key(digest) in stored, digest
    out = OciLayout(tmp_path / "pulled")
    skopeo("copy", "--src-tls-verify=false", ref, f"oci:{out.root}:v1")
    assert out.digest("v1") == img.digest
    assert image_closure(out, img.digest) == pushed
    assert read_rootfs(out, img.digest) == img.files


def test_chunked_upload_with_chunks_below_and_above_the_part_size(oci: OciClient) -> None:
    data = os.urandom(21 * MiB + 17)
    cuts = [0, 1000, 3 * MiB, 3 * MiB + 1, 12 * MiB, 21 * MiB, len(data)]  # tiny, 3 MiB, 1 byte, 9 MiB, 9 MiB, tail
    location = oci.start_upload("s3/chunked")
    for start, end in zip(cuts, cuts[1:], strict=False):
        r = oci.patch(location, data[start:end], start)
        assert r.status_code == 202, r.text
        assert r.headers["Range"] == f"0-{end - 1}"
        location = r.headers["Location"]
    r = oci.http.put(location, params={"digest": sha256(data)})
    assert r.status_code == 201, r.text
    got = oci.get_blob("s3/chunked", sha256(data))
    assert got.status_code == 200 and got.content == data
    part = oci.get_blob("s3/chunked", sha256(data), headers={"Range": f"bytes={5 * MiB}-{9 * MiB + 2}"})
    assert part.status_code == 206 and part.content == data[5 * MiB:9 * MiB + 3]


def test_monolithic_and_post_put_uploads(oci: OciClient) -> None:
    for data in (b"", b"small", os.urandom(9 * MiB + 5)):
        for push in (oci.push_blob, oci.push_blob_post_put):
            r = push("s3/mono", data)
            assert r.status_code == 201, r.text
            assert oci.get_blob("s3/mono", sha256(data)).content == data


def test_cross_repository_mount(s3b: S3Berth, oci: OciClient) -> None:
    data = os.urandom(6 * MiB)
    assert oci.push_blob("s3/mount-src", data).status_code == 201
    before = len(s3b.keys("blobs/"))
    r = oci.http.post("/v2/s3/mount-dst/blobs/uploads/", params={"mount": sha256(data), "from": "s3/mount-src"})
    assert r.status_code == 201, r.text
    assert r.headers["Docker-Content-Digest"] == sha256(data)
    assert oci.get_blob("s3/mount-dst", sha256(data)).content == data
    assert len(s3b.keys("blobs/")) == before  # linked, not copied


def test_restart_mid_upload_then_continue(s3b: S3Berth, oci: OciClient) -> None:
    """The hash state is gone with the process: the server reads the stored segments back from S3."""
    data = os.urandom(14 * MiB + 3)
    location = oci.start_upload("s3/restart")
    r = oci.patch(location, data[:6 * MiB + 1], 0)
    assert r.status_code == 202, r.text
    location = r.headers["Location"]
    s3b.server.restart()
    with OciClient(s3b.server.url, timeout=120) as again:
        status = again.http.get(location)
        assert status.status_code == 204 and status.headers["Range"] == f"0-{6 * MiB}"
        r = again.patch(location, data[6 * MiB + 1:], 6 * MiB + 1)
        assert r.status_code == 202, r.text
        r = again.http.put(r.headers["Location"], params={"digest": sha256(data)})
        assert r.status_code == 201, r.text
        assert again.get_blob("s3/restart", sha256(data)).content == data
    oci.http.close()
    oci.http = httpx.Client(base_url=s3b.server.url, timeout=120)  # the old connection died with the server


def test_digest_mismatch_leaves_no_object(s3b: S3Berth, oci: OciClient) -> None:
    for data in (b"tiny mismatch", os.urandom(11 * MiB)):  # a single PUT, and a multipart upload
        wrong = sha256(data + b"!")
        r = oci.push_blob("s3/mismatch", data, digest=wrong)
        assert r.status_code == 400 and r.json()["errors"][0]["code"] == "DIGEST_INVALID", r.text
        r = oci.push_blob_chunked("s3/mismatch", data, chunk=max(len(data) // 2, 1), digest=wrong)
        assert r.status_code == 400 and r.json()["errors"][0]["code"] == "DIGEST_INVALID", r.text
        for digest in (wrong, sha256(data)):
            assert s3b.blob_key(digest) not in s3b.keys("blobs/")
            assert oci.http.head(f"/v2/s3/mismatch/blobs/{digest}").status_code == 404


def test_pulls_through_the_redirect_with_skopeo_and_podman(
        s3b: S3Berth, oci: OciClient, umoci_images: UmociImages, tmp_path: Path,
        container_tool: Callable[[str, str], ContainerTool]) -> None:
    require_tool("skopeo", "podman")
    img = umoci_images.app
    skopeo("copy", "--dest-tls-verify=false", f"oci:{img.layout.root}:app", f"docker://{s3b.server.host}/s3/redir:v1")
    pushed = image_closure(img.layout, img.digest)
    layer = img.layout.json(img.digest)["layers"][0]["digest"]

    r = httpx.get(f"{s3b.redirect.url}/v2/s3/redir/blobs/{layer}")
    assert r.status_code == 307
    assert r.headers["Location"].startswith(s3b.ceph.endpoint + "/")
    assert "X-Amz-Signature=" in r.headers["Location"]
    assert httpx.get(r.headers["Location"]).content == pushed[layer]
    head = httpx.head(f"{s3b.redirect.url}/v2/s3/redir/blobs/{layer}")
    assert head.status_code == 200 and int(head.headers["Content-Length"]) == len(pushed[layer])
    assert httpx.get(f"{s3b.redirect.url}/v2/s3/redir/blobs/{sha256(b'absent')}").status_code == 404
    assert httpx.get(f"{s3b.server.url}/v2/s3/redir/blobs/{layer}").status_code == 200  # the other node streams

    ref = f"docker://{s3b.redirect.host}/s3/redir:v1"
    out = OciLayout(tmp_path / "skopeo")
    skopeo("copy", "--src-tls-verify=false", ref, f"oci:{out.root}:v1")
    assert image_closure(out, img.digest) == pushed

    podman = container_tool("podman", "pull")
    podman("pull", "-q", "--tls-verify=false", f"{s3b.redirect.host}/s3/redir:v1")
    [info] = json.loads(podman("image", "inspect", f"{s3b.redirect.host}/s3/redir:v1"))
    assert info["Digest"] == img.digest
    saved = OciLayout(tmp_path / "saved")
    podman("save", "-q", "--format", "oci-dir", "-o", saved.root, f"{s3b.redirect.host}/s3/redir:v1")
    [desc] = saved.index()["manifests"]
    assert read_rootfs(saved, desc["digest"]) == img.files


def _assert_storage_failure(r: httpx.Response) -> None:
    """The OCI answer to an object store that is down or refuses Berth: 503 UNKNOWN, try again later."""
    assert r.status_code == 503, (r.status_code, r.text)
    assert r.headers["content-type"].startswith("application/json") and r.headers["Retry-After"].isdigit()
    [err] = r.json()["errors"]
    assert err["code"] == "UNKNOWN" and "blob storage unavailable" in err["message"], r.text


def test_s3_down_fails_the_push_and_the_registry_recovers(s3b: S3Berth, oci: OciClient) -> None:
    data = os.urandom(7 * MiB)
    small = b"pushed while S3 was down"
    s3b.ceph.stop_rgw()
    try:
        _assert_storage_failure(oci.push_blob("s3/outage", data))
        _assert_storage_failure(oci.push_blob("s3/outage", small))
        location = oci.start_upload("s3/outage")  # a session row needs no storage...
        _assert_storage_failure(oci.patch(location, small, 0))  # ...its first bytes do
        ecr = boto3.client("ecr", endpoint_url=s3b.server.url, region_name="us-east-1", aws_access_key_id="x",
                           aws_secret_access_key="x", config=Config(retries={"total_max_attempts": 1}))
        ecr.create_repository(repositoryName="s3/outage-ecr")
        upload = ecr.initiate_layer_upload(repositoryName="s3/outage-ecr")["uploadId"]
        with pytest.raises(ClientError) as refused:  # the ECR face: AWS's "try again later", which SDKs retry
            ecr.upload_layer_part(repositoryName="s3/outage-ecr", uploadId=upload, partFirstByte=0,
                                  partLastByte=len(small) - 1, layerPartBlob=small)
        assert refused.value.response["Error"]["Code"] == "ServiceUnavailable"
        assert refused.value.response["ResponseMetadata"]["HTTPStatusCode"] == 503
        for d in (data, small):
            assert oci.http.head(f"/v2/s3/outage/blobs/{sha256(d)}").status_code == 404  # nothing recorded
    finally:
        s3b.ceph.start_rgw()
    for d in (data, small):
        r = oci.push_blob("s3/outage", d)
        assert r.status_code == 201, r.text
        assert oci.get_blob("s3/outage", sha256(d)).content == d
    assert oci.http.delete(location).status_code == 204


def test_refused_credentials_fail_the_push_and_the_registry_recovers(s3b: S3Berth, oci: OciClient) -> None:
    data = os.urandom(1000)
    admin = ["radosgw-admin", "-c", str(s3b.ceph.conf)]
    subprocess.run([*admin, "user", "suspend", "--uid", "berth"], check=True, capture_output=True, timeout=60)
    try:
        _assert_storage_failure(oci.push_blob("s3/refused", data))
        assert oci.http.head(f"/v2/s3/refused/blobs/{sha256(data)}").status_code == 404
    finally:
        subprocess.run([*admin, "user", "enable", "--uid", "berth"], check=True, capture_output=True, timeout=60)
    r = oci.push_blob("s3/refused", data)
    assert r.status_code == 201, r.text
    assert oci.get_blob("s3/refused", sha256(data)).content == data


def test_a_bucket_that_does_not_exist_is_a_start_up_error(s3b: S3Berth, tmp_path: Path) -> None:
    url = f"s3://no-such-bucket-here/x?endpoint={s3b.ceph.endpoint}"
    env = {"AWS_ACCESS_KEY_ID": s3b.ceph.access_key, "AWS_SECRET_ACCESS_KEY": s3b.ceph.secret_key}
    server = BerthServer(tmp_path / "data", env=env, args=["--storage-url", url])
    with pytest.raises(RuntimeError):
        server.start(timeout=30)
    assert "no-such-bucket-here" in server.read_log()


@pytest.mark.parametrize("url", ["swift://container", "s3://Not_A_Bucket", "s3://b?endpoint=ftp://x"])
def test_a_bad_storage_url_is_a_one_line_start_up_error(url: str, tmp_path: Path) -> None:
    p = subprocess.run([sys.executable, "-m", "berth", "serve", "--data-dir", str(tmp_path), "--auth", "none",
                        "--storage-url", url], capture_output=True, text=True, timeout=60)
    assert p.returncode == 2
    lines = p.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("berth: ") and "storage URL" in lines[0], p.stderr


VIRTUAL_HOST_SCRIPT = """
import hashlib, sys, urllib.request
from berth.storage.s3 import S3BlobStore
bucket, port, key, secret = sys.argv[1:5]
store = S3BlobStore(bucket, "vhost", endpoint=f"http://localhost:{port}", addressing="virtual",
                    access_key=key, secret_key=secret)
assert store.client.meta.config.s3["addressing_style"] == "virtual"
data = b"virtual-host addressing" * 1000
digest = "sha256:" + hashlib.sha256(data).hexdigest()
w = store.create(digest)
w.write(data)
w.commit(digest)
r = store.open(digest)
assert r.read(1 << 20) == data
url = store.url_for(digest, 60)
assert url.startswith(f"http://{bucket}.localhost:{port}/"), url
assert urllib.request.urlopen(url).read() == data
store.delete([digest])
assert store.stat(digest) is None
print("ok")
"""


def test_virtual_host_addressing(s3b: S3Berth, tmp_path: Path) -> None:
    """bucket.localhost:PORT/key instead of localhost:PORT/bucket/key (radosgw's `rgw dns name` is
    localhost). The name resolves only inside a private mount namespace with its own /etc/hosts."""
    require_tool("unshare")
    hosts = tmp_path / "hosts"
    hosts.write_text(f"127.0.0.1 localhost {s3b.bucket}.localhost\n")
    script = tmp_path / "vhost.py"
    script.write_text(VIRTUAL_HOST_SCRIPT)
    port = s3b.ceph.endpoint.rsplit(":", 1)[1]
    cmd = f"mount --bind {hosts} /etc/hosts && exec {sys.executable} {script} {s3b.bucket} {port} " \
          f"{s3b.ceph.access_key} {s3b.ceph.secret_key}"
    p = subprocess.run(["unshare", "--mount", "sh", "-c", cmd], capture_output=True, text=True, timeout=120,
                       env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)})
    assert p.returncode == 0 and p.stdout.strip() == "ok", p.stderr[-2000:]


def test_credentials_from_a_shared_credentials_file_and_profile(
        s3b: S3Berth, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from berth.storage.s3 import S3BlobStore, StorageUnavailable

    creds = tmp_path / "credentials"
    creds.write_text(f"[berth-test]\naws_access_key_id = {s3b.ceph.access_key}\n"
                     f"aws_secret_access_key = {s3b.ceph.secret_key}\n[wrong]\naws_access_key_id = AKIDWRONG\n"
                     "aws_secret_access_key = nope\n")
    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_PROFILE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(creds))
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "no-config"))
    store = S3BlobStore(s3b.bucket, "profile", endpoint=s3b.ceph.endpoint, profile="berth-test")
    store.check()
    assert store.stat(sha256(b"absent")) is None
    wrong = S3BlobStore(s3b.bucket, "profile", endpoint=s3b.ceph.endpoint, profile="wrong")
    with pytest.raises(StorageUnavailable, match="refused"):  # a HEAD has no body: the code is just 403
        wrong.check()
