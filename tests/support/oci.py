"""A small raw-HTTP OCI Distribution client for tests: blobs, uploads, manifests, random images.

Real bytes, real digests: every manifest the helpers build references blobs by the sha256 of
their content, and the manifest's own digest is the sha256 of the exact bytes sent.
"""

from __future__ import annotations

import hashlib
import json
import os
import socket
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

import httpx

OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_INDEX = "application/vnd.oci.image.index.v1+json"
OCI_CONFIG = "application/vnd.oci.image.config.v1+json"
OCI_LAYER = "application/vnd.oci.image.layer.v1.tar+gzip"
OCI_EMPTY = "application/vnd.oci.empty.v1+json"
OCI_EMPTY_DIGEST = "sha256:44136fa355b3678a1146ad16f7e8649e94fb4fc21fe77e8310c060f61caaff8a"
OCI_EMPTY_BYTES = b"{}"
DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
DOCKER_LIST = "application/vnd.docker.distribution.manifest.list.v2+json"
DOCKER_CONFIG = "application/vnd.docker.container.image.v1+json"
DOCKER_LAYER = "application/vnd.docker.image.rootfs.diff.tar.gzip"


def sha256(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def dumps(obj: Any) -> bytes:
    return json.dumps(obj, separators=(",", ":"), sort_keys=True).encode()


def error_codes(resp: httpx.Response) -> list[str]:
    """The OCI error codes of an error response; fails loudly if the body is not the OCI shape."""
    body = resp.json()
    assert isinstance(body, dict) and isinstance(body.get("errors"), list) and body["errors"], body
    return [e["code"] for e in body["errors"]]


def assert_error(resp: httpx.Response, status: int, code: str) -> None:
    assert resp.status_code == status, (resp.status_code, resp.text)
    assert code in error_codes(resp), resp.text


def descriptor(media_type: str, data: bytes, **extra: Any) -> dict[str, Any]:
    return {"mediaType": media_type, "digest": sha256(data), "size": len(data), **extra}


@dataclass
class Image:
    """An image manifest with its config and layer bytes; `body` is exactly what gets pushed."""

    config: bytes
    layers: list[bytes]
    media_type: str
    body: bytes
    blob_types: list[str] = field(default_factory=list)

    @property
    def digest(self) -> str:
        return sha256(self.body)

    @property
    def blobs(self) -> list[bytes]:
        return [self.config, *self.layers]

    def descriptor(self, **extra: Any) -> dict[str, Any]:
        return descriptor(self.media_type, self.body, **extra)


def random_image(layers: int = 2, layer_size: int = 2048, media_type: str = OCI_MANIFEST,
                 annotations: dict[str, str] | None = None, subject: dict[str, Any] | None = None,
                 artifact_type: str | None = None) -> Image:
    """An image with random layers (unique digests) and a small config that names them."""
    docker = media_type == DOCKER_MANIFEST
    layer_bytes = [os.urandom(layer_size) for _ in range(layers)]
    config = dumps({"architecture": "amd64", "os": "linux",
                    "rootfs": {"type": "layers", "diff_ids": [sha256(b) for b in layer_bytes]},
                    "config": {"Env": [f"NONCE={os.urandom(8).hex()}"]}})
    config_type = DOCKER_CONFIG if docker else OCI_CONFIG
    layer_type = DOCKER_LAYER if docker else OCI_LAYER
    doc: dict[str, Any] = {"schemaVersion": 2, "mediaType": media_type,
                           "config": descriptor(config_type, config),
                           "layers": [descriptor(layer_type, b) for b in layer_bytes]}
    if annotations:
        doc["annotations"] = annotations
    if subject:
        doc["subject"] = subject
    if artifact_type:
        doc["artifactType"] = artifact_type
    return Image(config, layer_bytes, media_type, dumps(doc), [config_type] + [layer_type] * layers)


def artifact(subject: dict[str, Any] | None, artifact_type: str, payload: bytes | None = None,
             annotations: dict[str, str] | None = None) -> Image:
    """An OCI artifact: artifactType, the empty config, one payload layer, optionally a subject."""
    payload = os.urandom(64) if payload is None else payload
    doc: dict[str, Any] = {"schemaVersion": 2, "mediaType": OCI_MANIFEST, "artifactType": artifact_type,
                           "config": {"mediaType": OCI_EMPTY, "digest": OCI_EMPTY_DIGEST, "size": 2},
                           "layers": [descriptor("application/octet-stream", payload)]}
    if subject:
        doc["subject"] = subject
    if annotations:
        doc["annotations"] = annotations
    return Image(OCI_EMPTY_BYTES, [payload], OCI_MANIFEST, dumps(doc))


def index_of(children: Iterable[Image], media_type: str = OCI_INDEX, **extra: Any) -> bytes:
    platforms = [{"architecture": a, "os": "linux"} for a in ("amd64", "arm64", "s390x", "ppc64le")]
    manifests = [c.descriptor(platform=platforms[i % len(platforms)]) for i, c in enumerate(children)]
    return dumps({"schemaVersion": 2, "mediaType": media_type, "manifests": manifests, **extra})


class OciClient:
    """Raw /v2 calls over httpx. Methods return the httpx.Response unless they say otherwise."""

    def __init__(self, base_url: str, host: str | None = None, timeout: float = 30.0) -> None:
        headers = {"Host": host} if host else {}
        self.http = httpx.Client(base_url=base_url, headers=headers, timeout=timeout)

    def close(self) -> None:
        self.http.close()

    def __enter__(self) -> OciClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def request(self, method: str, url: str, **kw: Any) -> httpx.Response:
        return self.http.request(method, url, **kw)

    # blobs

    def push_blob(self, name: str, data: bytes, digest: str | None = None) -> httpx.Response:
        """Monolithic: POST /blobs/uploads/?digest= with the body."""
        digest = digest or sha256(data)
        return self.http.post(f"/v2/{name}/blobs/uploads/", params={"digest": digest}, content=data,
                              headers={"Content-Type": "application/octet-stream"})

    def start_upload(self, name: str) -> str:
        """POST an upload session; returns its Location (a path)."""
        r = self.http.post(f"/v2/{name}/blobs/uploads/")
        assert r.status_code == 202, (r.status_code, r.text)
        return r.headers["Location"]

    def push_blob_post_put(self, name: str, data: bytes, digest: str | None = None) -> httpx.Response:
        """POST, then PUT ?digest= with the whole body."""
        location = self.start_upload(name)
        return self.http.put(location, params={"digest": digest or sha256(data)}, content=data,
                             headers={"Content-Type": "application/octet-stream"})

    def patch(self, location: str, data: bytes, start: int) -> httpx.Response:
        return self.http.patch(location, content=data, headers={
            "Content-Type": "application/octet-stream",
            "Content-Range": f"{start}-{start + len(data) - 1}"})

    def push_blob_chunked(self, name: str, data: bytes, chunk: int = 1024,
                          digest: str | None = None) -> httpx.Response:
        """POST, PATCH each chunk with Content-Range, then PUT ?digest= with no body."""
        location = self.start_upload(name)
        for start in range(0, len(data), chunk):
            r = self.patch(location, data[start:start + chunk], start)
            if r.status_code != 202:
                return r
            location = r.headers["Location"]
        return self.http.put(location, params={"digest": digest or sha256(data)})

    def get_blob(self, name: str, digest: str, **kw: Any) -> httpx.Response:
        return self.http.get(f"/v2/{name}/blobs/{digest}", **kw)

    # manifests

    def put_manifest(self, name: str, ref: str, body: bytes, media_type: str | None = OCI_MANIFEST) -> httpx.Response:
        headers = {"Content-Type": media_type} if media_type else {}
        return self.http.put(f"/v2/{name}/manifests/{ref}", content=body, headers=headers)

    def get_manifest(self, name: str, ref: str, method: str = "GET") -> httpx.Response:
        accept = ", ".join([OCI_MANIFEST, OCI_INDEX, DOCKER_MANIFEST, DOCKER_LIST])
        return self.http.request(method, f"/v2/{name}/manifests/{ref}", headers={"Accept": accept})

    def push_image(self, name: str, image: Image, ref: str, chunked: bool = False) -> httpx.Response:
        """Push every blob (asserting 201), then the manifest; returns the manifest response."""
        for data in image.blobs:
            r = self.push_blob_chunked(name, data, chunk=max(len(data) // 3, 1)) if chunked \
                else self.push_blob(name, data)
            assert r.status_code == 201, (r.status_code, r.text)
        return self.put_manifest(name, ref, image.body, image.media_type)

    def tags(self, name: str, **params: Any) -> httpx.Response:
        return self.http.get(f"/v2/{name}/tags/list", params=params)

    def catalog(self, **params: Any) -> httpx.Response:
        return self.http.get("/v2/_catalog", params=params)

    def all_tags(self, name: str) -> list[str]:
        r = self.tags(name)
        assert r.status_code == 200, (r.status_code, r.text)
        return r.json()["tags"] or []

    def all_repositories(self) -> list[str]:
        r = self.catalog()
        assert r.status_code == 200, (r.status_code, r.text)
        return r.json()["repositories"] or []


def raw_request(host: str, port: int, data: bytes, timeout: float = 10.0) -> tuple[int, dict[str, str], bytes]:
    """Send exact bytes on a fresh connection, read one response (Content-Length framed)."""
    with socket.create_connection((host, port), timeout=timeout) as s:
        s.sendall(data)
        buf = b""
        while b"\r\n\r\n" not in buf:
            more = s.recv(65536)
            if not more:
                raise ConnectionError(f"connection closed before a response: {buf!r}")
            buf += more
        head, _, body = buf.partition(b"\r\n\r\n")
        lines = head.decode("latin-1").split("\r\n")
        status = int(lines[0].split()[1])
        headers = {k.strip().lower(): v.strip() for k, v in (ln.split(":", 1) for ln in lines[1:])}
        length = int(headers.get("content-length", "0"))
        while len(body) < length:
            more = s.recv(65536)
            if not more:
                break
            body += more
        return status, headers, body


def raw_get(host: str, port: int, path: str) -> tuple[int, dict[str, str], bytes]:
    """GET a path exactly as written (no client-side normalisation of `..` or `//`)."""
    req = f"GET {path} HTTP/1.1\r\nHost: {host}:{port}\r\nConnection: close\r\n\r\n".encode()
    return raw_request(host, port, req)


def counter_blocks(total: int, block: int = 1 << 20) -> Iterator[bytes]:
    """`total` pseudo-random bytes, one block at a time, never held whole: a random block with a counter."""
    base = os.urandom(block)
    i = 0
    sent = 0
    while sent < total:
        n = min(block, total - sent)
        chunk = (i.to_bytes(8, "big") + base[8:])[:n]
        yield chunk
        sent += n
        i += 1
