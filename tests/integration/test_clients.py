"""Real clients against a real `berth serve`: skopeo, umoci, buildah, podman and oras.

Every test runs once on the embedded SQLite store and once on PostgreSQL (the `berth` fixture).
Images are built once per session (tests/integration/conftest.py) and pushed to each server; what
comes back is compared byte for byte with what went in: manifest digests, every blob, and the files
a layer-by-layer unpack gives.
"""

from __future__ import annotations

import json
import os
import subprocess
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest

from tests.support.images import (
    DOCKER_LIST,
    DOCKER_MANIFEST,
    OCI_INDEX,
    OCI_MANIFEST,
    BlobSource,
    BuildahImages,
    ContainerTool,
    OciLayout,
    UmociImages,
    image_closure,
    read_rootfs,
    run,
    sha256_digest,
)
from tests.support.servers import BerthServer, require_tool

pytestmark = pytest.mark.integration

ACCEPT_ALL = ", ".join([OCI_MANIFEST, OCI_INDEX, DOCKER_MANIFEST, DOCKER_LIST])
MakeTool = Callable[[str, str], ContainerTool]
EMPTY_JSON = b"{}"
EMPTY_JSON_DIGEST = "sha256:44136fa355b3678a1146ad16f7e8649e94fb4fc21fe77e8310c060f61caaff8a"


def skopeo(*args: str | Path, timeout: float = 120) -> str:
    return run(["skopeo", *args], timeout=timeout).stdout


def get_manifest(berth: BerthServer, repo: str, ref: str, accept: str = ACCEPT_ALL) -> httpx.Response:
    r = httpx.get(f"{berth.url}/v2/{repo}/manifests/{ref}", headers={"Accept": accept})
    assert r.status_code == 200, (r.status_code, r.text)
    assert r.headers["docker-content-digest"] == sha256_digest(r.content)
    return r


def read_digestfile(path: Path) -> str:
    digest = path.read_text().strip()
    assert digest.startswith("sha256:") and len(digest) == 71, digest
    return digest


# 1. A multi-layer umoci image: skopeo push, pull back as OCI and as Docker schema 2


def test_skopeo_roundtrip_of_multilayer_umoci_image_is_byte_identical(
        berth: BerthServer, umoci_images: UmociImages, tmp_path: Path) -> None:
    require_tool("skopeo")
    img = umoci_images.app
    repo = "clients/umoci-app"
    ref = f"docker://{berth.host}/{repo}:v1"
    pushed = image_closure(img.layout, img.digest)
    manifest = img.layout.json(img.digest)
    assert len(manifest["layers"]) == 3 and len(pushed) == 5  # manifest, config, three layers

    skopeo("copy", "--dest-tls-verify=false", "--digestfile", tmp_path / "digest", f"oci:{img.layout.root}:app", ref)
    assert read_digestfile(tmp_path / "digest") == img.digest

    # The registry keeps the manifest's exact bytes, and every blob's.
    r = get_manifest(berth, repo, "v1")
    assert r.headers["content-type"] == OCI_MANIFEST
    assert r.headers["docker-content-digest"] == img.digest
    assert r.content == pushed[img.digest]
    assert sha256_digest(skopeo("inspect", "--raw", "--tls-verify=false", ref).encode()) == img.digest
    assert get_manifest(berth, repo, img.digest).content == pushed[img.digest]
    for digest, data in pushed.items():
        if digest == img.digest:
            continue
        b = httpx.get(f"{berth.url}/v2/{repo}/blobs/{digest}")
        assert b.status_code == 200 and b.content == data, digest
        assert b.headers["docker-content-digest"] == digest

    # Pull back into a fresh OCI layout: same manifest digest, the same blobs and nothing else.
    out = OciLayout(tmp_path / "pulled")
    skopeo("copy", "--src-tls-verify=false", ref, f"oci:{out.root}:v1")
    assert out.digest("v1") == img.digest
    assert image_closure(out, img.digest) == pushed
    assert out.all_blobs() == {d: d for d in pushed}
    files = read_rootfs(out, img.digest)
    assert files == img.files
    assert "usr/share/app/data.bin" not in files  # deleted by the third layer's whiteout
    assert files["etc/app.conf"] == b"greeting=bonjour\n"

    # The image configuration umoci wrote comes back as written.
    cfg = json.loads(skopeo("inspect", "--config", "--tls-verify=false", ref))
    assert cfg == img.config
    assert cfg["config"]["Cmd"] == ["/usr/bin/hello"]
    assert cfg["config"]["Entrypoint"] == ["/bin/sh"]
    assert "GREETING=bonjour" in cfg["config"]["Env"]
    assert cfg["config"]["WorkingDir"] == "/srv"
    assert cfg["config"]["User"] == "1000:1000"
    assert cfg["config"]["Labels"] == {"org.example.built-by": "umoci"}
    assert cfg["rootfs"]["diff_ids"] and len(cfg["rootfs"]["diff_ids"]) == 3


def test_skopeo_docker_schema2_push_and_pull(berth: BerthServer, umoci_images: UmociImages, tmp_path: Path) -> None:
    require_tool("skopeo")
    img = umoci_images.app
    oci_manifest = img.layout.json(img.digest)
    repo = "clients/umoci-v2s2"
    ref = f"docker://{berth.host}/{repo}:v1"

    skopeo("copy", "--format", "v2s2", "--dest-tls-verify=false", "--digestfile", tmp_path / "digest",
           f"oci:{img.layout.root}:app", ref)
    digest = read_digestfile(tmp_path / "digest")
    assert digest != img.digest  # a different manifest: Docker schema 2

    r = get_manifest(berth, repo, "v1")
    assert r.headers["content-type"] == DOCKER_MANIFEST
    assert r.headers["docker-content-digest"] == digest
    doc = r.json()
    assert doc["mediaType"] == DOCKER_MANIFEST
    assert doc["config"]["mediaType"] == "application/vnd.docker.container.image.v1+json"
    assert doc["config"]["digest"] == oci_manifest["config"]["digest"]
    assert [lyr["mediaType"] for lyr in doc["layers"]] == ["application/vnd.docker.image.rootfs.diff.tar.gzip"] * 3
    assert [lyr["digest"] for lyr in doc["layers"]] == [lyr["digest"] for lyr in oci_manifest["layers"]]
    assert httpx.head(f"{berth.url}/v2/{repo}/manifests/{digest}",
                      headers={"Accept": DOCKER_MANIFEST}).headers["content-type"] == DOCKER_MANIFEST

    # skopeo's dir: transport keeps the manifest as served: same bytes, same blobs.
    out = tmp_path / "dir"
    skopeo("copy", "--src-tls-verify=false", ref, f"dir:{out}")
    assert (out / "manifest.json").read_bytes() == r.content
    pulled = BlobSource(out, "dir")
    for desc in (doc["config"], *doc["layers"]):
        assert pulled.read(desc["digest"]) == img.layout.read(desc["digest"])
    assert read_rootfs(pulled, doc) == img.files


# 2. A multi-architecture index


def test_skopeo_multiarch_index_all(berth: BerthServer, umoci_images: UmociImages, tmp_path: Path) -> None:
    require_tool("skopeo")
    layout, index_digest = umoci_images.layout, umoci_images.index_digest
    repo = "clients/multiarch"
    ref = f"docker://{berth.host}/{repo}:v1"
    pushed = image_closure(layout, index_digest)
    expected_children = {"amd64": umoci_images.amd64.digest, "arm64": umoci_images.arm64.digest}

    skopeo("copy", "--all", "--dest-tls-verify=false", "--digestfile", tmp_path / "digest",
           f"oci:{layout.root}:{umoci_images.index_tag}", ref)
    assert read_digestfile(tmp_path / "digest") == index_digest

    raw = skopeo("inspect", "--raw", "--tls-verify=false", ref).encode()
    assert raw == pushed[index_digest]
    r = get_manifest(berth, repo, "v1")
    assert r.headers["content-type"] == OCI_INDEX
    assert r.content == pushed[index_digest]
    index = r.json()
    assert index["mediaType"] == OCI_INDEX
    assert {m["platform"]["architecture"]: m["digest"] for m in index["manifests"]} == expected_children
    for child in index["manifests"]:
        c = get_manifest(berth, repo, child["digest"])
        assert c.content == pushed[child["digest"]]
        assert c.headers["content-type"] == OCI_MANIFEST

    # skopeo inspect resolves the index to the platform asked for.
    arm = json.loads(skopeo("inspect", "--override-arch", "arm64", "--override-os", "linux", "--tls-verify=false", ref))
    assert arm["Architecture"] == "arm64" and arm["Digest"] == index_digest
    assert arm["Layers"] == [lyr["digest"] for lyr in layout.json(umoci_images.arm64.digest)["layers"]]

    # Pull everything back: the same index and every child's blobs, byte for byte.
    out = OciLayout(tmp_path / "all")
    skopeo("copy", "--all", "--src-tls-verify=false", ref, f"oci:{out.root}:v1")
    assert out.digest("v1") == index_digest
    assert image_closure(out, index_digest) == pushed
    assert out.all_blobs() == {d: d for d in pushed}

    # And one platform alone.
    one = OciLayout(tmp_path / "arm64")
    skopeo("copy", "--override-arch", "arm64", "--override-os", "linux", "--src-tls-verify=false", ref,
           f"oci:{one.root}:arm")
    assert one.digest("arm") == umoci_images.arm64.digest
    assert read_rootfs(one, umoci_images.arm64.digest) == {"arch": b"arm64\n"}

    # A child an index still points at cannot be deleted (ECR: ImageReferencedByManifestList); the index
    # stays whole. Once the index is gone, the child can go.
    arm_ref = f"docker://{berth.host}/{repo}@{umoci_images.arm64.digest}"
    refused = subprocess.run(["skopeo", "delete", "--tls-verify=false", arm_ref], capture_output=True, text=True,
                             timeout=60)
    assert refused.returncode != 0 and "referenced by an index" in refused.stderr, refused.stderr
    assert get_manifest(berth, repo, umoci_images.arm64.digest).content == pushed[umoci_images.arm64.digest]
    skopeo("delete", "--tls-verify=false", ref)
    assert httpx.head(f"{berth.url}/v2/{repo}/manifests/{index_digest}").status_code == 404
    skopeo("delete", "--tls-verify=false", arm_ref)
    assert httpx.head(f"{berth.url}/v2/{repo}/manifests/{umoci_images.arm64.digest}").status_code == 404
    assert httpx.head(f"{berth.url}/v2/{repo}/manifests/{umoci_images.amd64.digest}").status_code == 200


def test_skopeo_docker_manifest_list(berth: BerthServer, umoci_images: UmociImages, tmp_path: Path) -> None:
    require_tool("skopeo")
    repo = "clients/docker-list"
    ref = f"docker://{berth.host}/{repo}:v1"
    skopeo("copy", "--all", "--format", "v2s2", "--dest-tls-verify=false", "--digestfile", tmp_path / "digest",
           f"oci:{umoci_images.layout.root}:{umoci_images.index_tag}", ref)
    digest = read_digestfile(tmp_path / "digest")
    r = get_manifest(berth, repo, "v1")
    assert r.headers["content-type"] == DOCKER_LIST
    assert r.headers["docker-content-digest"] == digest
    doc = r.json()
    assert doc["mediaType"] == DOCKER_LIST
    assert sorted(m["platform"]["architecture"] for m in doc["manifests"]) == ["amd64", "arm64"]
    assert {m["mediaType"] for m in doc["manifests"]} == {DOCKER_MANIFEST}

    out = tmp_path / "dir"
    skopeo("copy", "--all", "--src-tls-verify=false", ref, f"dir:{out}")
    assert (out / "manifest.json").read_bytes() == r.content
    pulled = BlobSource(out, "dir")
    for child in doc["manifests"]:
        body = (out / f"{child['digest'].split(':', 1)[1]}.manifest.json").read_bytes()
        assert sha256_digest(body) == child["digest"]
        c = get_manifest(berth, repo, child["digest"])
        assert c.content == body and c.headers["content-type"] == DOCKER_MANIFEST
        arch = child["platform"]["architecture"]
        assert read_rootfs(pulled, json.loads(body)) == {"arch": f"{arch}\n".encode()}


def test_docker_cli_manifest_create_and_push(berth: BerthServer, umoci_images: UmociImages, tmp_path: Path) -> None:
    """The docker CLI (no engine needed) assembles an index from two pushed images and pushes it."""
    require_tool("docker", "skopeo")
    repo = "clients/docker-cli"
    name = f"{berth.host}/{repo}"
    for img in (umoci_images.amd64, umoci_images.arm64):
        skopeo("copy", "--dest-tls-verify=false", f"oci:{img.layout.root}:{img.tag}", f"docker://{name}:{img.tag}")
    docker = ["docker", "--config", str(tmp_path / "docker-config")]
    run([*docker, "manifest", "create", "--insecure", f"{name}:multi", f"{name}:tiny-amd64", f"{name}:tiny-arm64"])
    pushed = run([*docker, "manifest", "push", "--insecure", f"{name}:multi"]).stdout.strip().splitlines()[-1]
    r = get_manifest(berth, repo, "multi")
    assert r.headers["docker-content-digest"] == pushed
    children = {m["platform"]["architecture"]: m["digest"] for m in r.json()["manifests"]}
    assert children == {"amd64": umoci_images.amd64.digest, "arm64": umoci_images.arm64.digest}
    shown = json.loads(run([*docker, "manifest", "inspect", "--insecure", f"{name}:multi"]).stdout)
    assert {m["digest"] for m in shown["manifests"]} == set(children.values())


# 3. buildah and podman, each with private storage


def test_buildah_push_pull_and_manifest_list(berth: BerthServer, buildah_images: BuildahImages, tmp_path: Path,
                                             container_tool: MakeTool) -> None:
    require_tool("buildah", "skopeo")
    b = buildah_images.tool
    name = f"{berth.host}/clients/buildah"

    b("push", "--tls-verify=false", "--digestfile", tmp_path / "digest", buildah_images.single, f"docker://{name}:v1")
    digest = read_digestfile(tmp_path / "digest")
    r = get_manifest(berth, "clients/buildah", "v1")
    assert r.headers["docker-content-digest"] == digest
    manifest = r.json()

    # A fresh buildah store pulls the very manifest, and the file inside is the one copied in.
    fresh = container_tool("buildah", "pull")
    fresh("pull", "--tls-verify=false", f"{name}:v1")
    info = json.loads(fresh("inspect", "--type", "image", f"{name}:v1"))
    assert info["FromImageDigest"] == digest
    assert info["FromImageID"] == manifest["config"]["digest"].split(":", 1)[1]
    layout = OciLayout(tmp_path / "pulled")
    skopeo("copy", "--src-tls-verify=false", f"docker://{name}:v1", f"oci:{layout.root}:v1")
    assert layout.digest("v1") == digest
    assert read_rootfs(layout, digest) == {"payload.txt": buildah_images.single_file}

    # A manifest list over two architectures, pushed with --all.
    multi = f"{berth.host}/clients/buildah-multi"
    b("manifest", "push", "--all", "--tls-verify=false", "--digestfile", tmp_path / "index.digest",
      buildah_images.manifest_list, f"docker://{multi}:v1")
    index_digest = read_digestfile(tmp_path / "index.digest")
    r = get_manifest(berth, "clients/buildah-multi", "v1")
    assert r.headers["docker-content-digest"] == index_digest
    assert r.headers["content-type"] in (OCI_INDEX, DOCKER_LIST)
    index = r.json()
    assert sorted(m["platform"]["architecture"] for m in index["manifests"]) == ["amd64", "arm64"]
    out = OciLayout(tmp_path / "multi")
    skopeo("copy", "--all", "--src-tls-verify=false", f"docker://{multi}:v1", f"oci:{out.root}:v1")
    assert out.digest("v1") == index_digest
    pulled = image_closure(out, index_digest)
    assert pulled[index_digest] == r.content
    for child in index["manifests"]:
        assert get_manifest(berth, "clients/buildah-multi", child["digest"]).content == pulled[child["digest"]]
        arch = child["platform"]["architecture"]
        assert read_rootfs(out, child["digest"]) == {"payload.txt": buildah_images.arch_files[arch]}

    # buildah picks the platform it is asked for out of the list.
    fresh("pull", "--arch", "arm64", "--tls-verify=false", f"{multi}:v1")
    info = json.loads(fresh("inspect", "--type", "image", f"{multi}:v1"))
    [arm] = [m["digest"] for m in index["manifests"] if m["platform"]["architecture"] == "arm64"]
    assert info["FromImageDigest"] == arm
    assert info["OCIv1"]["architecture"] == "arm64"


def test_podman_pull_push_pull(berth: BerthServer, umoci_images: UmociImages, tmp_path: Path,
                               container_tool: MakeTool) -> None:
    require_tool("podman", "skopeo")
    img = umoci_images.app
    config_digest = img.layout.json(img.digest)["config"]["digest"]
    src = f"{berth.host}/clients/podman-src:v1"
    dst = f"{berth.host}/clients/podman-dst:v2"
    skopeo("copy", "--dest-tls-verify=false", f"oci:{img.layout.root}:app", f"docker://{src}")

    first = container_tool("podman", "first")
    first("pull", "-q", "--tls-verify=false", src)
    [info] = json.loads(first("image", "inspect", src))
    assert info["Digest"] == img.digest
    assert info["Id"] == config_digest.split(":", 1)[1]
    assert f"{berth.host}/clients/podman-src@{img.digest}" in info["RepoDigests"]

    first("tag", src, dst)
    first("push", "--tls-verify=false", "--digestfile", tmp_path / "digest", dst)
    pushed = read_digestfile(tmp_path / "digest")
    r = get_manifest(berth, "clients/podman-dst", "v2")
    assert r.headers["docker-content-digest"] == pushed
    assert r.json()["config"]["digest"] == config_digest  # same image, whatever podman did to the layers
    assert len(r.json()["layers"]) == 3

    # A second, empty store pulls it by digest and holds the same files.
    by_digest = f"{berth.host}/clients/podman-dst@{pushed}"
    second = container_tool("podman", "second")
    second("pull", "-q", "--tls-verify=false", by_digest)
    [info] = json.loads(second("image", "inspect", by_digest))
    assert info["Digest"] == pushed
    assert info["Id"] == config_digest.split(":", 1)[1]
    saved = OciLayout(tmp_path / "saved")
    second("save", "-q", "--format", "oci-dir", "-o", saved.root, by_digest)
    [desc] = saved.index()["manifests"]
    assert read_rootfs(saved, desc["digest"]) == img.files

    # podman can also push Docker schema 2.
    v2s2 = f"{berth.host}/clients/podman-v2s2:v1"
    first("push", "--tls-verify=false", "--format", "v2s2", "--digestfile", tmp_path / "v2s2.digest", src,
          f"docker://{v2s2}")
    r = get_manifest(berth, "clients/podman-v2s2", "v1")
    assert r.headers["content-type"] == DOCKER_MANIFEST
    assert r.headers["docker-content-digest"] == read_digestfile(tmp_path / "v2s2.digest")
    assert r.json()["config"]["digest"] == config_digest


# 4. An OCI artifact with a subject (oras), and the referrers API


def test_oras_artifact_with_subject_and_referrers(berth: BerthServer, umoci_images: UmociImages,
                                                  tmp_path: Path) -> None:
    require_tool("skopeo")
    import oras.client
    import oras.oci

    img = umoci_images.app
    repo = "clients/artifacts"
    skopeo("copy", "--dest-tls-verify=false", f"oci:{img.layout.root}:app", f"docker://{berth.host}/{repo}:app")
    head = httpx.head(f"{berth.url}/v2/{repo}/manifests/app", headers={"Accept": ACCEPT_ALL})
    assert head.status_code == 200
    subject = oras.oci.Subject(mediaType=head.headers["content-type"], digest=head.headers["docker-content-digest"],
                               size=int(head.headers["content-length"]))
    assert subject.digest == img.digest and subject.size == len(img.layout.read(img.digest))

    # No referrers yet: an empty index, not a 404.
    empty = httpx.get(f"{berth.url}/v2/{repo}/referrers/{img.digest}")
    assert empty.status_code == 200, empty.text
    assert empty.headers["content-type"] == OCI_INDEX
    assert empty.json()["manifests"] == []

    sbom_type = "application/vnd.example.sbom.v1+json"
    files = tmp_path / "files"
    files.mkdir()
    (files / "sbom.spdx.json").write_text(json.dumps({"spdxVersion": "SPDX-2.3", "name": "umoci-app"}))
    (files / "notes.txt").write_bytes(b"not an image\n" * 100)
    (files / "config.json").write_text(json.dumps({"generator": "berth-tests"}))
    client = oras.client.OrasClient(hostname=berth.host, insecure=True)
    put = client.push(f"{berth.host}/{repo}:sbom", disable_path_validation=True, quiet=True,
                      files=[f"{files / 'sbom.spdx.json'}:application/spdx+json", str(files / "notes.txt")],
                      manifest_config=f"{files / 'config.json'}:{sbom_type}",
                      manifest_annotations={"org.example.kind": "sbom"}, subject=subject)
    assert put.status_code == 201, put.text
    assert put.headers["OCI-Subject"] == img.digest
    sbom_digest = put.headers["Docker-Content-Digest"]
    sbom = get_manifest(berth, repo, "sbom")
    assert sbom.headers["docker-content-digest"] == sbom_digest
    assert sbom.json()["subject"] == {"mediaType": OCI_MANIFEST, "digest": img.digest, "size": subject.size}
    assert sbom.headers["OCI-Subject"] == img.digest

    # A second referrer by hand, with an explicit artifactType and the empty config, pushed by digest only.
    sig_type = "application/vnd.example.signature.v1"
    sig_layer = b"-----BEGIN SIGNATURE-----\nberth\n-----END SIGNATURE-----\n"
    for blob in (EMPTY_JSON, sig_layer):
        up = httpx.post(f"{berth.url}/v2/{repo}/blobs/uploads/", params={"digest": sha256_digest(blob)}, content=blob,
                        headers={"Content-Type": "application/octet-stream"})
        assert up.status_code == 201, up.text
    sig_body = json.dumps({
        "schemaVersion": 2, "mediaType": OCI_MANIFEST, "artifactType": sig_type,
        "config": {"mediaType": "application/vnd.oci.empty.v1+json", "digest": EMPTY_JSON_DIGEST, "size": 2},
        "layers": [{"mediaType": "application/octet-stream", "digest": sha256_digest(sig_layer),
                    "size": len(sig_layer)}],
        "subject": {"mediaType": subject.mediaType, "digest": subject.digest, "size": subject.size},
        "annotations": {"org.example.kind": "signature"},
    }).encode()
    sig_digest = sha256_digest(sig_body)
    put = httpx.put(f"{berth.url}/v2/{repo}/manifests/{sig_digest}", content=sig_body,
                    headers={"Content-Type": OCI_MANIFEST})
    assert put.status_code == 201, put.text
    assert put.headers["OCI-Subject"] == img.digest
    assert put.headers["Docker-Content-Digest"] == sig_digest

    # The referrers API lists both, with their artifact types.
    refs = httpx.get(f"{berth.url}/v2/{repo}/referrers/{img.digest}")
    assert refs.status_code == 200, refs.text
    assert refs.headers["content-type"] == OCI_INDEX
    assert "oci-filters-applied" not in refs.headers
    listing = refs.json()
    assert listing["schemaVersion"] == 2 and listing["mediaType"] == OCI_INDEX
    by_digest = {m["digest"]: m for m in listing["manifests"]}
    assert set(by_digest) == {sbom_digest, sig_digest}
    assert by_digest[sbom_digest] == {"mediaType": OCI_MANIFEST, "digest": sbom_digest, "size": len(sbom.content),
                                      "artifactType": sbom_type, "annotations": {"org.example.kind": "sbom"}}
    assert by_digest[sig_digest] == {"mediaType": OCI_MANIFEST, "digest": sig_digest, "size": len(sig_body),
                                     "artifactType": sig_type, "annotations": {"org.example.kind": "signature"}}

    for wanted, digest in ((sbom_type, sbom_digest), (sig_type, sig_digest)):
        f = httpx.get(f"{berth.url}/v2/{repo}/referrers/{img.digest}", params={"artifactType": wanted})
        assert f.status_code == 200, f.text
        assert f.headers["OCI-Filters-Applied"] == "artifactType"
        assert [m["digest"] for m in f.json()["manifests"]] == [digest]
    none = httpx.get(f"{berth.url}/v2/{repo}/referrers/{img.digest}", params={"artifactType": "application/x-none"})
    assert none.status_code == 200 and none.json()["manifests"] == []

    # oras pulls the artifact's files back unchanged.
    out = tmp_path / "pulled"
    got = client.pull(f"{berth.host}/{repo}:sbom", outdir=str(out))
    assert sorted(Path(p).name for p in got) == ["notes.txt", "sbom.spdx.json"]
    for name in ("notes.txt", "sbom.spdx.json"):
        assert (out / name).read_bytes() == (files / name).read_bytes()

    # A chunked upload (PATCH after PATCH), a third referrer, and the files come back.
    (files / "big.bin").write_bytes(os.urandom(300_000))
    put = client.push(f"{berth.host}/{repo}:big", disable_path_validation=True, quiet=True, do_chunked=True,
                      chunk_size=64 * 1024, files=[str(files / "big.bin")], subject=subject)
    assert put.status_code == 201, put.text
    big_digest = put.headers["Docker-Content-Digest"]
    got = client.pull(f"{berth.host}/{repo}:big", outdir=str(tmp_path / "big"))
    assert [Path(p).read_bytes() for p in got] == [(files / "big.bin").read_bytes()]
    listed = httpx.get(f"{berth.url}/v2/{repo}/referrers/{img.digest}").json()["manifests"]
    assert {m["digest"] for m in listed} == {sbom_digest, sig_digest, big_digest}

    # Deleting a referrer takes it out of the listing.
    assert httpx.delete(f"{berth.url}/v2/{repo}/manifests/{sig_digest}").status_code == 202
    listed = httpx.get(f"{berth.url}/v2/{repo}/referrers/{img.digest}").json()["manifests"]
    assert {m["digest"] for m in listed} == {sbom_digest, big_digest}
    f = httpx.get(f"{berth.url}/v2/{repo}/referrers/{img.digest}", params={"artifactType": sig_type})
    assert f.status_code == 200 and f.json()["manifests"] == []


# 5. Tags: skopeo list-tags, inspect and delete


def _list_tags(ref: str) -> list[str]:
    out = json.loads(skopeo("list-tags", "--tls-verify=false", ref))
    return sorted(out["Tags"] or [])


def test_skopeo_list_tags_inspect_delete(berth: BerthServer, umoci_images: UmociImages, tmp_path: Path) -> None:
    require_tool("skopeo")
    app, tiny = umoci_images.app, umoci_images.amd64
    repo = "clients/tags"
    base = f"docker://{berth.host}/{repo}"
    for source, tag in ((app, "v1"), (app, "stable"), (tiny, "tiny")):
        skopeo("copy", "--dest-tls-verify=false", f"oci:{source.layout.root}:{source.tag}", f"{base}:{tag}")

    assert _list_tags(base) == ["stable", "tiny", "v1"]
    info = json.loads(skopeo("inspect", "--tls-verify=false", f"{base}:v1"))
    assert info["Name"] == f"{berth.host}/{repo}"
    assert info["Digest"] == app.digest
    assert sorted(info["RepoTags"]) == ["stable", "tiny", "v1"]
    assert info["Layers"] == [lyr["digest"] for lyr in app.layout.json(app.digest)["layers"]]
    assert info["Architecture"] == "amd64" and info["Os"] == "linux"
    assert info["Labels"] == {"org.example.built-by": "umoci"}
    assert "GREETING=bonjour" in info["Env"]
    catalog = httpx.get(f"{berth.url}/v2/_catalog").json()["repositories"]
    assert repo in catalog

    # Deleting a tag with skopeo deletes its manifest (by digest): that tag goes, the others stay.
    skopeo("delete", "--tls-verify=false", f"{base}:tiny")
    assert _list_tags(base) == ["stable", "v1"]
    gone = httpx.get(f"{berth.url}/v2/{repo}/manifests/{tiny.digest}", headers={"Accept": ACCEPT_ALL})
    assert gone.status_code == 404
    assert gone.json()["errors"][0]["code"] == "MANIFEST_UNKNOWN"
    failed = subprocess.run(["skopeo", "inspect", "--tls-verify=false", f"{base}:tiny"], capture_output=True,
                            text=True, timeout=60)
    assert failed.returncode != 0 and "manifest unknown" in failed.stderr.lower(), failed.stderr
    assert get_manifest(berth, repo, "v1").headers["docker-content-digest"] == app.digest

    # Two tags on one manifest: deleting the manifest through one of them removes both.
    skopeo("delete", "--tls-verify=false", f"{base}:stable")
    assert _list_tags(base) == []
    assert httpx.head(f"{berth.url}/v2/{repo}/manifests/{app.digest}").status_code == 404

    # And the repository takes the image again; pushing another image to a tag moves the tag.
    skopeo("copy", "--dest-tls-verify=false", f"oci:{app.layout.root}:app", f"{base}:again")
    assert _list_tags(base) == ["again"]
    assert json.loads(skopeo("inspect", "--tls-verify=false", f"{base}:again"))["Digest"] == app.digest
    skopeo("copy", "--dest-tls-verify=false", f"oci:{tiny.layout.root}:{tiny.tag}", f"{base}:again")
    assert json.loads(skopeo("inspect", "--tls-verify=false", f"{base}:again"))["Digest"] == tiny.digest
    assert _list_tags(base) == ["again"]


def test_skopeo_copy_between_repositories_mounts_blobs(berth: BerthServer, umoci_images: UmociImages) -> None:
    require_tool("skopeo")
    app = umoci_images.app
    src = f"docker://{berth.host}/clients/mount-src:v1"
    dst = f"docker://{berth.host}/clients/mount-dst:v1"
    skopeo("copy", "--dest-tls-verify=false", f"oci:{app.layout.root}:app", src)
    copied = run(["skopeo", "--debug", "copy", "--src-tls-verify=false", "--dest-tls-verify=false", src, dst])
    assert "mount OK" in copied.stderr  # skopeo mounted from the source repository instead of uploading
    assert json.loads(skopeo("inspect", "--tls-verify=false", dst))["Digest"] == app.digest
    for digest, data in image_closure(app.layout, app.digest).items():
        if digest != app.digest:
            b = httpx.get(f"{berth.url}/v2/clients/mount-dst/blobs/{digest}")
            assert b.status_code == 200 and b.content == data


@pytest.mark.parametrize("name", ["clients/team.one/sub-repo/x__y", "clients/manifests/blobs", "clients/tags/list",
                                  "clients/blobs/uploads", "clients/referrers"])
def test_skopeo_repository_names_that_look_like_routes(berth: BerthServer, umoci_images: UmociImages,
                                                       name: str) -> None:
    """Valid names holding path words the /v2 router also uses, with a tag using every allowed character."""
    require_tool("skopeo")
    tiny = umoci_images.amd64
    tag = "V1.0_rc-1"
    skopeo("copy", "--dest-tls-verify=false", f"oci:{tiny.layout.root}:{tiny.tag}", f"docker://{berth.host}/{name}:{tag}")
    assert _list_tags(f"docker://{berth.host}/{name}") == [tag]
    assert get_manifest(berth, name, tag).headers["docker-content-digest"] == tiny.digest
    config = tiny.layout.json(tiny.digest)["config"]["digest"]
    assert httpx.get(f"{berth.url}/v2/{name}/blobs/{config}").content == tiny.layout.read(config)
    assert httpx.get(f"{berth.url}/v2/{name}/referrers/{tiny.digest}").json()["manifests"] == []
