"""manifests.parse: each media type, inference, validation, and what a manifest references."""

from __future__ import annotations

import hashlib
import json
from typing import Any

import pytest

from berth.registry import manifests
from berth.registry.errors import ManifestInvalid, ManifestTooLarge, RegistryError, Unsupported
from berth.registry.manifests import (
    DOCKER_LIST,
    DOCKER_MANIFEST,
    MAX_MANIFEST,
    OCI_EMPTY,
    OCI_INDEX,
    OCI_MANIFEST,
    Descriptor,
    parse,
)

OCI_CONFIG = "application/vnd.oci.image.config.v1+json"
OCI_LAYER = "application/vnd.oci.image.layer.v1.tar+gzip"
DOCKER_CONFIG = "application/vnd.docker.container.image.v1+json"
DOCKER_LAYER = "application/vnd.docker.image.rootfs.diff.tar.gzip"
DOCKER_FOREIGN = "application/vnd.docker.image.rootfs.foreign.diff.tar.gzip"
SCHEMA1 = "application/vnd.docker.distribution.manifest.v1+json"
SCHEMA1_SIGNED = "application/vnd.docker.distribution.manifest.v1+prettyjws"


def blob(data: bytes, media_type: str) -> dict[str, Any]:
    """A real descriptor: the digest and size of real bytes."""
    return {"mediaType": media_type, "digest": "sha256:" + hashlib.sha256(data).hexdigest(), "size": len(data)}


CONFIG = blob(b'{"architecture":"amd64","os":"linux","rootfs":{"type":"layers","diff_ids":[]}}', OCI_CONFIG)
LAYER1 = blob(b"layer one" * 100, OCI_LAYER)
LAYER2 = blob(b"layer two" * 333, OCI_LAYER)
EMPTY = {"mediaType": OCI_EMPTY, "digest": "sha256:44136fa355b3678a1146ad16f7e8649e94fb4fc21fe77e8310c060f61caaff8a",
         "size": 2}


def encode(doc: dict[str, Any]) -> bytes:
    return json.dumps(doc, indent=2).encode()


def oci_image(**extra: Any) -> dict[str, Any]:
    return {"schemaVersion": 2, "mediaType": OCI_MANIFEST, "config": CONFIG, "layers": [LAYER1, LAYER2], **extra}


def oci_index(*children: dict[str, Any], **extra: Any) -> dict[str, Any]:
    return {"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": list(children), **extra}


def child(doc: dict[str, Any], arch: str) -> dict[str, Any]:
    return {**blob(encode(doc), doc["mediaType"]), "platform": {"architecture": arch, "os": "linux"}}


def desc(d: dict[str, Any]) -> Descriptor:
    return Descriptor(d["mediaType"], d["digest"], d["size"])


# each media type

def test_oci_image_manifest() -> None:
    p = parse(encode(oci_image()), OCI_MANIFEST)
    assert p.media_type == OCI_MANIFEST
    assert p.blobs == (desc(CONFIG), desc(LAYER1), desc(LAYER2))
    assert p.children == ()
    assert p.subject is None
    assert p.annotations is None
    assert p.artifact_type == OCI_CONFIG  # no artifactType: the config's media type (the referrers rule)
    assert p.image_size == CONFIG["size"] + LAYER1["size"] + LAYER2["size"]
    assert p.refs() == ((CONFIG["digest"], "config"), (LAYER1["digest"], "layer"), (LAYER2["digest"], "layer"))


def test_docker_schema2_manifest() -> None:
    config = blob(b'{"architecture":"arm64"}', DOCKER_CONFIG)
    layer = blob(b"docker layer", DOCKER_LAYER)
    doc = {"schemaVersion": 2, "mediaType": DOCKER_MANIFEST, "config": config, "layers": [layer]}
    p = parse(encode(doc), DOCKER_MANIFEST)
    assert p.media_type == DOCKER_MANIFEST
    assert p.blobs == (desc(config), desc(layer))
    assert p.artifact_type is None  # only OCI manifests infer an artifact type
    assert p.image_size == config["size"] + layer["size"]


def test_oci_index() -> None:
    amd64, arm64 = oci_image(), oci_image(layers=[LAYER1])
    doc = oci_index(child(amd64, "amd64"), child(arm64, "arm64"))
    p = parse(encode(doc), OCI_INDEX)
    assert p.media_type == OCI_INDEX
    assert p.blobs == ()
    assert p.children == (desc(child(amd64, "amd64")), desc(child(arm64, "arm64")))
    assert p.image_size == 0
    assert p.artifact_type is None
    assert p.refs() == tuple((c.digest, "manifest") for c in p.children)


def test_docker_manifest_list() -> None:
    image = {"schemaVersion": 2, "mediaType": DOCKER_MANIFEST, "config": blob(b"{}", DOCKER_CONFIG), "layers": []}
    doc = {"schemaVersion": 2, "mediaType": DOCKER_LIST, "manifests": [child(image, "amd64")]}
    p = parse(encode(doc), DOCKER_LIST)
    assert p.media_type == DOCKER_LIST
    assert p.children == (desc(child(image, "amd64")),)


def test_empty_index_and_image_without_layers() -> None:
    assert parse(encode(oci_index()), None).children == ()
    p = parse(encode(oci_image(layers=[])), None)
    assert p.blobs == (desc(CONFIG),)
    assert p.refs() == ((CONFIG["digest"], "config"),)


# media type: declared, inferred, mismatched

@pytest.mark.parametrize("doc, expected", [
    ({"schemaVersion": 2, "config": CONFIG, "layers": [LAYER1]}, OCI_MANIFEST),
    ({"schemaVersion": 2, "manifests": []}, OCI_INDEX),
])
def test_media_type_inferred_when_absent_everywhere(doc: dict[str, Any], expected: str) -> None:
    assert parse(encode(doc), None).media_type == expected
    assert parse(encode(doc), "").media_type == expected


@pytest.mark.parametrize("content_type", [DOCKER_MANIFEST, f"{DOCKER_MANIFEST}; charset=utf-8",
                                          DOCKER_MANIFEST.upper(), f"  {DOCKER_MANIFEST}  "])
def test_media_type_from_content_type_when_the_body_has_none(content_type: str) -> None:
    doc = {"schemaVersion": 2, "config": blob(b"{}", DOCKER_CONFIG), "layers": []}
    assert parse(encode(doc), content_type).media_type == DOCKER_MANIFEST


def test_media_type_from_the_body_without_content_type() -> None:
    doc = {"schemaVersion": 2, "mediaType": DOCKER_LIST, "manifests": []}
    assert parse(encode(doc), None).media_type == DOCKER_LIST


@pytest.mark.parametrize("inner, declared", [
    (OCI_MANIFEST, DOCKER_MANIFEST),
    (OCI_MANIFEST, OCI_INDEX),
    (DOCKER_MANIFEST, OCI_MANIFEST),
    (OCI_MANIFEST, "application/json"),
])
def test_media_type_must_match_content_type(inner: str, declared: str) -> None:
    doc = {**oci_image(), "mediaType": inner}
    with pytest.raises(ManifestInvalid, match="does not match"):
        parse(encode(doc), declared)


@pytest.mark.parametrize("media_type", ["application/json", "application/vnd.oci.image.config.v1+json",
                                        "text/plain", "application/vnd.unknown.manifest+json"])
def test_unknown_media_types_are_refused(media_type: str) -> None:
    doc = {"schemaVersion": 2, "config": CONFIG, "layers": []}
    with pytest.raises(ManifestInvalid, match="unsupported manifest media type"):
        parse(encode(doc), media_type)
    with pytest.raises(ManifestInvalid, match="unsupported manifest media type"):
        parse(encode({**doc, "mediaType": media_type}), None)


# Docker schema 1

SCHEMA1_DOC = {"schemaVersion": 1, "name": "library/hello", "tag": "latest", "architecture": "amd64",
               "fsLayers": [{"blobSum": LAYER1["digest"]}], "history": [{"v1Compatibility": "{}"}]}


@pytest.mark.parametrize("content_type", [SCHEMA1, SCHEMA1_SIGNED])
def test_schema1_rejected_by_content_type(content_type: str) -> None:
    with pytest.raises(Unsupported) as info:
        parse(encode(SCHEMA1_DOC), content_type)
    assert info.value.code == "UNSUPPORTED"


@pytest.mark.parametrize("media_type", [SCHEMA1, SCHEMA1_SIGNED])
def test_schema1_rejected_by_media_type(media_type: str) -> None:
    with pytest.raises(Unsupported):
        parse(encode({**SCHEMA1_DOC, "mediaType": media_type}), None)


def test_schema1_without_any_media_type_is_invalid() -> None:
    with pytest.raises(ManifestInvalid, match="schemaVersion"):
        parse(encode(SCHEMA1_DOC), None)


# foreign layers

@pytest.mark.parametrize("foreign", manifests.FOREIGN_LAYERS)
def test_foreign_layers_are_skipped(foreign: str) -> None:
    base = {**blob(b"windows base layer", foreign), "urls": ["https://mcr.microsoft.com/layer"]}
    doc = oci_image(layers=[base, LAYER1])
    p = parse(encode(doc), None)
    assert p.blobs == (desc(CONFIG), desc(LAYER1))
    assert base["digest"] not in dict(p.refs())
    assert p.image_size == CONFIG["size"] + LAYER1["size"]


def test_docker_foreign_layer_in_a_docker_manifest() -> None:
    base = blob(b"windows", DOCKER_FOREIGN)
    layer = blob(b"app", DOCKER_LAYER)
    doc = {"schemaVersion": 2, "mediaType": DOCKER_MANIFEST, "config": blob(b"{}", DOCKER_CONFIG),
           "layers": [base, layer]}
    assert [d.digest for d in parse(encode(doc), None).blobs[1:]] == [layer["digest"]]


# subject, artifactType, annotations

def test_artifact_with_subject_artifact_type_and_annotations() -> None:
    subject = blob(encode(oci_image()), OCI_MANIFEST)
    sig = blob(b"signature", "application/vnd.dev.cosign.simplesigning.v1+json")
    notes = {"org.opencontainers.image.created": "2024-05-01T00:00:00Z", "dev.cosignproject.cosign/signature": "x"}
    doc = {"schemaVersion": 2, "mediaType": OCI_MANIFEST, "artifactType": "application/vnd.dev.cosign.artifact.sig",
           "config": EMPTY, "layers": [sig], "subject": subject, "annotations": notes}
    p = parse(encode(doc), OCI_MANIFEST)
    assert p.subject == desc(subject)
    assert p.artifact_type == "application/vnd.dev.cosign.artifact.sig"
    assert p.annotations == notes
    assert p.blobs == (desc(EMPTY), desc(sig))


def test_empty_config_without_artifact_type_has_none() -> None:
    doc = oci_image(config=EMPTY, layers=[LAYER1])
    assert parse(encode(doc), None).artifact_type is None


def test_artifact_type_from_config_media_type() -> None:
    config = blob(b"{}", "application/vnd.cncf.helm.config.v1+json")
    doc = oci_image(config=config, layers=[blob(b"chart", "application/vnd.cncf.helm.chart.content.v1.tar+gzip")])
    assert parse(encode(doc), None).artifact_type == "application/vnd.cncf.helm.config.v1+json"


def test_index_with_subject_and_artifact_type() -> None:
    subject = blob(encode(oci_image()), OCI_MANIFEST)
    doc = oci_index(child(oci_image(), "amd64"), subject=subject, artifactType="application/vnd.example+type",
                    annotations={"a": "b"})
    p = parse(encode(doc), None)
    assert p.subject == desc(subject)
    assert p.artifact_type == "application/vnd.example+type"
    assert p.annotations == {"a": "b"}


def test_null_subject_and_annotations_are_absent() -> None:
    p = parse(encode(oci_image(subject=None, annotations=None)), None)
    assert p.subject is None and p.annotations is None


# references and sizes

def test_refs_keep_order_and_drop_duplicates() -> None:
    doc = oci_image(layers=[LAYER2, LAYER1, LAYER2])  # a repeated layer (e.g. an empty one)
    p = parse(encode(doc), None)
    assert p.refs() == ((CONFIG["digest"], "config"), (LAYER2["digest"], "layer"), (LAYER1["digest"], "layer"))
    assert p.image_size == CONFIG["size"] + 2 * LAYER2["size"] + LAYER1["size"]  # the manifest's own sum


def test_index_refs_keep_order_and_drop_duplicates() -> None:
    a, b = child(oci_image(), "amd64"), child(oci_image(layers=[]), "arm64")
    p = parse(encode(oci_index(b, a, b)), None)
    assert p.refs() == ((b["digest"], "manifest"), (a["digest"], "manifest"))


def test_large_sizes() -> None:
    huge = {**LAYER1, "size": 50 * 1024**3}
    assert parse(encode(oci_image(layers=[huge, huge])), None).image_size == CONFIG["size"] + 100 * 1024**3


# size limit

def test_manifest_of_exactly_4_mib_is_accepted() -> None:
    body = encode(oci_image())
    body += b" " * (MAX_MANIFEST - len(body))
    assert len(body) == MAX_MANIFEST == 4 * 1024 * 1024
    assert parse(body, None).media_type == OCI_MANIFEST


def test_manifest_over_4_mib_is_refused() -> None:
    body = encode(oci_image())
    body += b" " * (MAX_MANIFEST + 1 - len(body))
    with pytest.raises(ManifestTooLarge) as info:
        parse(body, None)
    assert info.value.code == "MANIFEST_TOO_LARGE"


# invalid documents

def _layers(*items: Any) -> bytes:
    return encode(oci_image(layers=list(items)))


@pytest.mark.parametrize("body", [
    b"", b"not json", b"\xff\xfe\xfa", b"[]", b'"string"', b"null", b"42",
    encode({"mediaType": OCI_MANIFEST, "config": CONFIG, "layers": []}),  # schemaVersion missing
    encode({**oci_image(), "schemaVersion": 1}),
    encode({**oci_image(), "schemaVersion": "2"}),
    encode({**oci_image(), "mediaType": 2}),
    encode({k: v for k, v in oci_image().items() if k != "config"}),
    encode({k: v for k, v in oci_image().items() if k != "layers"}),
    encode(oci_image(layers={"0": LAYER1})),
    encode(oci_image(config="sha256:abc")),
    _layers({**LAYER1, "digest": "sha256:nothex"}),
    _layers({**LAYER1, "digest": "md5:" + "a" * 32}),
    _layers({k: v for k, v in LAYER1.items() if k != "digest"}),
    _layers({k: v for k, v in LAYER1.items() if k != "mediaType"}),
    _layers({**LAYER1, "mediaType": ""}),
    _layers({k: v for k, v in LAYER1.items() if k != "size"}),
    _layers({**LAYER1, "size": -1}),
    _layers({**LAYER1, "size": "12"}),
    _layers({**LAYER1, "size": 1.5}),
    _layers({**LAYER1, "size": True}),
    _layers("sha256:" + "a" * 64),
    encode(oci_image(annotations={"a": 1})),
    encode(oci_image(annotations=["a"])),
    encode(oci_image(artifactType=42)),
    encode(oci_image(subject={"digest": LAYER1["digest"]})),
    encode({**oci_index(), "manifests": None}),
    encode(oci_index({"mediaType": OCI_MANIFEST, "digest": "sha256:short", "size": 1})),
])
def test_invalid_manifests(body: bytes) -> None:
    with pytest.raises(ManifestInvalid) as info:
        parse(body, None)
    assert info.value.code == "MANIFEST_INVALID"
    assert isinstance(info.value, RegistryError)


def test_error_messages_name_the_field() -> None:
    with pytest.raises(ManifestInvalid, match=r"layers\[1\]"):
        parse(_layers(LAYER1, {**LAYER2, "size": -5}), None)
    with pytest.raises(ManifestInvalid, match="subject"):
        parse(encode(oci_image(subject={"mediaType": OCI_MANIFEST, "digest": "sha256:x", "size": 1})), None)
