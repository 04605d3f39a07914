"""The OCI Distribution API v1.1, endpoint by endpoint (end-1 … end-13), over raw HTTP.

Every test runs against a real `berth serve`, once on SQLite and once on PostgreSQL.
"""

from __future__ import annotations

import json
import os
import re
import socket
import uuid
from collections.abc import Iterator

import pytest

from tests.support.oci import (
    DOCKER_LIST,
    DOCKER_MANIFEST,
    OCI_EMPTY,
    OCI_EMPTY_BYTES,
    OCI_EMPTY_DIGEST,
    OCI_INDEX,
    OCI_MANIFEST,
    OciClient,
    artifact,
    assert_error,
    dumps,
    index_of,
    random_image,
    sha256,
)
from tests.support.servers import BerthServer

pytestmark = pytest.mark.integration


@pytest.fixture
def oci(berth: BerthServer) -> Iterator[OciClient]:
    with OciClient(berth.url) as client:
        yield client


@pytest.fixture
def repo() -> str:
    """A fresh repository name per test (create-on-push makes it on first push)."""
    return f"it/{uuid.uuid4().hex[:10]}"


def _pushed_blob(oci: OciClient, name: str, size: int = 4096) -> tuple[bytes, str]:
    data = os.urandom(size)
    r = oci.push_blob(name, data)
    assert r.status_code == 201, r.text
    return data, sha256(data)


# end-1: base


def test_base_endpoint(oci: OciClient) -> None:
    r = oci.http.get("/v2/")
    assert r.status_code == 200
    assert r.headers["Docker-Distribution-API-Version"] == "registry/2.0"
    r = oci.http.head("/v2/")
    assert r.status_code == 200
    assert r.headers["Docker-Distribution-API-Version"] == "registry/2.0"


# end-2: blobs GET / HEAD, ranges


def test_blob_get_and_head(oci: OciClient, repo: str) -> None:
    data, digest = _pushed_blob(oci, repo, 100_000)
    r = oci.get_blob(repo, digest)
    assert r.status_code == 200
    assert r.content == data
    assert r.headers["Content-Length"] == str(len(data))
    assert r.headers["Docker-Content-Digest"] == digest
    h = oci.http.head(f"/v2/{repo}/blobs/{digest}")
    assert h.status_code == 200
    assert h.content == b""
    assert h.headers["Content-Length"] == str(len(data))
    assert h.headers["Docker-Content-Digest"] == digest


def test_blob_is_scoped_to_its_repository(oci: OciClient, repo: str) -> None:
    _, digest = _pushed_blob(oci, repo)
    other = repo + "-other"
    _pushed_blob(oci, other)  # exists, but was never given this blob
    assert_error(oci.get_blob(other, digest), 404, "BLOB_UNKNOWN")
    assert oci.http.head(f"/v2/{other}/blobs/{digest}").status_code == 404


def test_blob_unknown(oci: OciClient, repo: str) -> None:
    _pushed_blob(oci, repo)
    assert_error(oci.get_blob(repo, sha256(b"never pushed")), 404, "BLOB_UNKNOWN")


def _stalled_get(port: int, path: str) -> tuple[socket.socket, bytes]:
    """A GET whose body the client does not read yet: the server's response stays in progress."""
    s = socket.create_connection(("127.0.0.1", port), timeout=60)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 64 * 1024)
    s.sendall(f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n".encode())
    head = b""
    while b"\r\n\r\n" not in head:
        head += s.recv(1)
    assert head.startswith(b"HTTP/1.1 200"), head
    return s, head


def _rest(s: socket.socket) -> bytes:
    parts = []
    while chunk := s.recv(1 << 20):
        parts.append(chunk)
    s.close()
    return b"".join(parts)


def test_concurrent_pulls_past_the_streamed_ones_are_whole(oci: OciClient, repo: str, berth: BerthServer) -> None:
    # two pulls of local blob files stream through the server's reused buffers (STREAMED_FILES); while they
    # are stalled, more whole pulls go by granian's pathsend: every body must still be exactly the blob
    blobs = [_pushed_blob(oci, repo, (16 << 20) + i) for i in range(4)]
    stalled = [_stalled_get(berth.port, f"/v2/{repo}/blobs/{d}") for _, d in blobs[:2]]
    for data, digest in blobs[2:]:
        assert oci.get_blob(repo, digest).content == data
    for (data, _), (s, _) in zip(blobs[:2], stalled, strict=True):
        assert _rest(s) == data


def test_blob_ranges(oci: OciClient, repo: str) -> None:
    data, digest = _pushed_blob(oci, repo, 3000)
    size = len(data)

    r = oci.get_blob(repo, digest, headers={"Range": "bytes=10-19"})
    assert r.status_code == 206
    assert r.content == data[10:20]
    assert r.headers["Content-Range"] == f"bytes 10-19/{size}"
    assert r.headers["Content-Length"] == "10"

    r = oci.get_blob(repo, digest, headers={"Range": "bytes=2500-"})
    assert r.status_code == 206
    assert r.content == data[2500:]
    assert r.headers["Content-Range"] == f"bytes 2500-{size - 1}/{size}"

    r = oci.get_blob(repo, digest, headers={"Range": "bytes=-100"})
    assert r.status_code == 206
    assert r.content == data[-100:]
    assert r.headers["Content-Range"] == f"bytes {size - 100}-{size - 1}/{size}"

    r = oci.get_blob(repo, digest, headers={"Range": f"bytes=100-{size + 500}"})  # end clipped
    assert r.status_code == 206
    assert r.content == data[100:]

    h = oci.http.head(f"/v2/{repo}/blobs/{digest}", headers={"Range": "bytes=0-9"})
    assert h.status_code == 206
    assert h.headers["Content-Length"] == "10"
    assert h.headers["Content-Range"] == f"bytes 0-9/{size}"

    big, big_digest = _pushed_blob(oci, repo, (3 << 20) + 5)  # read in 1 MiB chunks from a reused buffer
    assert oci.get_blob(repo, big_digest).content == big
    for first, last in ((0, len(big) - 1), (1, (1 << 20) + 1), ((2 << 20) - 3, len(big) - 1)):
        r = oci.get_blob(repo, big_digest, headers={"Range": f"bytes={first}-{last}"})
        assert r.status_code == 206 and r.content == big[first:last + 1], (first, last)

    for bad in (f"bytes={size}-", f"bytes={size + 10}-{size + 20}", "bytes=-0", "bytes=20-10"):
        r = oci.get_blob(repo, digest, headers={"Range": bad})
        assert r.status_code == 416, (bad, r.status_code)
        assert r.headers["Content-Range"] == f"bytes */{size}", bad

    assert oci.get_blob(repo, digest).content == data  # still served whole


# end-10: DELETE blob


def test_blob_delete(oci: OciClient, repo: str) -> None:
    data, digest = _pushed_blob(oci, repo)
    r = oci.http.delete(f"/v2/{repo}/blobs/{digest}")
    assert r.status_code == 202
    assert_error(oci.get_blob(repo, digest), 404, "BLOB_UNKNOWN")
    assert oci.http.head(f"/v2/{repo}/blobs/{digest}").status_code == 404
    assert_error(oci.http.delete(f"/v2/{repo}/blobs/{digest}"), 404, "BLOB_UNKNOWN")
    # a new push brings it back
    assert oci.push_blob(repo, data).status_code == 201
    assert oci.get_blob(repo, digest).content == data


# end-4a/4b/5/6: uploads


def test_monolithic_post(oci: OciClient, repo: str) -> None:
    data = os.urandom(5000)
    r = oci.push_blob(repo, data)
    assert r.status_code == 201
    assert r.headers["Docker-Content-Digest"] == sha256(data)
    assert r.headers["Location"] == f"/v2/{repo}/blobs/{sha256(data)}"
    assert oci.get_blob(repo, sha256(data)).content == data


def test_monolithic_post_then_put(oci: OciClient, repo: str) -> None:
    r = oci.http.post(f"/v2/{repo}/blobs/uploads/")
    assert r.status_code == 202
    location = r.headers["Location"]
    assert location.startswith(f"/v2/{repo}/blobs/uploads/")
    assert r.headers["Docker-Upload-UUID"]
    data = os.urandom(7000)
    r = oci.http.put(location, params={"digest": sha256(data)}, content=data,
                     headers={"Content-Type": "application/octet-stream"})
    assert r.status_code == 201, r.text
    assert r.headers["Location"] == f"/v2/{repo}/blobs/{sha256(data)}"
    assert r.headers["Docker-Content-Digest"] == sha256(data)
    assert oci.get_blob(repo, sha256(data)).content == data


def test_empty_blob(oci: OciClient, repo: str) -> None:
    r = oci.push_blob(repo, b"")
    assert r.status_code == 201, r.text
    r = oci.get_blob(repo, sha256(b""))
    assert r.status_code == 200
    assert r.content == b""
    assert r.headers["Content-Length"] == "0"


def test_chunked_upload(oci: OciClient, repo: str) -> None:
    data = os.urandom(10_000)
    location = oci.start_upload(repo)
    offset = 0
    for size in (3000, 3000, 3000):
        r = oci.patch(location, data[offset:offset + size], offset)
        assert r.status_code == 202, r.text
        offset += size
        assert r.headers["Range"] == f"0-{offset - 1}"
        assert r.headers["Location"]
        location = r.headers["Location"]
    # the last chunk travels with the PUT
    r = oci.http.put(location, params={"digest": sha256(data)}, content=data[offset:],
                     headers={"Content-Type": "application/octet-stream"})
    assert r.status_code == 201, r.text
    assert r.headers["Location"] == f"/v2/{repo}/blobs/{sha256(data)}"
    assert r.headers["Docker-Content-Digest"] == sha256(data)
    assert oci.get_blob(repo, sha256(data)).content == data
    # the finished session is gone
    assert_error(oci.http.get(location), 404, "BLOB_UPLOAD_UNKNOWN")


def test_chunked_upload_without_content_range(oci: OciClient, repo: str) -> None:
    """Streamed PATCHes (no Content-Range) append, as docker does."""
    data = os.urandom(9000)
    location = oci.start_upload(repo)
    for part in (data[:4000], data[4000:]):
        r = oci.http.patch(location, content=part, headers={"Content-Type": "application/octet-stream"})
        assert r.status_code == 202
        location = r.headers["Location"]
    assert r.headers["Range"] == f"0-{len(data) - 1}"
    r = oci.http.put(location, params={"digest": sha256(data)})
    assert r.status_code == 201, r.text
    assert oci.get_blob(repo, sha256(data)).content == data


def test_out_of_order_chunk(oci: OciClient, repo: str) -> None:
    data = os.urandom(3000)
    location = oci.start_upload(repo)
    assert oci.patch(location, data[:1000], 0).status_code == 202
    for start in (2000, 0, 500):  # a gap, a replay, an overlap
        r = oci.patch(location, data[start:start + 1000], start)
        assert r.status_code == 416, (start, r.status_code, r.text)
        assert r.headers["Range"] == "0-999"
        assert r.headers["Location"]
    r = oci.http.get(location)
    assert r.status_code == 204
    assert r.headers["Range"] == "0-999"
    # the session still continues from where it stands
    assert oci.patch(location, data[1000:], 1000).status_code == 202
    r = oci.http.put(location, params={"digest": sha256(data)})
    assert r.status_code == 201, r.text
    assert oci.get_blob(repo, sha256(data)).content == data


def test_upload_status(oci: OciClient, repo: str) -> None:
    location = oci.start_upload(repo)
    r = oci.http.get(location)
    assert r.status_code == 204
    assert r.headers["Location"].startswith(f"/v2/{repo}/blobs/uploads/")
    assert r.headers["Range"] == "0-0"
    oci.patch(location, b"x" * 1234, 0)
    r = oci.http.get(location)
    assert r.status_code == 204
    assert r.headers["Range"] == "0-1233"
    assert r.headers["Location"].startswith(f"/v2/{repo}/blobs/uploads/")
    assert r.content == b""


def test_cancel_upload(oci: OciClient, repo: str, berth: BerthServer) -> None:
    location = oci.start_upload(repo)
    assert oci.patch(location, b"abc", 0).status_code == 202
    r = oci.http.delete(location)
    assert r.status_code == 204
    assert_error(oci.http.get(location), 404, "BLOB_UPLOAD_UNKNOWN")
    assert_error(oci.patch(location, b"def", 3), 404, "BLOB_UPLOAD_UNKNOWN")
    assert_error(oci.http.put(location, params={"digest": sha256(b"abc")}), 404, "BLOB_UPLOAD_UNKNOWN")
    assert_error(oci.http.delete(location), 404, "BLOB_UPLOAD_UNKNOWN")
    upload_id = location.rsplit("/", 1)[1]
    assert not (berth.data_dir / "uploads" / upload_id).exists()


def test_upload_session_belongs_to_its_repository(oci: OciClient, repo: str) -> None:
    location = oci.start_upload(repo)
    other = repo + "-other"
    _pushed_blob(oci, other)
    stolen = location.replace(f"/v2/{repo}/", f"/v2/{other}/")
    assert_error(oci.http.get(stolen), 404, "BLOB_UPLOAD_UNKNOWN")
    assert_error(oci.patch(stolen, b"abc", 0), 404, "BLOB_UPLOAD_UNKNOWN")
    assert oci.http.get(location).status_code == 204


def test_cross_repository_mount(oci: OciClient, repo: str) -> None:
    data, digest = _pushed_blob(oci, repo)
    target = repo + "-target"
    r = oci.http.post(f"/v2/{target}/blobs/uploads/", params={"mount": digest, "from": repo})
    assert r.status_code == 201, r.text
    assert r.headers["Location"] == f"/v2/{target}/blobs/{digest}"
    assert r.headers["Docker-Content-Digest"] == digest
    assert oci.get_blob(target, digest).content == data


def test_cross_repository_mount_falls_back_to_an_upload(oci: OciClient, repo: str) -> None:
    _pushed_blob(oci, repo)
    missing = sha256(os.urandom(16))
    target = repo + "-target"
    for source in (repo, repo + "-does-not-exist"):
        r = oci.http.post(f"/v2/{target}/blobs/uploads/", params={"mount": missing, "from": source})
        assert r.status_code == 202, r.text
        location = r.headers["Location"]
        assert location.startswith(f"/v2/{target}/blobs/uploads/")
        # the session it opened is a real one
        data = os.urandom(100)
        r = oci.http.put(location, params={"digest": sha256(data)}, content=data)
        assert r.status_code == 201, r.text
        assert oci.get_blob(target, sha256(data)).content == data
    assert_error(oci.get_blob(target, missing), 404, "BLOB_UNKNOWN")


def test_upload_survives_restart(oci: OciClient, repo: str, berth: BerthServer) -> None:
    data = os.urandom(300_000)
    location = oci.start_upload(repo)
    assert oci.patch(location, data[:100_000], 0).status_code == 202
    berth.restart()
    with OciClient(berth.url) as fresh:
        r = fresh.http.get(location)
        assert r.status_code == 204, r.text
        assert r.headers["Range"] == "0-99999"
        r = fresh.patch(location, data[100_000:200_000], 100_000)
        assert r.status_code == 202, r.text
        r = fresh.http.put(r.headers["Location"], params={"digest": sha256(data)}, content=data[200_000:])
        assert r.status_code == 201, r.text
        assert fresh.get_blob(repo, sha256(data)).content == data


# end-3/7/9: manifests


def _check_manifest_served(oci: OciClient, name: str, ref: str, body: bytes, media_type: str) -> None:
    for method in ("GET", "HEAD"):
        r = oci.get_manifest(name, ref, method)
        assert r.status_code == 200, (method, r.status_code, r.text)
        assert r.headers["Content-Type"] == media_type
        assert r.headers["Docker-Content-Digest"] == sha256(body)
        assert r.headers["Content-Length"] == str(len(body))
        assert r.content == (body if method == "GET" else b"")


def _put_ok(oci: OciClient, name: str, ref: str, body: bytes, media_type: str) -> None:
    r = oci.put_manifest(name, ref, body, media_type)
    assert r.status_code == 201, r.text
    assert r.headers["Docker-Content-Digest"] == sha256(body)
    assert r.headers["Location"] == f"/v2/{name}/manifests/{sha256(body)}"


@pytest.mark.parametrize("media_type", [OCI_MANIFEST, DOCKER_MANIFEST])
def test_image_manifest_by_tag_and_digest(oci: OciClient, repo: str, media_type: str) -> None:
    image = random_image(media_type=media_type, annotations={"org.example": "yes"})
    r = oci.push_image(repo, image, "v1")
    assert r.status_code == 201, r.text
    assert r.headers["Docker-Content-Digest"] == image.digest
    assert r.headers["Location"] == f"/v2/{repo}/manifests/{image.digest}"
    _check_manifest_served(oci, repo, "v1", image.body, media_type)
    _check_manifest_served(oci, repo, image.digest, image.body, media_type)
    assert oci.all_tags(repo) == ["v1"]


@pytest.mark.parametrize(("index_type", "child_type"), [(OCI_INDEX, OCI_MANIFEST), (DOCKER_LIST, DOCKER_MANIFEST)])
def test_index_by_tag_and_digest(oci: OciClient, repo: str, index_type: str, child_type: str) -> None:
    children = [random_image(media_type=child_type) for _ in range(2)]
    for child in children:
        assert oci.push_image(repo, child, child.digest).status_code == 201
    body = index_of(children, index_type)
    _put_ok(oci, repo, "multi", body, index_type)
    _check_manifest_served(oci, repo, "multi", body, index_type)
    _check_manifest_served(oci, repo, sha256(body), body, index_type)
    for child in children:
        _check_manifest_served(oci, repo, child.digest, child.body, child_type)
    assert oci.all_tags(repo) == ["multi"]


def test_artifact_with_empty_config(oci: OciClient, repo: str) -> None:
    assert sha256(OCI_EMPTY_BYTES) == OCI_EMPTY_DIGEST
    art = artifact(None, "application/vnd.example.thing.v1", payload=b"hello artifact")
    for data in art.blobs:
        assert oci.push_blob(repo, data).status_code == 201
    _put_ok(oci, repo, "thing", art.body, OCI_MANIFEST)
    _check_manifest_served(oci, repo, "thing", art.body, OCI_MANIFEST)
    r = oci.get_blob(repo, OCI_EMPTY_DIGEST)
    assert r.content == b"{}"
    assert r.headers["Content-Length"] == "2"
    doc = oci.get_manifest(repo, "thing").json()
    assert doc["artifactType"] == "application/vnd.example.thing.v1"
    assert doc["config"] == {"mediaType": OCI_EMPTY, "digest": OCI_EMPTY_DIGEST, "size": 2}


def test_manifest_without_content_type_uses_its_media_type(oci: OciClient, repo: str) -> None:
    image = random_image()
    for data in image.blobs:
        oci.push_blob(repo, data)
    _put_ok(oci, repo, "bare", image.body, None)
    _check_manifest_served(oci, repo, "bare", image.body, OCI_MANIFEST)


def test_put_by_digest(oci: OciClient, repo: str) -> None:
    image = random_image()
    r = oci.push_image(repo, image, image.digest)
    assert r.status_code == 201, r.text
    assert r.headers["Docker-Content-Digest"] == image.digest
    _check_manifest_served(oci, repo, image.digest, image.body, OCI_MANIFEST)
    assert oci.all_tags(repo) == []
    # pushing the same bytes again is idempotent, and a tag can be added later
    assert oci.put_manifest(repo, image.digest, image.body).status_code == 201
    _put_ok(oci, repo, "later", image.body, OCI_MANIFEST)
    assert oci.all_tags(repo) == ["later"]


def test_retag_moves_tag(oci: OciClient, repo: str) -> None:
    a, b = random_image(), random_image()
    assert oci.push_image(repo, a, "latest").status_code == 201
    assert oci.push_image(repo, b, "latest").status_code == 201
    _check_manifest_served(oci, repo, "latest", b.body, OCI_MANIFEST)
    _check_manifest_served(oci, repo, a.digest, a.body, OCI_MANIFEST)  # untagged, still there


def test_delete_by_tag_removes_only_the_tag(oci: OciClient, repo: str) -> None:
    image = random_image()
    assert oci.push_image(repo, image, "one").status_code == 201
    _put_ok(oci, repo, "two", image.body, OCI_MANIFEST)
    r = oci.http.delete(f"/v2/{repo}/manifests/one")
    assert r.status_code == 202
    assert_error(oci.get_manifest(repo, "one"), 404, "MANIFEST_UNKNOWN")
    assert oci.get_manifest(repo, "one", "HEAD").status_code == 404
    _check_manifest_served(oci, repo, "two", image.body, OCI_MANIFEST)
    _check_manifest_served(oci, repo, image.digest, image.body, OCI_MANIFEST)
    assert oci.all_tags(repo) == ["two"]
    assert_error(oci.http.delete(f"/v2/{repo}/manifests/one"), 404, "MANIFEST_UNKNOWN")


def test_delete_by_digest_removes_manifest_and_tags(oci: OciClient, repo: str) -> None:
    image, keep = random_image(), random_image()
    assert oci.push_image(repo, image, "a").status_code == 201
    _put_ok(oci, repo, "b", image.body, OCI_MANIFEST)
    assert oci.push_image(repo, keep, "keep").status_code == 201
    r = oci.http.delete(f"/v2/{repo}/manifests/{image.digest}")
    assert r.status_code == 202
    for ref in ("a", "b", image.digest):
        assert_error(oci.get_manifest(repo, ref), 404, "MANIFEST_UNKNOWN")
        assert oci.get_manifest(repo, ref, "HEAD").status_code == 404
    assert oci.all_tags(repo) == ["keep"]
    _check_manifest_served(oci, repo, "keep", keep.body, OCI_MANIFEST)
    assert_error(oci.http.delete(f"/v2/{repo}/manifests/{image.digest}"), 404, "MANIFEST_UNKNOWN")
    # blobs are not deleted with a manifest (garbage collection's job)
    assert oci.get_blob(repo, sha256(image.layers[0])).status_code == 200


def test_manifest_referencing_missing_blob(oci: OciClient, repo: str) -> None:
    image = random_image(layers=2)
    oci.push_blob(repo, image.config)
    oci.push_blob(repo, image.layers[0])  # layers[1] never pushed
    assert_error(oci.put_manifest(repo, "broken", image.body), 400, "MANIFEST_BLOB_UNKNOWN")
    assert_error(oci.get_manifest(repo, "broken"), 404, "MANIFEST_UNKNOWN")
    assert_error(oci.get_manifest(repo, image.digest), 404, "MANIFEST_UNKNOWN")


def test_index_referencing_missing_child(oci: OciClient, repo: str) -> None:
    present, absent = random_image(), random_image()
    assert oci.push_image(repo, present, present.digest).status_code == 201
    body = index_of([present, absent])
    assert_error(oci.put_manifest(repo, "idx", body, OCI_INDEX), 404, "MANIFEST_UNKNOWN")
    assert_error(oci.get_manifest(repo, sha256(body)), 404, "MANIFEST_UNKNOWN")
    assert oci.all_tags(repo) == []


def test_delete_child_referenced_by_index_is_refused(oci: OciClient, repo: str) -> None:
    child = random_image()
    assert oci.push_image(repo, child, "child").status_code == 201
    body = index_of([child])
    _put_ok(oci, repo, "idx", body, OCI_INDEX)
    r = oci.http.delete(f"/v2/{repo}/manifests/{child.digest}")
    assert r.status_code == 409, r.text
    assert r.json()["errors"][0]["code"]
    _check_manifest_served(oci, repo, child.digest, child.body, OCI_MANIFEST)
    _check_manifest_served(oci, repo, "child", child.body, OCI_MANIFEST)
    _check_manifest_served(oci, repo, "idx", body, OCI_INDEX)
    # deleting only the child's tag is fine; after the index goes, the child can go
    assert oci.http.delete(f"/v2/{repo}/manifests/child").status_code == 202
    assert oci.http.delete(f"/v2/{repo}/manifests/{sha256(body)}").status_code == 202
    assert oci.http.delete(f"/v2/{repo}/manifests/{child.digest}").status_code == 202
    assert_error(oci.get_manifest(repo, child.digest), 404, "MANIFEST_UNKNOWN")


# end-12: referrers


def test_subject_and_referrers(oci: OciClient, repo: str) -> None:
    image = random_image()
    assert oci.push_image(repo, image, "app").status_code == 201
    subject = image.descriptor()
    sig = artifact(subject, "application/vnd.example.signature.v1", annotations={"signed-by": "ci"})
    sbom = artifact(subject, "application/vnd.example.sbom.v1")
    refs = {}
    for art in (sig, sbom):
        for data in art.blobs:
            assert oci.push_blob(repo, data).status_code == 201
        r = oci.put_manifest(repo, art.digest, art.body)
        assert r.status_code == 201, r.text
        assert r.headers["OCI-Subject"] == image.digest
        refs[art.digest] = art
    # a referrer pushed by tag records its subject too
    tagged = artifact(subject, "application/vnd.example.sbom.v1")
    for data in tagged.blobs:
        oci.push_blob(repo, data)
    r = oci.put_manifest(repo, "sbom-tag", tagged.body)
    assert r.headers["OCI-Subject"] == image.digest
    refs[tagged.digest] = tagged

    r = oci.http.get(f"/v2/{repo}/referrers/{image.digest}")
    assert r.status_code == 200
    assert r.headers["Content-Type"] == OCI_INDEX
    assert "OCI-Filters-Applied" not in r.headers
    doc = r.json()
    assert doc["schemaVersion"] == 2 and doc["mediaType"] == OCI_INDEX
    got = {m["digest"]: m for m in doc["manifests"]}
    assert set(got) == set(refs)
    for digest, art in refs.items():
        entry = got[digest]
        assert entry["mediaType"] == OCI_MANIFEST
        assert entry["size"] == len(art.body)
        assert entry["artifactType"] == json.loads(art.body)["artifactType"]
    assert got[sig.digest]["annotations"] == {"signed-by": "ci"}

    r = oci.http.get(f"/v2/{repo}/referrers/{image.digest}",
                     params={"artifactType": "application/vnd.example.sbom.v1"})
    assert r.status_code == 200
    assert r.headers["OCI-Filters-Applied"] == "artifactType"
    assert {m["digest"] for m in r.json()["manifests"]} == {sbom.digest, tagged.digest}

    r = oci.http.get(f"/v2/{repo}/referrers/{image.digest}", params={"artifactType": "application/none"})
    assert r.status_code == 200
    assert r.json()["manifests"] == []

    r = oci.http.get(f"/v2/{repo}/referrers/{sha256(b'no such subject')}")
    assert r.status_code == 200
    assert r.headers["Content-Type"] == OCI_INDEX
    assert r.json() == {"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": []}

    # OCI-Subject is also returned on GET of a referrer
    assert oci.get_manifest(repo, sig.digest).headers["OCI-Subject"] == image.digest
    # deleting a referrer drops it from the index
    assert oci.http.delete(f"/v2/{repo}/manifests/{sig.digest}").status_code == 202
    r = oci.http.get(f"/v2/{repo}/referrers/{image.digest}")
    assert {m["digest"] for m in r.json()["manifests"]} == {sbom.digest, tagged.digest}


def test_referrer_to_a_subject_not_yet_pushed(oci: OciClient, repo: str) -> None:
    """The spec lets a referrer arrive before its subject."""
    later = random_image()
    art = artifact(later.descriptor(), "application/vnd.example.early.v1")
    for data in art.blobs:
        oci.push_blob(repo, data)
    r = oci.put_manifest(repo, art.digest, art.body)
    assert r.status_code == 201, r.text
    assert r.headers["OCI-Subject"] == later.digest
    r = oci.http.get(f"/v2/{repo}/referrers/{later.digest}")
    assert [m["digest"] for m in r.json()["manifests"]] == [art.digest]


# end-8: tags list


_LINK = re.compile(r'^<(/v2/[^>]+)>; rel="next"$')


def test_tags_list_pagination(oci: OciClient, repo: str) -> None:
    image = random_image(layers=1)
    assert oci.push_image(repo, image, "t00").status_code == 201
    tags = ["t00"] + [f"t{i:02d}" for i in range(1, 12)] + ["A-upper", "_under", "v1.0", "latest"]
    for tag in tags[1:]:
        assert oci.put_manifest(repo, tag, image.body).status_code == 201
    r = oci.tags(repo)
    assert r.status_code == 200
    assert r.json() == {"name": repo, "tags": sorted(tags)}
    assert "Link" not in r.headers

    pages: list[list[str]] = []
    url = f"/v2/{repo}/tags/list?n=5"
    while url:
        r = oci.http.get(url)
        assert r.status_code == 200
        page = r.json()["tags"] or []
        pages.append(page)
        link = r.headers.get("Link")
        if link is None:
            break
        m = _LINK.match(link)
        assert m, link
        url = m.group(1)
        assert url.startswith(f"/v2/{repo}/tags/list?n=5&last=")
        assert len(pages) < 10
    assert all(len(p) <= 5 for p in pages)
    assert [t for p in pages for t in p] == sorted(tags)
    assert pages[0] == sorted(tags)[:5]

    r = oci.tags(repo, n=3, last="t05")
    assert r.json()["tags"] == ["t06", "t07", "t08"]
    assert r.headers["Link"] == f'</v2/{repo}/tags/list?n=3&last=t08>; rel="next"'
    r = oci.tags(repo, last="t10")
    assert r.json()["tags"] == [t for t in sorted(tags) if t > "t10"]
    r = oci.tags(repo, n=0)
    assert r.status_code == 200
    assert not r.json()["tags"]


def test_tags_list_of_repository_without_tags(oci: OciClient, repo: str) -> None:
    _pushed_blob(oci, repo)
    r = oci.tags(repo)
    assert r.status_code == 200
    assert r.json()["name"] == repo
    assert not r.json()["tags"]


# catalog


def test_catalog_pagination(berth: BerthServer) -> None:
    # a registry of its own (a separate account), so other tests' repositories do not show up
    host = f"222222222222.dkr.ecr.eu-central-1.localhost:{berth.port}"
    names = sorted(f"cat/{c}{i}" for c in "abc" for i in range(3)) + ["zeta", "alpha/one"]
    with OciClient(berth.url, host=host) as oci:
        for name in names:
            assert oci.push_blob(name, os.urandom(10)).status_code == 201
        r = oci.catalog()
        assert r.status_code == 200
        assert r.json()["repositories"] == sorted(names)
        pages: list[list[str]] = []
        url = "/v2/_catalog?n=4"
        while True:
            r = oci.http.get(url)
            assert r.status_code == 200
            pages.append(r.json()["repositories"])
            link = r.headers.get("Link")
            if link is None:
                break
            m = _LINK.match(link)
            assert m, link
            url = m.group(1)
            assert url.startswith("/v2/_catalog?n=4&last=")
            assert len(pages) < 10
        assert [n for p in pages for n in p] == sorted(names)
        assert pages[0] == sorted(names)[:4]
        r = oci.catalog(n=2, last="cat/b2")
        assert r.json()["repositories"] == ["cat/c0", "cat/c1"]
        assert r.headers["Link"] == '</v2/_catalog?n=2&last=cat%2Fc1>; rel="next"'
        # the Link's escaped `last` round-trips
        assert oci.http.get(_LINK.match(r.headers["Link"]).group(1)).json()["repositories"] == ["cat/c2", "zeta"]


# unknown repositories


def test_unknown_repository(oci: OciClient) -> None:
    name = f"nobody/{uuid.uuid4().hex[:8]}"
    digest = sha256(b"x")
    assert_error(oci.tags(name), 404, "NAME_UNKNOWN")
    assert_error(oci.get_manifest(name, "latest"), 404, "NAME_UNKNOWN")
    assert_error(oci.get_manifest(name, digest), 404, "NAME_UNKNOWN")
    assert oci.get_manifest(name, "latest", "HEAD").status_code == 404
    assert_error(oci.get_blob(name, digest), 404, "NAME_UNKNOWN")
    assert oci.http.head(f"/v2/{name}/blobs/{digest}").status_code == 404
    assert_error(oci.http.get(f"/v2/{name}/referrers/{digest}"), 404, "NAME_UNKNOWN")
    assert_error(oci.http.delete(f"/v2/{name}/manifests/latest"), 404, "NAME_UNKNOWN")
    assert_error(oci.http.delete(f"/v2/{name}/blobs/{digest}"), 404, "NAME_UNKNOWN")
    assert name not in oci.all_repositories()


def test_unknown_manifest_in_known_repository(oci: OciClient, repo: str) -> None:
    _pushed_blob(oci, repo)
    assert_error(oci.get_manifest(repo, "nope"), 404, "MANIFEST_UNKNOWN")
    assert_error(oci.get_manifest(repo, sha256(b"nope")), 404, "MANIFEST_UNKNOWN")


# registry hosts (ECR-style)


def test_ecr_host_selects_account(berth: BerthServer, repo: str) -> None:
    default_host = f"123456789012.dkr.ecr.us-east-1.localhost:{berth.port}"
    other_host = f"111111111111.dkr.ecr.us-west-2.localhost:{berth.port}"
    image = random_image()
    with OciClient(berth.url) as bare, OciClient(berth.url, host=default_host) as ecr, \
            OciClient(berth.url, host=other_host) as other:
        assert bare.push_image(repo, image, "v1").status_code == 201
        # the default account's ECR host is the bare host
        _check_manifest_served(ecr, repo, "v1", image.body, OCI_MANIFEST)
        assert repo in ecr.all_repositories()
        assert ecr.all_repositories() == bare.all_repositories()
        # another account/region is another registry
        assert_error(other.get_manifest(repo, "v1"), 404, "NAME_UNKNOWN")
        assert repo not in other.all_repositories()
        private = repo + "-west"
        other_image = random_image()
        assert other.push_image(private, other_image, "w").status_code == 201
        _check_manifest_served(other, private, "w", other_image.body, OCI_MANIFEST)
        assert private in other.all_repositories()
        assert private not in bare.all_repositories()
        assert_error(bare.get_manifest(private, "w"), 404, "NAME_UNKNOWN")
        # same name in both registries, different content
        assert other.push_image(repo, other_image, "v1").status_code == 201
        _check_manifest_served(other, repo, "v1", other_image.body, OCI_MANIFEST)
        _check_manifest_served(bare, repo, "v1", image.body, OCI_MANIFEST)


def test_manifest_body_round_trips_exactly(oci: OciClient, repo: str) -> None:
    """Bytes are stored as sent: whitespace and key order are part of the digest."""
    image = random_image()
    for data in image.blobs:
        oci.push_blob(repo, data)
    pretty = json.dumps(json.loads(image.body), indent=3).encode() + b"\n"
    _put_ok(oci, repo, "pretty", pretty, OCI_MANIFEST)
    _check_manifest_served(oci, repo, "pretty", pretty, OCI_MANIFEST)
    assert sha256(pretty) != image.digest
    assert dumps(json.loads(pretty)) == image.body
