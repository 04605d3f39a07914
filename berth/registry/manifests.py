"""Manifest media types: parse, validate, and list what a manifest references.

One parser per shape: image manifests (OCI, Docker schema 2) and indexes (OCI index, Docker
manifest list). The digest of a manifest is the sha256 of its exact bytes.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from berth import jsonguard
from berth.registry.errors import ManifestInvalid, ManifestTooLarge, Unsupported
from berth.registry.names import check_digest

OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_INDEX = "application/vnd.oci.image.index.v1+json"
DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
DOCKER_LIST = "application/vnd.docker.distribution.manifest.list.v2+json"
DOCKER_SCHEMA1 = ("application/vnd.docker.distribution.manifest.v1+json",
                  "application/vnd.docker.distribution.manifest.v1+prettyjws")
OCI_EMPTY = "application/vnd.oci.empty.v1+json"

IMAGE_TYPES = (OCI_MANIFEST, DOCKER_MANIFEST)
INDEX_TYPES = (OCI_INDEX, DOCKER_LIST)
MEDIA_TYPES = IMAGE_TYPES + INDEX_TYPES
MAX_MANIFEST = 4 * 1024 * 1024

# Layers a registry never stores (Windows base layers): referenced by URL, not required to exist.
FOREIGN_LAYERS = (
    "application/vnd.docker.image.rootfs.foreign.diff.tar.gzip",
    "application/vnd.oci.image.layer.nondistributable.v1.tar",
    "application/vnd.oci.image.layer.nondistributable.v1.tar+gzip",
    "application/vnd.oci.image.layer.nondistributable.v1.tar+zstd",
)


@dataclass(frozen=True)
class Descriptor:
    media_type: str
    digest: str
    size: int


@dataclass(frozen=True)
class ParsedManifest:
    media_type: str
    blobs: tuple[Descriptor, ...]  # config first, then layers (for image manifests)
    children: tuple[Descriptor, ...]  # index entries
    subject: Descriptor | None
    artifact_type: str | None
    annotations: dict[str, str] | None

    @property
    def image_size(self) -> int:
        return sum(d.size for d in self.blobs)

    def refs(self) -> tuple[tuple[str, str], ...]:
        out = [(d.digest, "config" if i == 0 else "layer") for i, d in enumerate(self.blobs)]
        out += [(d.digest, "manifest") for d in self.children]
        return tuple(dict.fromkeys(out))


def _descriptor(obj: Any, where: str) -> Descriptor:
    if not isinstance(obj, dict):
        raise ManifestInvalid(f"{where}: descriptor must be an object")
    media_type, digest, size = obj.get("mediaType"), obj.get("digest"), obj.get("size")
    if not isinstance(media_type, str) or not media_type:
        raise ManifestInvalid(f"{where}: mediaType missing")
    if "\x00" in media_type:
        raise ManifestInvalid(f"{where}: mediaType contains NUL")
    if not isinstance(digest, str):
        raise ManifestInvalid(f"{where}: digest missing")
    try:
        check_digest(digest)
    except Exception as e:
        raise ManifestInvalid(f"{where}: {e}") from None
    if not isinstance(size, int) or isinstance(size, bool) or size < 0:
        raise ManifestInvalid(f"{where}: size must be a non-negative integer")
    return Descriptor(media_type, digest, size)


def _annotations(doc: dict[str, Any]) -> dict[str, str] | None:
    ann = doc.get("annotations")
    if ann is None:
        return None
    if not isinstance(ann, dict) or not all(isinstance(k, str) and isinstance(v, str) for k, v in ann.items()):
        raise ManifestInvalid("annotations must map strings to strings")
    return ann


def _image(doc: dict[str, Any], media_type: str) -> ParsedManifest:
    config = _descriptor(doc.get("config"), "config")
    layers = doc.get("layers")
    if not isinstance(layers, list):
        raise ManifestInvalid("layers must be a list")
    descs = [_descriptor(x, f"layers[{i}]") for i, x in enumerate(layers)]
    blobs = (config, *(d for d in descs if d.media_type not in FOREIGN_LAYERS))
    artifact_type = doc.get("artifactType")
    if artifact_type is None and media_type == OCI_MANIFEST and config.media_type != OCI_EMPTY:
        artifact_type = config.media_type
    return ParsedManifest(media_type, blobs, (), _subject(doc), _opt_str(artifact_type, "artifactType"),
                          _annotations(doc))


def _index(doc: dict[str, Any], media_type: str) -> ParsedManifest:
    entries = doc.get("manifests")
    if not isinstance(entries, list):
        raise ManifestInvalid("manifests must be a list")
    children = tuple(_descriptor(x, f"manifests[{i}]") for i, x in enumerate(entries))
    return ParsedManifest(media_type, (), children, _subject(doc),
                          _opt_str(doc.get("artifactType"), "artifactType"), _annotations(doc))


def _subject(doc: dict[str, Any]) -> Descriptor | None:
    return None if doc.get("subject") is None else _descriptor(doc["subject"], "subject")


def _opt_str(v: Any, name: str) -> str | None:
    if v is not None and (not isinstance(v, str) or "\x00" in v):
        raise ManifestInvalid(f"{name} must be a string without NUL")
    return v


def parse(body: bytes, content_type: str | None) -> ParsedManifest:
    """Validate a manifest's bytes against its declared media type."""
    if len(body) > MAX_MANIFEST:
        raise ManifestTooLarge("manifest larger than 4 MiB")
    try:
        jsonguard.check_depth(body)
    except jsonguard.TooDeep as e:
        raise ManifestInvalid(f"manifest is not valid: {e}") from None
    try:
        doc = json.loads(body)
    except (ValueError, UnicodeDecodeError):
        raise ManifestInvalid("manifest is not valid JSON") from None
    if not isinstance(doc, dict):
        raise ManifestInvalid("manifest must be a JSON object")
    declared = (content_type or "").split(";")[0].strip().lower() or None
    inner = doc.get("mediaType")
    if inner is not None and not isinstance(inner, str):
        raise ManifestInvalid("mediaType must be a string")
    if inner in DOCKER_SCHEMA1 or declared in DOCKER_SCHEMA1:
        raise Unsupported("Docker schema 1 manifests are not supported")
    if inner and declared and inner != declared:
        raise ManifestInvalid(f"mediaType {inner!r} does not match Content-Type {declared!r}")
    media_type = inner or declared
    if media_type is None:
        media_type = OCI_INDEX if "manifests" in doc else OCI_MANIFEST
    if media_type not in MEDIA_TYPES:
        raise ManifestInvalid(f"unsupported manifest media type {media_type!r}")
    if doc.get("schemaVersion") != 2:
        raise ManifestInvalid("schemaVersion must be 2")
    return _image(doc, media_type) if media_type in IMAGE_TYPES else _index(doc, media_type)
