"""The ECR image and layer API (boto3, the aws CLI, skopeo) against a real `berth serve --auth iam`.

The OCI face and the ECR face share one service layer: what one pushes, the other lists, describes,
gets, deletes and pulls. Every op runs once on the embedded store and once on PostgreSQL.
"""

from __future__ import annotations

import base64
import gzip
import io
import json
import os
import subprocess
import tarfile
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import boto3
import httpx
import pytest
from botocore.client import BaseClient
from botocore.exceptions import ClientError

from tests.support.aws import aws_cli
from tests.support.oci import (
    DOCKER_CONFIG,
    DOCKER_LAYER,
    DOCKER_MANIFEST,
    OCI_CONFIG,
    OCI_EMPTY,
    OCI_INDEX,
    OCI_LAYER,
    OCI_MANIFEST,
    dumps,
    sha256,
)
from tests.support.servers import BerthServer, require_tool

pytestmark = pytest.mark.integration

KEY, SECRET = "AKIAECRIMAGESTEST001", "ecr-images-test-secret-0123456789abcdef"
ACCOUNT, REGION = "123456789012", "us-east-1"

def tar_gz(files: dict[str, bytes]) -> tuple[bytes, str]:
    """A real gzipped tar layer and its diff id (the digest of the uncompressed tar)."""
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w") as tar:
        for name, data in files.items():
            info = tarfile.TarInfo(name)
            info.size, info.mtime, info.mode = len(data), 0, 0o644
            tar.addfile(info, io.BytesIO(data))
    return gzip.compress(raw.getvalue(), mtime=0), sha256(raw.getvalue())


@dataclass
class Img:
    config: bytes
    layers: list[bytes]
    body: bytes
    media_type: str

    @property
    def digest(self) -> str:
        return sha256(self.body)

    @property
    def blobs(self) -> list[bytes]:
        return [self.config, *self.layers]

    @property
    def size(self) -> int:
        return sum(len(b) for b in self.blobs)

    def descriptor(self, **extra: Any) -> dict[str, Any]:
        return {"mediaType": self.media_type, "digest": self.digest, "size": len(self.body), **extra}


def make_image(layers: int = 1, media_type: str = OCI_MANIFEST, arch: str = "amd64", subject: Img | None = None,
               artifact_type: str | None = None, annotations: dict[str, str] | None = None) -> Img:
    """A runnable-looking image with real tar.gz layers, or an OCI 1.1 artifact when artifact_type is set."""
    docker = media_type == DOCKER_MANIFEST
    if artifact_type is not None:
        config, config_type = b"{}", OCI_EMPTY
        blobs = [os.urandom(64) for _ in range(layers)]
        layer_type = "application/octet-stream"
    else:
        built = [tar_gz({f"file{i}.txt": os.urandom(256).hex().encode()}) for i in range(layers)]
        blobs = [b for b, _ in built]
        config = dumps({"architecture": arch, "os": "linux", "config": {"Cmd": ["/file0.txt"]},
                        "rootfs": {"type": "layers", "diff_ids": [d for _, d in built]}})
        config_type, layer_type = (DOCKER_CONFIG, DOCKER_LAYER) if docker else (OCI_CONFIG, OCI_LAYER)
    doc: dict[str, Any] = {
        "schemaVersion": 2, "mediaType": media_type,
        "config": {"mediaType": config_type, "digest": sha256(config), "size": len(config)},
        "layers": [{"mediaType": layer_type, "digest": sha256(b), "size": len(b)} for b in blobs],
    }
    if artifact_type is not None:
        doc["artifactType"] = artifact_type
    if subject is not None:
        doc["subject"] = subject.descriptor()
    if annotations:
        doc["annotations"] = annotations
    return Img(config, blobs, json.dumps(doc, indent=2).encode(), media_type)


def make_index(children: list[Img]) -> bytes:
    return dumps({"schemaVersion": 2, "mediaType": OCI_INDEX,
                  "manifests": [c.descriptor(platform={"architecture": a, "os": "linux"})
                                for c, a in zip(children, ("amd64", "arm64", "s390x"), strict=False)]})


class Oci:
    """A raw-HTTP OCI client authenticated with the ECR token (HTTP Basic AWS:<token>)."""

    def __init__(self, server: BerthServer, basic: str) -> None:
        self.client = httpx.Client(base_url=server.url, headers={"Authorization": f"Basic {basic}"}, timeout=30)

    def blob(self, repo: str, data: bytes) -> None:
        r = self.client.post(f"/v2/{repo}/blobs/uploads/", params={"digest": sha256(data)}, content=data)
        assert r.status_code == 201, r.text

    def manifest(self, repo: str, ref: str, body: bytes, media_type: str) -> str:
        r = self.client.put(f"/v2/{repo}/manifests/{ref}", content=body, headers={"Content-Type": media_type})
        assert r.status_code == 201, r.text
        return r.headers["Docker-Content-Digest"]

    def push(self, repo: str, image: Img, ref: str | None = None) -> str:
        for b in image.blobs:
            self.blob(repo, b)
        return self.manifest(repo, ref or image.digest, image.body, image.media_type)

    def get(self, repo: str, ref: str, method: str = "GET") -> httpx.Response:
        return self.client.request(method, f"/v2/{repo}/manifests/{ref}",
                                    headers={"Accept": f"{OCI_MANIFEST}, {OCI_INDEX}, {DOCKER_MANIFEST}"})


@pytest.fixture(scope="module", params=["sqlite", "postgres"])
def server(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[BerthServer]:
    base = tmp_path_factory.mktemp("ecr-images")
    url = request.getfixturevalue("postgres").new_database() if request.param == "postgres" else ""
    srv = BerthServer(base / "data", database_url=url,
                      env={"BERTH_ADMIN_ACCESS_KEY_ID": KEY, "BERTH_ADMIN_SECRET_ACCESS_KEY": SECRET,
                           "BERTH_CREATE_ON_PUSH": "1"}, args=["--auth", "iam"]).start()
    try:
        yield srv
    finally:
        srv.stop()


@pytest.fixture(scope="module")
def ecr(server: BerthServer) -> BaseClient:
    return boto3.client("ecr", endpoint_url=server.url, region_name=REGION, aws_access_key_id=KEY,
                        aws_secret_access_key=SECRET)


@pytest.fixture(scope="module")
def basic(ecr: BaseClient) -> str:
    return str(ecr.get_authorization_token()["authorizationData"][0]["authorizationToken"])


@pytest.fixture(scope="module")
def oci(server: BerthServer, basic: str) -> Iterator[Oci]:
    client = Oci(server, basic)
    yield client
    client.client.close()


def new_repo(ecr: BaseClient, oci: Oci, prefix: str, **settings: Any) -> str:
    """A fresh repository: CreateRepository, or (while that op is missing) an OCI push with create-on-push."""
    name = f"{prefix}-{uuid.uuid4().hex[:8]}"
    try:
        ecr.create_repository(repositoryName=name, **settings)
    except ClientError as e:
        if e.response["Error"]["Code"] != "ValidationException" or settings:
            raise
        oci.blob(name, b"creates the repository")
    return name


def error_code(e: pytest.ExceptionInfo[ClientError]) -> str:
    return str(e.value.response["Error"]["Code"])


def put_layers(ecr: BaseClient, repo: str, image: Img, part: int = 0) -> None:
    """Upload an image's blobs with InitiateLayerUpload / UploadLayerPart / CompleteLayerUpload."""
    for blob in image.blobs:
        upload = ecr.initiate_layer_upload(repositoryName=repo)
        step = part or len(blob)
        for first in range(0, len(blob), step):
            chunk = blob[first:first + step]
            r = ecr.upload_layer_part(repositoryName=repo, uploadId=upload["uploadId"], partFirstByte=first,
                                      partLastByte=first + len(chunk) - 1, layerPartBlob=chunk)
            assert r["lastByteReceived"] == first + len(chunk) - 1
        done = ecr.complete_layer_upload(repositoryName=repo, uploadId=upload["uploadId"], layerDigests=[sha256(blob)])
        assert done["layerDigest"] == sha256(blob)


def write_layout(root: Path, image: Img, tag: str) -> None:
    """An OCI image layout holding one tagged image, for skopeo to push."""
    blobs = root / "blobs" / "sha256"
    blobs.mkdir(parents=True)
    for data in [*image.blobs, image.body]:
        (blobs / sha256(data).split(":", 1)[1]).write_bytes(data)
    (root / "oci-layout").write_text('{"imageLayoutVersion": "1.0.0"}')
    ref = {"org.opencontainers.image.ref.name": tag}
    index = {"schemaVersion": 2, "manifests": [image.descriptor(annotations=ref)]}
    (root / "index.json").write_text(json.dumps(index))


def skopeo(*args: str) -> None:
    proc = subprocess.run(["skopeo", *args], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr


def ids(*pairs: tuple[str, str | None]) -> list[dict[str, str]]:
    return [{"imageDigest": d, **({"imageTag": t} if t else {})} for d, t in pairs]


def by_key(items: list[dict[str, str]]) -> list[tuple[str, str]]:
    return sorted((i["imageDigest"], i.get("imageTag", "")) for i in items)


# ------------------------------------------------------------------------------------------------
# ECR push (layer API + PutImage), pulled with skopeo; skopeo push, seen through the ECR API


def test_ecr_push_then_skopeo_pull(server: BerthServer, ecr: BaseClient, oci: Oci, basic: str,
                                   tmp_path: Path) -> None:
    require_tool("skopeo")
    repo = new_repo(ecr, oci, "ecrpush")
    image = make_image(layers=2)
    digests = [sha256(b) for b in image.blobs]

    before = ecr.batch_check_layer_availability(repositoryName=repo, layerDigests=digests)
    assert before == {**before, "layers": [{"layerDigest": d, "layerAvailability": "UNAVAILABLE"} for d in digests],
                      "failures": []}
    put_layers(ecr, repo, image, part=100)  # several parts per blob
    put = ecr.put_image(repositoryName=repo, imageManifest=image.body.decode(), imageTag="v1")["image"]
    assert put == {"registryId": ACCOUNT, "repositoryName": repo,
                   "imageId": {"imageDigest": image.digest, "imageTag": "v1"},
                   "imageManifest": image.body.decode(), "imageManifestMediaType": OCI_MANIFEST}

    after = ecr.batch_check_layer_availability(repositoryName=repo, layerDigests=digests)
    assert after["layers"] == [
        {"layerDigest": digests[0], "layerAvailability": "AVAILABLE", "layerSize": len(image.config),
         "mediaType": OCI_CONFIG},
        *({"layerDigest": sha256(b), "layerAvailability": "AVAILABLE", "layerSize": len(b), "mediaType": OCI_LAYER}
          for b in image.layers)]
    assert after["failures"] == []

    token = base64.b64decode(basic).decode()
    out = tmp_path / "pulled"
    skopeo("copy", "--src-tls-verify=false", "--src-creds", token, f"docker://{server.host}/{repo}:v1",
           f"oci:{out}:v1")
    index = json.loads((out / "index.json").read_text())
    assert index["manifests"][0]["digest"] == image.digest
    for data in [image.body, *image.blobs]:
        assert (out / "blobs" / "sha256" / sha256(data).split(":", 1)[1]).read_bytes() == data


def test_skopeo_push_seen_by_ecr(server: BerthServer, ecr: BaseClient, oci: Oci, basic: str,
                                 tmp_path: Path) -> None:
    require_tool("skopeo")
    repo = new_repo(ecr, oci, "skopeopush")
    image = make_image(layers=2)
    write_layout(tmp_path / "layout", image, "latest")
    started = time.time()
    skopeo("copy", "--dest-tls-verify=false", "--dest-creds", base64.b64decode(basic).decode(),
           f"oci:{tmp_path / 'layout'}:latest", f"docker://{server.host}/{repo}:latest")

    listed = ecr.list_images(repositoryName=repo)["imageIds"]
    assert listed == [{"imageDigest": image.digest, "imageTag": "latest"}]
    detail = ecr.describe_images(repositoryName=repo)["imageDetails"]
    assert len(detail) == 1
    pushed_at = detail[0].pop("imagePushedAt")
    assert started - 1 <= pushed_at.timestamp() <= time.time() + 1
    assert detail[0] == {"registryId": ACCOUNT, "repositoryName": repo, "imageDigest": image.digest,
                         "imageTags": ["latest"], "imageSizeInBytes": image.size,
                         "imageManifestMediaType": OCI_MANIFEST, "artifactMediaType": OCI_CONFIG,
                         "imageStatus": "ACTIVE"}
    got = ecr.batch_get_image(repositoryName=repo, imageIds=[{"imageTag": "latest"}])
    assert got["failures"] == []
    assert got["images"] == [{"registryId": ACCOUNT, "repositoryName": repo,
                              "imageId": {"imageDigest": image.digest, "imageTag": "latest"},
                              "imageManifest": image.body.decode(), "imageManifestMediaType": OCI_MANIFEST}]


# ------------------------------------------------------------------------------------------------
# ListImages and DescribeImages


@pytest.fixture(scope="module")
def gallery(ecr: BaseClient, oci: Oci) -> dict[str, Any]:
    """One repository: a with tags a1+a2, b (b1), docker image d (d1), two untagged images, an index
    (tag multi) over two children, and an artifact referring to a."""
    repo = new_repo(ecr, oci, "gallery")
    a, b, d = make_image(), make_image(layers=2), make_image(media_type=DOCKER_MANIFEST)
    u1, u2 = make_image(), make_image()
    amd, arm = make_image(arch="amd64"), make_image(arch="arm64", layers=3)
    sbom = make_image(subject=a, artifact_type="application/spdx+json")
    oci.push(repo, a, "a1")
    oci.manifest(repo, "a2", a.body, a.media_type)
    oci.push(repo, b, "b1")
    oci.push(repo, d, "d1")
    for img in (u1, u2, amd, arm, sbom):
        oci.push(repo, img)
    index = make_index([amd, arm])
    oci.manifest(repo, "multi", index, OCI_INDEX)
    return {"repo": repo, "a": a, "b": b, "d": d, "u1": u1, "u2": u2, "amd": amd, "arm": arm, "sbom": sbom,
            "index": index}


def test_list_images_filters(ecr: BaseClient, gallery: dict[str, Any]) -> None:
    g = gallery
    tagged = [(g["a"].digest, "a1"), (g["a"].digest, "a2"), (g["b"].digest, "b1"), (g["d"].digest, "d1"),
              (sha256(g["index"]), "multi")]
    untagged = [(g[k].digest, "") for k in ("u1", "u2", "amd", "arm", "sbom")]
    everything = ecr.list_images(repositoryName=g["repo"])
    assert set(everything) == {"imageIds", "ResponseMetadata"}  # no nextToken on a last page
    assert by_key(everything["imageIds"]) == sorted(tagged + untagged)
    assert by_key(ecr.list_images(repositoryName=g["repo"], filter={"tagStatus": "TAGGED"})["imageIds"]) \
        == sorted(tagged)
    only_untagged = ecr.list_images(repositoryName=g["repo"], filter={"tagStatus": "UNTAGGED"})["imageIds"]
    assert by_key(only_untagged) == sorted(untagged)
    assert all(set(i) == {"imageDigest"} for i in only_untagged)
    assert ecr.list_images(repositoryName=g["repo"], filter={"tagStatus": "ANY", "imageStatus": "ARCHIVED"}
                           )["imageIds"] == []


def test_list_images_pagination(server: BerthServer, ecr: BaseClient, gallery: dict[str, Any],
                                tmp_path: Path) -> None:
    repo = gallery["repo"]
    full = by_key(ecr.list_images(repositoryName=repo)["imageIds"])
    first = ecr.list_images(repositoryName=repo, maxResults=3)
    assert len(first["imageIds"]) == 3 and first["nextToken"]
    pages = list(ecr.get_paginator("list_images").paginate(repositoryName=repo, PaginationConfig={"PageSize": 3}))
    assert [len(p["imageIds"]) for p in pages] == [3, 3, 3, 1]
    assert by_key([i for p in pages for i in p["imageIds"]]) == full
    tagged_pages = list(ecr.get_paginator("list_images").paginate(
        repositoryName=repo, filter={"tagStatus": "TAGGED"}, PaginationConfig={"PageSize": 2}))
    assert [len(p["imageIds"]) for p in tagged_pages] == [2, 2, 1]
    with pytest.raises(ClientError) as e:
        ecr.list_images(repositoryName=repo, nextToken="not-a-token")
    assert error_code(e) == "InvalidParameterException"
    with pytest.raises(ecr.exceptions.RepositoryNotFoundException):
        ecr.list_images(repositoryName="no-such-repository")

    cli = json.loads(aws_cli(server.url, KEY, SECRET, tmp_path, "ecr", "list-images", "--repository-name", repo,
                             "--page-size", "4"))
    assert by_key(cli["imageIds"]) == full
    assert "nextToken" not in cli and "NextToken" not in cli


def test_describe_images(ecr: BaseClient, gallery: dict[str, Any]) -> None:
    g, repo = gallery, gallery["repo"]
    details = {d["imageDigest"]: d for d in ecr.describe_images(repositoryName=repo)["imageDetails"]}
    assert len(details) == 9
    a = details[g["a"].digest]
    assert a["imageTags"] == ["a1", "a2"] and a["imageSizeInBytes"] == g["a"].size
    assert a["artifactMediaType"] == OCI_CONFIG and a["imageManifestMediaType"] == OCI_MANIFEST
    assert "lastRecordedPullTime" not in a and "subjectManifestDigest" not in a
    d = details[g["d"].digest]
    assert d["imageManifestMediaType"] == DOCKER_MANIFEST and d["artifactMediaType"] == DOCKER_CONFIG
    assert "imageTags" not in details[g["u1"].digest]
    index = details[sha256(g["index"])]
    assert index["imageManifestMediaType"] == OCI_INDEX and "artifactMediaType" not in index
    assert index["imageSizeInBytes"] == max(g["amd"].size, g["arm"].size)  # ECR: the largest child
    sbom = details[g["sbom"].digest]
    assert sbom["subjectManifestDigest"] == g["a"].digest
    assert sbom["artifactMediaType"] == "application/spdx+json"

    by_ids = ecr.describe_images(repositoryName=repo, imageIds=[{"imageTag": "a2"}, {"imageDigest": g["b"].digest},
                                                                {"imageTag": "a1"}])["imageDetails"]
    assert [x["imageDigest"] for x in by_ids] == [g["a"].digest, g["b"].digest]
    assert by_ids[0] == details[g["a"].digest]
    both = ecr.describe_images(repositoryName=repo, imageIds=[{"imageTag": "b1", "imageDigest": g["b"].digest}])
    assert [x["imageDigest"] for x in both["imageDetails"]] == [g["b"].digest]

    for missing in ({"imageTag": "nope"}, {"imageDigest": sha256(b"nothing")},
                    {"imageTag": "a1", "imageDigest": g["b"].digest}):
        with pytest.raises(ecr.exceptions.ImageNotFoundException) as nf:
            ecr.describe_images(repositoryName=repo, imageIds=[{"imageTag": "b1"}, missing])
        assert f"within the repository with name '{repo}'" in str(nf.value)
    with pytest.raises(ecr.exceptions.InvalidParameterException):
        ecr.describe_images(repositoryName=repo, imageIds=[{"imageTag": "a1"}], maxResults=5)
    for invalid in ({"imageDigest": "sha256:abc"}, {}):
        with pytest.raises(ecr.exceptions.InvalidParameterException):
            ecr.describe_images(repositoryName=repo, imageIds=[invalid])
    with pytest.raises(ecr.exceptions.RepositoryNotFoundException):
        ecr.describe_images(repositoryName="no-such-repository")

    tagged = ecr.describe_images(repositoryName=repo, filter={"tagStatus": "TAGGED"})["imageDetails"]
    assert sorted(x["imageDigest"] for x in tagged) == sorted(
        {g["a"].digest, g["b"].digest, g["d"].digest, sha256(g["index"])})
    untagged = ecr.describe_images(repositoryName=repo, filter={"tagStatus": "UNTAGGED"})["imageDetails"]
    assert len(untagged) == 5 and all("imageTags" not in x for x in untagged)
    pages = list(ecr.get_paginator("describe_images").paginate(repositoryName=repo,
                                                                PaginationConfig={"PageSize": 4}))
    assert [len(p["imageDetails"]) for p in pages] == [4, 4, 1]
    assert {x["imageDigest"] for p in pages for x in p["imageDetails"]} == set(details)


def test_last_recorded_pull_time(ecr: BaseClient, oci: Oci) -> None:
    repo = new_repo(ecr, oci, "pulltime")
    image, other = make_image(), make_image()
    oci.push(repo, image, "v1")
    oci.push(repo, other, "v2")

    def pulled(tag: str, wait: bool = True) -> float | None:
        deadline = time.time() + 10
        while True:
            d = ecr.describe_images(repositoryName=repo, imageIds=[{"imageTag": tag}])["imageDetails"][0]
            if "lastRecordedPullTime" in d or not wait or time.time() > deadline:
                return d["lastRecordedPullTime"].timestamp() if "lastRecordedPullTime" in d else None
            time.sleep(0.05)

    assert pulled("v1", wait=False) is None
    assert oci.get(repo, "v1", "HEAD").status_code == 200  # a HEAD is not a pull
    time.sleep(0.5)
    assert pulled("v1", wait=False) is None
    start = time.time()
    assert oci.get(repo, "v1").content == image.body
    first = pulled("v1")
    assert first is not None and start - 1 <= first <= time.time() + 1
    for _ in range(3):  # by tag (answered from the pull cache) and by digest: recorded at most hourly
        assert oci.get(repo, "v1").status_code == 200
        assert oci.get(repo, image.digest).status_code == 200
    time.sleep(0.5)
    assert pulled("v1") == first
    assert pulled("v2", wait=False) is None
    ecr.batch_get_image(repositoryName=repo, imageIds=[{"imageTag": "v2"}])  # the ECR face's pull
    assert pulled("v2") is not None


# ------------------------------------------------------------------------------------------------
# BatchGetImage, BatchDeleteImage


def test_batch_get_image(ecr: BaseClient, gallery: dict[str, Any]) -> None:
    g, repo = gallery, gallery["repo"]
    a, d = g["a"], g["d"]
    req = [{"imageTag": "a1"}, {"imageDigest": a.digest}, {"imageTag": "a2", "imageDigest": a.digest},
           {"imageTag": "d1"}, {"imageTag": "missing"}, {"imageDigest": sha256(b"missing")},
           {"imageTag": "b1", "imageDigest": a.digest}, {"imageDigest": "sha256:0123"}, {"imageTag": "bad tag!"}, {}]
    got = ecr.batch_get_image(repositoryName=repo, imageIds=req)
    images = [(i["imageId"], i["imageManifest"], i["imageManifestMediaType"]) for i in got["images"]]
    assert images == [
        ({"imageDigest": a.digest, "imageTag": "a1"}, a.body.decode(), OCI_MANIFEST),
        ({"imageDigest": a.digest}, a.body.decode(), OCI_MANIFEST),
        ({"imageDigest": a.digest, "imageTag": "a2"}, a.body.decode(), OCI_MANIFEST),
        ({"imageDigest": d.digest, "imageTag": "d1"}, d.body.decode(), DOCKER_MANIFEST),
    ]
    assert all(i["registryId"] == ACCOUNT and i["repositoryName"] == repo for i in got["images"])
    assert [(f["imageId"], f["failureCode"]) for f in got["failures"]] == [
        ({"imageTag": "missing"}, "ImageNotFound"),
        ({"imageDigest": sha256(b"missing")}, "ImageNotFound"),
        ({"imageTag": "b1", "imageDigest": a.digest}, "ImageTagDoesNotMatchDigest"),
        ({"imageDigest": "sha256:0123"}, "InvalidImageDigest"),
        ({"imageTag": "bad tag!"}, "InvalidImageTag"),
        ({}, "MissingDigestAndTag"),
    ]
    assert all(f["failureReason"] for f in got["failures"])

    docker_only = ecr.batch_get_image(repositoryName=repo, imageIds=[{"imageTag": "a1"}, {"imageTag": "d1"}],
                                      acceptedMediaTypes=[DOCKER_MANIFEST])
    assert [i["imageId"]["imageTag"] for i in docker_only["images"]] == ["d1"]
    assert [(f["imageId"], f["failureCode"]) for f in docker_only["failures"]] == [
        ({"imageTag": "a1"}, "ImageNotFound")]
    index = ecr.batch_get_image(repositoryName=repo, imageIds=[{"imageTag": "multi"}],
                                acceptedMediaTypes=[OCI_MANIFEST, OCI_INDEX])["images"]
    assert index[0]["imageManifest"] == g["index"].decode() and index[0]["imageManifestMediaType"] == OCI_INDEX
    with pytest.raises(ecr.exceptions.RepositoryNotFoundException):
        ecr.batch_get_image(repositoryName="no-such-repository", imageIds=[{"imageTag": "a1"}])


def test_batch_delete_image(ecr: BaseClient, oci: Oci) -> None:
    repo = new_repo(ecr, oci, "delete")
    x, y, u = make_image(), make_image(), make_image()
    amd, arm = make_image(arch="amd64"), make_image(arch="arm64")
    oci.push(repo, x, "x1")
    oci.manifest(repo, "x2", x.body, x.media_type)
    oci.push(repo, y, "y1")
    oci.manifest(repo, "y2", y.body, y.media_type)
    oci.push(repo, u)
    oci.push(repo, amd, "amd")
    oci.push(repo, arm)
    index = make_index([amd, arm])
    oci.manifest(repo, "multi", index, OCI_INDEX)

    # by tag: untag; the last tag takes the image with it
    r = ecr.batch_delete_image(repositoryName=repo, imageIds=[{"imageTag": "x1"}])
    assert {k: v for k, v in r.items() if k != "ResponseMetadata"} == {
        "imageIds": [{"imageDigest": x.digest, "imageTag": "x1"}], "failures": []}
    assert ecr.describe_images(repositoryName=repo, imageIds=[{"imageDigest": x.digest}]
                               )["imageDetails"][0]["imageTags"] == ["x2"]
    r = ecr.batch_delete_image(repositoryName=repo, imageIds=[{"imageTag": "x2", "imageDigest": x.digest}])
    assert r["imageIds"] == [{"imageDigest": x.digest, "imageTag": "x2"}] and r["failures"] == []
    with pytest.raises(ecr.exceptions.ImageNotFoundException):
        ecr.describe_images(repositoryName=repo, imageIds=[{"imageDigest": x.digest}])

    # by digest: the image and all its tags; one call, partial failures
    r = ecr.batch_delete_image(repositoryName=repo, imageIds=[
        {"imageDigest": y.digest}, {"imageDigest": u.digest}, {"imageDigest": amd.digest}, {"imageTag": "amd"},
        {"imageDigest": arm.digest}, {"imageTag": "y1"}, {"imageTag": "multi", "imageDigest": y.digest},
        {"imageDigest": "sha256:12"}, {"imageTag": "no/such"}, {}])
    assert r["imageIds"] == [{"imageDigest": y.digest, "imageTag": "y1"}, {"imageDigest": y.digest, "imageTag": "y2"},
                             {"imageDigest": u.digest}]
    assert [(f["imageId"], f["failureCode"]) for f in r["failures"]] == [
        ({"imageDigest": amd.digest}, "ImageReferencedByManifestList"),
        ({"imageTag": "amd"}, "ImageReferencedByManifestList"),  # its last tag: the index still needs it
        ({"imageDigest": arm.digest}, "ImageReferencedByManifestList"),
        ({"imageTag": "y1"}, "ImageNotFound"),
        ({"imageTag": "multi", "imageDigest": y.digest}, "ImageTagDoesNotMatchDigest"),
        ({"imageDigest": "sha256:12"}, "InvalidImageDigest"),
        ({"imageTag": "no/such"}, "InvalidImageTag"),
        ({}, "MissingDigestAndTag"),
    ]
    assert by_key(ecr.list_images(repositoryName=repo)["imageIds"]) == sorted(
        [(amd.digest, "amd"), (arm.digest, ""), (sha256(index), "multi")])

    # the index first, then its children can go
    r = ecr.batch_delete_image(repositoryName=repo, imageIds=[{"imageTag": "multi"}, {"imageTag": "amd"},
                                                              {"imageDigest": arm.digest}])
    assert r["failures"] == [] and len(r["imageIds"]) == 3
    assert ecr.list_images(repositoryName=repo)["imageIds"] == []
    with pytest.raises(ecr.exceptions.RepositoryNotFoundException):
        ecr.batch_delete_image(repositoryName="no-such-repository", imageIds=[{"imageTag": "a"}])


# ------------------------------------------------------------------------------------------------
# PutImage


def test_put_image(ecr: BaseClient, oci: Oci) -> None:
    repo = new_repo(ecr, oci, "putimage")
    image = make_image()
    put_layers(ecr, repo, image)
    manifest = image.body.decode()

    with pytest.raises(ecr.exceptions.ImageDigestDoesNotMatchException):
        ecr.put_image(repositoryName=repo, imageManifest=manifest, imageDigest=sha256(b"other"))
    untagged = ecr.put_image(repositoryName=repo, imageManifest=manifest, imageDigest=image.digest)["image"]
    assert untagged["imageId"] == {"imageDigest": image.digest}
    with pytest.raises(ecr.exceptions.ImageAlreadyExistsException):
        ecr.put_image(repositoryName=repo, imageManifest=manifest)
    ecr.put_image(repositoryName=repo, imageManifest=manifest, imageTag="v1")
    with pytest.raises(ecr.exceptions.ImageAlreadyExistsException):
        ecr.put_image(repositoryName=repo, imageManifest=manifest, imageTag="v1")
    retag = ecr.put_image(repositoryName=repo, imageManifest=manifest, imageTag="v2", imageDigest=image.digest)
    assert retag["image"]["imageId"] == {"imageDigest": image.digest, "imageTag": "v2"}
    assert ecr.describe_images(repositoryName=repo)["imageDetails"][0]["imageTags"] == ["v1", "v2"]

    # a mutable tag moves to another manifest
    docker = make_image(media_type=DOCKER_MANIFEST)
    put_layers(ecr, repo, docker)
    moved = ecr.put_image(repositoryName=repo, imageManifest=docker.body.decode(), imageTag="v2",
                          imageManifestMediaType=DOCKER_MANIFEST)["image"]
    assert moved["imageManifestMediaType"] == DOCKER_MANIFEST
    assert ecr.batch_get_image(repositoryName=repo, imageIds=[{"imageTag": "v2"}]
                               )["images"][0]["imageId"]["imageDigest"] == docker.digest

    missing = make_image()
    with pytest.raises(ecr.exceptions.LayersNotFoundException) as e:
        ecr.put_image(repositoryName=repo, imageManifest=missing.body.decode(), imageTag="m")
    assert sha256(missing.config) in str(e.value)
    amd = make_image()
    put_layers(ecr, repo, amd)
    ecr.put_image(repositoryName=repo, imageManifest=amd.body.decode())
    with pytest.raises(ecr.exceptions.ReferencedImagesNotFoundException):
        ecr.put_image(repositoryName=repo, imageManifest=make_index([amd, missing]).decode(), imageTag="multi")
    ecr.put_image(repositoryName=repo, imageManifest=make_index([amd]).decode(), imageTag="multi",
                  imageManifestMediaType=OCI_INDEX)

    with pytest.raises(ecr.exceptions.InvalidParameterException) as bad:
        ecr.put_image(repositoryName=repo, imageManifest="{not json", imageTag="bad")
    assert "ImageManifest" in str(bad.value)
    with pytest.raises(ecr.exceptions.InvalidParameterException):  # mediaType disagrees with the document
        ecr.put_image(repositoryName=repo, imageManifest=manifest, imageTag="x", imageManifestMediaType=DOCKER_MANIFEST)
    with pytest.raises(ecr.exceptions.InvalidParameterException):
        ecr.put_image(repositoryName=repo, imageManifest=manifest, imageTag="bad tag")
    with pytest.raises(ecr.exceptions.RepositoryNotFoundException):
        ecr.put_image(repositoryName="no-such-repository", imageManifest=manifest, imageTag="v1")


def test_put_image_immutable_tag(ecr: BaseClient, oci: Oci) -> None:
    repo = new_repo(ecr, oci, "immutable", imageTagMutability="IMMUTABLE")
    one, two = make_image(), make_image()
    put_layers(ecr, repo, one)
    put_layers(ecr, repo, two)
    ecr.put_image(repositoryName=repo, imageManifest=one.body.decode(), imageTag="v1")
    with pytest.raises(ecr.exceptions.ImageTagAlreadyExistsException):
        ecr.put_image(repositoryName=repo, imageManifest=two.body.decode(), imageTag="v1")
    with pytest.raises(ecr.exceptions.ImageAlreadyExistsException):
        ecr.put_image(repositoryName=repo, imageManifest=one.body.decode(), imageTag="v1")


# ------------------------------------------------------------------------------------------------
# ListImageReferrers


def test_list_image_referrers(ecr: BaseClient, oci: Oci) -> None:
    repo = new_repo(ecr, oci, "referrers")
    subject = make_image()
    oci.push(repo, subject, "app")
    arts = [make_image(subject=subject, artifact_type="application/spdx+json", annotations={"n": "1"}),
            make_image(subject=subject, artifact_type="application/vnd.cncf.notary.signature"),
            make_image(subject=subject, artifact_type="application/spdx+json", layers=2)]
    for art in arts:
        oci.push(repo, art)

    listed = ecr.list_image_referrers(repositoryName=repo, subjectId={"imageDigest": subject.digest})
    assert "nextToken" not in listed
    expected = sorted(
        ({"digest": a.digest, "mediaType": OCI_MANIFEST, "artifactType": json.loads(a.body)["artifactType"],
          "size": len(a.body), **({"annotations": {"n": "1"}} if a is arts[0] else {}), "artifactStatus": "ACTIVE"}
         for a in arts), key=lambda r: r["digest"])
    assert listed["referrers"] == expected

    oci_view = oci.client.get(f"/v2/{repo}/referrers/{subject.digest}").json()["manifests"]
    assert [(m["digest"], m["size"], m["artifactType"]) for m in oci_view] == \
        [(r["digest"], r["size"], r["artifactType"]) for r in expected]

    spdx = ecr.list_image_referrers(repositoryName=repo, subjectId={"imageDigest": subject.digest},
                                    filter={"artifactTypes": ["application/spdx+json"]})["referrers"]
    assert [r["digest"] for r in spdx] == [r["digest"] for r in expected if r["artifactType"].endswith("spdx+json")]
    first = ecr.list_image_referrers(repositoryName=repo, subjectId={"imageDigest": subject.digest}, maxResults=2)
    rest = ecr.list_image_referrers(repositoryName=repo, subjectId={"imageDigest": subject.digest}, maxResults=2,
                                    nextToken=first["nextToken"])
    assert first["referrers"] + rest["referrers"] == expected and "nextToken" not in rest
    assert ecr.list_image_referrers(repositoryName=repo, subjectId={"imageDigest": sha256(b"none")}
                                    )["referrers"] == []
    assert ecr.list_image_referrers(repositoryName=repo, subjectId={"imageDigest": subject.digest},
                                    filter={"artifactStatus": "ARCHIVED"})["referrers"] == []
    with pytest.raises(ecr.exceptions.RepositoryNotFoundException):
        ecr.list_image_referrers(repositoryName="no-such-repository", subjectId={"imageDigest": subject.digest})


# ------------------------------------------------------------------------------------------------
# Layer upload errors, BatchCheckLayerAvailability failures, GetDownloadUrlForLayer


def test_layer_upload_errors(ecr: BaseClient, oci: Oci) -> None:
    repo = new_repo(ecr, oci, "layers")
    init = ecr.initiate_layer_upload(repositoryName=repo)
    assert set(init) - {"ResponseMetadata"} == {"uploadId", "partSize"}
    assert uuid.UUID(init["uploadId"]) and init["partSize"] > 0
    upload = init["uploadId"]

    with pytest.raises(ecr.exceptions.EmptyUploadException):
        ecr.complete_layer_upload(repositoryName=repo, uploadId=upload, layerDigests=[sha256(b"")])
    with pytest.raises(ecr.exceptions.UploadNotFoundException):
        ecr.upload_layer_part(repositoryName=repo, uploadId=str(uuid.uuid4()), partFirstByte=0, partLastByte=2,
                              layerPartBlob=b"abc")
    data = os.urandom(3000)
    ecr.upload_layer_part(repositoryName=repo, uploadId=upload, partFirstByte=0, partLastByte=999,
                          layerPartBlob=data[:1000])
    with pytest.raises(ecr.exceptions.InvalidLayerPartException) as gap:
        ecr.upload_layer_part(repositoryName=repo, uploadId=upload, partFirstByte=1500, partLastByte=2999,
                              layerPartBlob=data[1500:])
    err = gap.value.response
    assert err["lastValidByteReceived"] == 999
    assert (err["registryId"], err["repositoryName"], err["uploadId"]) == (ACCOUNT, repo, upload)
    with pytest.raises(ecr.exceptions.InvalidLayerPartException):  # the range and the data disagree
        ecr.upload_layer_part(repositoryName=repo, uploadId=upload, partFirstByte=1000, partLastByte=2999,
                              layerPartBlob=data[1000:2000])
    ecr.upload_layer_part(repositoryName=repo, uploadId=upload, partFirstByte=1000, partLastByte=2999,
                          layerPartBlob=data[1000:])
    with pytest.raises(ecr.exceptions.InvalidParameterException):
        ecr.complete_layer_upload(repositoryName=repo, uploadId=upload, layerDigests=[sha256(data)] * 2)
    with pytest.raises(ecr.exceptions.InvalidLayerException):
        ecr.complete_layer_upload(repositoryName=repo, uploadId=upload, layerDigests=[sha256(data[:-1])])
    with pytest.raises(ecr.exceptions.UploadNotFoundException):  # a failed verification ends the upload
        ecr.complete_layer_upload(repositoryName=repo, uploadId=upload, layerDigests=[sha256(data)])

    image = make_image()
    put_layers(ecr, repo, image)
    again = ecr.initiate_layer_upload(repositoryName=repo)["uploadId"]
    ecr.upload_layer_part(repositoryName=repo, uploadId=again, partFirstByte=0, partLastByte=len(image.config) - 1,
                          layerPartBlob=image.config)
    with pytest.raises(ecr.exceptions.LayerAlreadyExistsException):
        ecr.complete_layer_upload(repositoryName=repo, uploadId=again, layerDigests=[sha256(image.config)])

    other = new_repo(ecr, oci, "layers-other")
    up = ecr.initiate_layer_upload(repositoryName=other)["uploadId"]
    with pytest.raises(ecr.exceptions.UploadNotFoundException):  # an upload belongs to its repository
        ecr.upload_layer_part(repositoryName=repo, uploadId=up, partFirstByte=0, partLastByte=0, layerPartBlob=b"x")
    with pytest.raises(ecr.exceptions.RepositoryNotFoundException):
        ecr.initiate_layer_upload(repositoryName="no-such-repository")

    check = ecr.batch_check_layer_availability(repositoryName=repo, layerDigests=[
        sha256(image.config), "", "sha256:abcd", sha256(b"absent")])
    assert check["layers"] == [
        {"layerDigest": sha256(image.config), "layerAvailability": "AVAILABLE", "layerSize": len(image.config)},
        {"layerDigest": sha256(b"absent"), "layerAvailability": "UNAVAILABLE"}]  # not in an image yet: no type
    assert [(f["layerDigest"], f["failureCode"]) for f in check["failures"]] == [
        ("", "MissingLayerDigest"), ("sha256:abcd", "InvalidLayerDigest")]


def test_upload_continues_across_faces(ecr: BaseClient, oci: Oci) -> None:
    """An upload started with InitiateLayerUpload is an ordinary upload session on the /v2 face too."""
    repo = new_repo(ecr, oci, "crossface")
    data = os.urandom(4096)
    upload = ecr.initiate_layer_upload(repositoryName=repo)["uploadId"]
    ecr.upload_layer_part(repositoryName=repo, uploadId=upload, partFirstByte=0, partLastByte=2047,
                          layerPartBlob=data[:2048])
    r = oci.client.put(f"/v2/{repo}/blobs/uploads/{upload}", params={"digest": sha256(data)}, content=data[2048:],
                       headers={"Content-Type": "application/octet-stream"})
    assert r.status_code == 201, r.text
    assert oci.client.get(f"/v2/{repo}/blobs/{sha256(data)}").content == data


def test_get_download_url_for_layer(server: BerthServer, ecr: BaseClient, oci: Oci) -> None:
    repo = new_repo(ecr, oci, "download")
    image = make_image()
    oci.push(repo, image, "v1")
    layer = image.layers[0]
    r = ecr.get_download_url_for_layer(repositoryName=repo, layerDigest=sha256(layer))
    assert set(r) - {"ResponseMetadata"} == {"downloadUrl", "layerDigest"}
    assert r["layerDigest"] == sha256(layer)
    url = r["downloadUrl"]
    assert url.startswith(f"{server.url}/v2/{repo}/blobs/{sha256(layer)}?X-Berth-Key=")
    got = httpx.get(url)  # no Authorization header: the URL carries its credential
    assert got.status_code == 200 and got.content == layer

    query = url.split("?", 1)[1]  # bound to this blob: tests/integration/test_identity_security.py
    assert httpx.get(f"{server.url}/v2/{repo}/blobs/{sha256(layer)}").status_code == 401
    assert httpx.get(f"{server.url}/v2/{repo}/manifests/v1?{query}").status_code == 401
    assert httpx.head(url).status_code == 401  # blob GET only
    assert httpx.get(url.replace("X-Berth-Signature=", "X-Berth-Signature=x")).status_code == 401

    with pytest.raises(ecr.exceptions.LayersNotFoundException):
        ecr.get_download_url_for_layer(repositoryName=repo, layerDigest=sha256(b"absent"))
    loose = os.urandom(100)
    oci.blob(repo, loose)  # in the repository, but in no image
    with pytest.raises(ecr.exceptions.LayerInaccessibleException):
        ecr.get_download_url_for_layer(repositoryName=repo, layerDigest=sha256(loose))
    with pytest.raises(ecr.exceptions.InvalidParameterException):
        ecr.get_download_url_for_layer(repositoryName=repo, layerDigest="sha256:abc")
    with pytest.raises(ecr.exceptions.RepositoryNotFoundException):
        ecr.get_download_url_for_layer(repositoryName="no-such-repository", layerDigest=sha256(layer))
