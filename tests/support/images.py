"""Build and read real container images without a Docker engine (umoci, buildah, podman, skopeo).

Everything here shells out to the real tools and reads the results back from disk with nothing but
the standard library, so a test can compare what it pushed with what it pulled, byte for byte.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import shutil
import subprocess
import tarfile
import tempfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import pytest

OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_INDEX = "application/vnd.oci.image.index.v1+json"
DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
DOCKER_LIST = "application/vnd.docker.distribution.manifest.list.v2+json"
REF_NAME = "org.opencontainers.image.ref.name"


def run(cmd: Sequence[str | os.PathLike[str]], timeout: float = 120) -> subprocess.CompletedProcess[str]:
    """Run a real tool; on failure, fail the test with its command line, stdout and stderr."""
    argv = [str(c) for c in cmd]
    try:
        proc = subprocess.run(argv, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired as e:
        proc = None
        stderr = e.stderr.decode(errors="replace") if isinstance(e.stderr, bytes) else e.stderr
        message = f"command timed out after {timeout}s: {' '.join(argv)}\n--- stderr\n{stderr}"
    if proc is None:
        pytest.fail(message, pytrace=False)
    if proc.returncode != 0:
        pytest.fail(f"command failed ({proc.returncode}): {' '.join(argv)}\n"
                    f"--- stdout\n{proc.stdout}\n--- stderr\n{proc.stderr}", pytrace=False)
    return proc


def sha256_digest(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def file_digest(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return "sha256:" + h.hexdigest()


# ---------------------------------------------------------------------------------------------
# Reading OCI image layouts and `dir:` directories


class BlobSource:
    """Content-addressed blobs on disk: an OCI image layout, or skopeo's `dir:` transport."""

    def __init__(self, root: Path, kind: str = "oci") -> None:
        self.root = Path(root)
        self.kind = kind

    def path(self, digest: str) -> Path:
        algo, hexpart = digest.split(":", 1)
        assert algo == "sha256", digest
        return self.root / "blobs" / "sha256" / hexpart if self.kind == "oci" else self.root / hexpart

    def read(self, digest: str) -> bytes:
        data = self.path(digest).read_bytes()
        assert sha256_digest(data) == digest, f"blob {digest} in {self.root} does not match its digest"
        return data

    def json(self, digest: str) -> dict:
        return json.loads(self.read(digest))


class OciLayout(BlobSource):
    def __init__(self, root: Path) -> None:
        super().__init__(root, "oci")

    def index(self) -> dict:
        return json.loads((self.root / "index.json").read_text())

    def descriptor(self, tag: str) -> dict:
        found = [m for m in self.index()["manifests"] if (m.get("annotations") or {}).get(REF_NAME) == tag]
        assert len(found) == 1, f"tag {tag!r} in {self.root}: {found}"
        return found[0]

    def digest(self, tag: str) -> str:
        return self.descriptor(tag)["digest"]

    def all_blobs(self) -> dict[str, str]:
        """Every blob file in the layout: digest -> digest recomputed from its bytes."""
        out = {}
        for p in sorted((self.root / "blobs" / "sha256").iterdir()):
            out["sha256:" + p.name] = file_digest(p)
        return out


def image_closure(src: BlobSource, digest: str) -> dict[str, bytes]:
    """Every blob an image or index references (itself included), digest -> bytes, read and verified."""
    out: dict[str, bytes] = {}
    manifests = [digest]
    while manifests:
        d = manifests.pop()
        if d in out:
            continue
        out[d] = src.read(d)
        doc = json.loads(out[d])
        manifests += [child["digest"] for child in doc.get("manifests", [])]
        if "config" in doc:
            for blob in (doc["config"], *doc.get("layers", [])):
                out[blob["digest"]] = src.read(blob["digest"])
    return out


def read_rootfs(src: BlobSource, manifest: str | dict) -> dict[str, bytes]:
    """Apply an image's layers in order (with OCI whiteouts): regular file path -> contents.

    `manifest` is the image manifest's digest in `src`, or the parsed manifest itself.
    """
    if isinstance(manifest, str):
        manifest = src.json(manifest)
    files: dict[str, bytes] = {}
    for layer in manifest["layers"]:
        with tarfile.open(fileobj=io.BytesIO(src.read(layer["digest"])), mode="r:*") as tar:
            for member in tar:
                name = os.path.normpath(member.name.lstrip("/")).removeprefix("./")
                base, leaf = os.path.split(name)
                if leaf == ".wh..wh..opq":
                    for k in [k for k in files if k.startswith(base + "/")]:
                        del files[k]
                elif leaf.startswith(".wh."):
                    gone = os.path.join(base, leaf[4:])
                    for k in [k for k in files if k == gone or k.startswith(gone + "/")]:
                        del files[k]
                elif member.isfile():
                    f = tar.extractfile(member)
                    assert f is not None
                    files[name] = f.read()
    return files


# ---------------------------------------------------------------------------------------------
# Building with umoci


@dataclass
class UmociImage:
    """A tagged image in an OCI layout, and what a pull of it must give back."""

    layout: OciLayout
    tag: str
    digest: str
    files: dict[str, bytes]
    removed: tuple[str, ...] = ()
    config: dict = field(default_factory=dict)


def build_umoci_image(layout_dir: Path, work: Path, tag: str, layers: Sequence[Mapping[str, bytes | None]],
                      arch: str = "amd64", config_args: Sequence[str] = ()) -> UmociImage:
    """One layer per mapping (path -> bytes to write, or None to delete), then `umoci config`.

    Each repack uses --refresh-bundle so that the next layer is a diff on top of the previous one.
    """
    if not (layout_dir / "index.json").exists():
        run(["umoci", "init", "--layout", layout_dir])
    bundle = work / f"bundle-{tag}"
    run(["umoci", "new", "--image", f"{layout_dir}:{tag}-base"])
    run(["umoci", "unpack", "--rootless", "--image", f"{layout_dir}:{tag}-base", bundle])
    rootfs = bundle / "rootfs"
    expected: dict[str, bytes] = {}
    removed: list[str] = []
    for i, changes in enumerate(layers):
        for rel, data in changes.items():
            p = rootfs / rel
            if data is None:
                p.unlink()
                expected.pop(rel, None)
                removed.append(rel)
            else:
                p.parent.mkdir(parents=True, exist_ok=True)
                p.write_bytes(data)
                expected[rel] = data
        run(["umoci", "repack", "--refresh-bundle", "--image", f"{layout_dir}:{tag}-layer{i}", bundle])
    run(["umoci", "config", "--image", f"{layout_dir}:{tag}-layer{len(layers) - 1}", "--tag", tag,
         "--architecture", arch, "--os", "linux", *config_args])
    layout = OciLayout(layout_dir)
    digest = layout.digest(tag)
    config = layout.json(layout.json(digest)["config"]["digest"])
    return UmociImage(layout, tag, digest, expected, tuple(r for r in removed if r not in expected), config)


@dataclass
class UmociImages:
    """The session's umoci images: one OCI layout holding all of them."""

    layout: OciLayout
    app: UmociImage  # three layers (the first with 1 MiB of noise, the last deletes it) and a full config
    amd64: UmociImage
    arm64: UmociImage
    index_tag: str
    index_digest: str


def add_index(layout: OciLayout, tag: str, children: Sequence[UmociImage]) -> str:
    """Write an OCI image index over `children` (with their platforms) into the layout, tagged `tag`."""
    entries = []
    for child in children:
        desc = layout.descriptor(child.tag)
        entries.append({"mediaType": OCI_MANIFEST, "digest": desc["digest"], "size": desc["size"],
                        "platform": {"architecture": child.config["architecture"], "os": child.config["os"]}})
    body = json.dumps({"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": entries}).encode()
    digest = sha256_digest(body)
    layout.path(digest).write_bytes(body)
    index = layout.index()
    index["manifests"].append({"mediaType": OCI_INDEX, "digest": digest, "size": len(body),
                               "annotations": {REF_NAME: tag}})
    (layout.root / "index.json").write_text(json.dumps(index))
    return digest


# ---------------------------------------------------------------------------------------------
# buildah and podman with private storage


class ContainerTool:
    """buildah or podman with its own --root/--runroot on vfs storage (no shared state, no daemon).

    The run root must be short (podman refuses one over 50 characters), so it lives in a private
    directory under /tmp; call close() to remove it.
    """

    def __init__(self, tool: str, base: Path) -> None:
        self.tool = tool
        self.root = Path(base) / "root"
        self.root.mkdir(parents=True, exist_ok=True)
        self.runroot = Path(tempfile.mkdtemp(prefix="berth-rr-", dir="/tmp"))

    def argv(self, *args: str | os.PathLike[str]) -> list[str]:
        return [self.tool, "--root", str(self.root), "--runroot", str(self.runroot),
                "--storage-driver", "vfs", *[str(a) for a in args]]

    def __call__(self, *args: str | os.PathLike[str], timeout: float = 120) -> str:
        return run(self.argv(*args), timeout=timeout).stdout.strip()

    def close(self) -> None:
        shutil.rmtree(self.runroot, ignore_errors=True)


@dataclass
class BuildahImages:
    """The session's buildah images, in one private store."""

    tool: ContainerTool
    single: str  # local name of a one-file image
    single_file: bytes
    manifest_list: str  # local manifest list over two architectures
    arch_files: dict[str, bytes]
