"""Bad input: each gets its status and OCI error code, stores nothing, and the registry keeps serving.

Runs against a real `berth serve`, once on SQLite and once on PostgreSQL.
"""

from __future__ import annotations

import json
import os
import re
import socket
import time
import uuid
from collections.abc import Iterator
from urllib.parse import quote

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.support.oci import (
    OCI_INDEX,
    OCI_MANIFEST,
    Image,
    OciClient,
    assert_error,
    dumps,
    error_codes,
    index_of,
    random_image,
    raw_get,
    raw_request,
    sha256,
)
from tests.support.servers import BerthServer

pytestmark = pytest.mark.integration

TAG_GRAMMAR = r"[A-Za-z0-9_][A-Za-z0-9._-]{0,127}"


@pytest.fixture
def oci(berth: BerthServer) -> Iterator[OciClient]:
    with OciClient(berth.url) as client:
        yield client


@pytest.fixture
def repo(oci: OciClient) -> Iterator[str]:
    """An existing repository holding one tagged image; after the test it must still be intact."""
    name = f"bad/{uuid.uuid4().hex[:10]}"
    image = random_image(layers=1)
    assert oci.push_image(name, image, "good").status_code == 201
    before = oci.all_repositories()
    yield name
    # the registry keeps serving, and nothing bad was stored
    assert oci.http.get("/v2/").status_code == 200
    assert oci.all_tags(name) == ["good"]
    r = oci.get_manifest(name, "good")
    assert r.status_code == 200 and r.content == image.body
    assert oci.all_repositories() == before


def _image_with_blobs(oci: OciClient, name: str) -> Image:
    image = random_image(layers=1)
    for data in image.blobs:
        assert oci.push_blob(name, data).status_code == 201
    return image


def _manifest_absent(oci: OciClient, name: str, body: bytes) -> None:
    assert_error(oci.get_manifest(name, sha256(body)), 404, "MANIFEST_UNKNOWN")


# manifests


def test_malformed_json_manifest(oci: OciClient, repo: str) -> None:
    for body in (b"{not json", b'{"schemaVersion": 2, "config": ', b"\xff\xfe\x00garbage", b""):
        assert_error(oci.put_manifest(repo, "bad", body), 400, "MANIFEST_INVALID")
        _manifest_absent(oci, repo, body)


def test_non_object_json_manifest(oci: OciClient, repo: str) -> None:
    for body in (b"[1, 2]", b'"a string"', b"42", b"null", b"true"):
        assert_error(oci.put_manifest(repo, "bad", body), 400, "MANIFEST_INVALID")
        _manifest_absent(oci, repo, body)


def test_structurally_invalid_manifests(oci: OciClient, repo: str) -> None:
    image = _image_with_blobs(oci, repo)
    good = json.loads(image.body)
    bad_docs = [
        {**good, "schemaVersion": 1},
        {k: v for k, v in good.items() if k != "schemaVersion"},
        {k: v for k, v in good.items() if k != "config"},
        {**good, "layers": "not a list"},
        {**good, "layers": [{"mediaType": "x", "digest": "sha256:abc", "size": 1}]},
        {**good, "layers": [{**good["layers"][0], "size": -1}]},
        {**good, "layers": [{**good["layers"][0], "size": "12"}]},
        {**good, "config": {**good["config"], "digest": 7}},
        {**good, "annotations": {"a": 1}},
        {**good, "mediaType": 5},
        {**good, "mediaType": "text/plain"},
        {"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": {"not": "a list"}},
        {**good, "artifactType": "application/x\u0000y"},  # PostgreSQL text cannot hold NUL: no 500
        {**good, "artifactType": ["application/x"]},
        {**good, "config": {**good["config"], "mediaType": "application/x\u0000config"}},
    ]
    for doc in bad_docs:
        body = dumps(doc)
        media = doc.get("mediaType") if isinstance(doc.get("mediaType"), str) else OCI_MANIFEST
        r = oci.put_manifest(repo, "bad", body, media)
        assert_error(r, 400, "MANIFEST_INVALID")
        _manifest_absent(oci, repo, body)


def test_manifest_over_4_mib(oci: OciClient, repo: str) -> None:
    image = _image_with_blobs(oci, repo)
    doc = json.loads(image.body)
    doc["annotations"] = {"padding": "x" * (4 * 1024 * 1024)}
    body = dumps(doc)
    assert len(body) > 4 * 1024 * 1024
    try:
        r = oci.put_manifest(repo, "huge", body)
    except httpx.TransportError:  # the server may answer early and close: then it stored nothing either
        pass
    else:
        assert_error(r, 413, "MANIFEST_INVALID")
    _manifest_absent(oci, repo, body)


def test_media_type_disagrees_with_content_type(oci: OciClient, repo: str) -> None:
    image = _image_with_blobs(oci, repo)
    for content_type in (OCI_INDEX, "application/vnd.docker.distribution.manifest.v2+json"):
        assert_error(oci.put_manifest(repo, "bad", image.body, content_type), 400, "MANIFEST_INVALID")
    _manifest_absent(oci, repo, image.body)


def test_schema1_manifest_refused(oci: OciClient, repo: str) -> None:
    body = dumps({"schemaVersion": 1, "name": repo, "tag": "old", "fsLayers": [], "history": []})
    r = oci.put_manifest(repo, "old", body, "application/vnd.docker.distribution.manifest.v1+prettyjws")
    assert r.status_code == 400
    assert set(error_codes(r)) & {"MANIFEST_INVALID", "UNSUPPORTED"}
    _manifest_absent(oci, repo, body)


def test_missing_layer(oci: OciClient, repo: str) -> None:
    image = random_image(layers=2)
    oci.push_blob(repo, image.config)
    oci.push_blob(repo, image.layers[0])
    assert_error(oci.put_manifest(repo, "bad", image.body), 400, "MANIFEST_BLOB_UNKNOWN")
    assert_error(oci.put_manifest(repo, image.digest, image.body), 400, "MANIFEST_BLOB_UNKNOWN")
    _manifest_absent(oci, repo, image.body)


def test_missing_config(oci: OciClient, repo: str) -> None:
    image = random_image(layers=1)
    oci.push_blob(repo, image.layers[0])
    assert_error(oci.put_manifest(repo, "bad", image.body), 400, "MANIFEST_BLOB_UNKNOWN")
    _manifest_absent(oci, repo, image.body)


@pytest.fixture
def other_repo(oci: OciClient) -> str:
    name = f"bad/other-{uuid.uuid4().hex[:10]}"
    assert oci.push_blob(name, b"other").status_code == 201
    return name


def test_blob_of_another_repository_is_missing(oci: OciClient, other_repo: str, repo: str) -> None:
    """Blobs are per repository: content elsewhere in the registry does not satisfy a manifest."""
    image = _image_with_blobs(oci, other_repo)
    assert_error(oci.put_manifest(repo, "bad", image.body), 400, "MANIFEST_BLOB_UNKNOWN")
    _manifest_absent(oci, repo, image.body)


def test_missing_index_child(oci: OciClient, repo: str) -> None:
    present = _image_with_blobs(oci, repo)
    assert oci.put_manifest(repo, present.digest, present.body).status_code == 201
    body = index_of([present, random_image()])
    assert_error(oci.put_manifest(repo, "bad", body, OCI_INDEX), 404, "MANIFEST_UNKNOWN")
    _manifest_absent(oci, repo, body)


def test_manifest_digest_mismatch(oci: OciClient, repo: str) -> None:
    image = _image_with_blobs(oci, repo)
    wrong = sha256(image.body + b" ")
    assert_error(oci.put_manifest(repo, wrong, image.body), 400, "DIGEST_INVALID")
    _manifest_absent(oci, repo, image.body)
    _manifest_absent(oci, repo, image.body + b" ")


@pytest.mark.parametrize("digest", [
    "md5:" + "0" * 32,
    "sha384:" + "0" * 96,
    "sha256:" + "0" * 63,
    "sha256:" + "G" * 64,
    "sha256:" + "A" * 64,
    "sha256:",
    ":abc",
])
def test_bad_digests(oci: OciClient, repo: str, digest: str) -> None:
    data = os.urandom(100)
    # monolithic upload, completion of a session, manifest put, blob and manifest reads
    assert_error(oci.push_blob(repo, data, digest=digest), 400, "DIGEST_INVALID")
    location = oci.start_upload(repo)
    assert_error(oci.http.put(location, params={"digest": digest}, content=data), 400, "DIGEST_INVALID")
    assert oci.http.delete(location).status_code == 204
    image = _image_with_blobs(oci, repo)
    assert_error(oci.put_manifest(repo, digest, image.body), 400, "DIGEST_INVALID")
    # reads: nothing is found under a malformed digest, and the spec says not found MUST be 404;
    # the referrers API is told to answer an invalid digest 400
    assert_error(oci.get_blob(repo, digest), 404, "BLOB_UNKNOWN")
    assert oci.http.head(f"/v2/{repo}/blobs/{digest}").status_code == 404
    assert_error(oci.get_manifest(repo, digest), 404, "MANIFEST_UNKNOWN")
    assert oci.http.head(f"/v2/{repo}/manifests/{digest}").status_code == 404
    assert_error(oci.http.get(f"/v2/{repo}/referrers/{digest}"), 400, "DIGEST_INVALID")
    assert_error(oci.get_blob(repo, sha256(data)), 404, "BLOB_UNKNOWN")


def test_blob_digest_mismatch(oci: OciClient, repo: str, berth: BerthServer) -> None:
    data = os.urandom(5000)
    wrong = sha256(data + b"!")
    assert_error(oci.push_blob(repo, data, digest=wrong), 400, "DIGEST_INVALID")
    assert_error(oci.push_blob_post_put(repo, data, digest=wrong), 400, "DIGEST_INVALID")
    assert_error(oci.push_blob_chunked(repo, data, chunk=1500, digest=wrong), 400, "DIGEST_INVALID")
    for digest in (wrong, sha256(data)):
        assert_error(oci.get_blob(repo, digest), 404, "BLOB_UNKNOWN")
        assert oci.http.head(f"/v2/{repo}/blobs/{digest}").status_code == 404
    for d in (wrong, sha256(data)):
        hexpart = d.split(":")[1]
        assert not (berth.data_dir / "blobs" / "sha256" / hexpart[:2] / hexpart).exists()


# names and tags


def _catalog_unchanged(oci: OciClient, before: list[str]) -> None:
    assert oci.all_repositories() == before


@pytest.mark.parametrize("name", [
    "Upper/case",
    "lower/Case",
    "a//b",
    "a/",
    "-leading",
    "trailing-",
    "a/.hidden",
    "a__b__",
    "a...b",
    "x" * 257,
    "/".join(["abcdefgh"] * 29),  # 260 characters of valid components
])
def test_invalid_repository_names(oci: OciClient, repo: str, name: str) -> None:
    before = oci.all_repositories()
    image = _image_with_blobs(oci, repo)
    data = os.urandom(10)
    responses = [
        oci.push_blob(name, data),
        oci.http.post(f"/v2/{name}/blobs/uploads/"),
        oci.put_manifest(name, "v1", image.body),
        oci.get_manifest(name, "v1"),
        oci.tags(name),
        oci.get_blob(name, sha256(data)),
        oci.http.post(f"/v2/{name}/blobs/uploads/", params={"mount": sha256(image.config), "from": repo}),
    ]
    for r in responses:
        assert_error(r, 400, "NAME_INVALID")
    _catalog_unchanged(oci, before)


def test_dot_dot_and_encoded_dot_dot(oci: OciClient, repo: str, berth: BerthServer) -> None:
    before = oci.all_repositories()
    host, port = "127.0.0.1", berth.port
    for path in (f"/v2/{repo}/../etc/tags/list", f"/v2/{repo}/%2e%2e/x/tags/list", f"/v2/{repo}/%2E%2E/x/tags/list",
                 "/v2/../v2/x/tags/list", f"/v2/{repo}/./x/tags/list", f"/v2/{repo}/%2e/x/tags/list",
                 f"/v2/{repo}//x/tags/list"):
        status, _, body = raw_get(host, port, path)
        assert status == 400, (path, status, body)
        assert json.loads(body)["errors"][0]["code"] == "NAME_INVALID", path
    # and for writes, through a normal client with encoded dots (which no client normalises)
    data = os.urandom(10)
    r = oci.http.post(f"/v2/{repo}/%2e%2e/x/blobs/uploads/", params={"digest": sha256(data)}, content=data)
    assert_error(r, 400, "NAME_INVALID")
    r = oci.http.put(f"/v2/{repo}/%2e%2e/x/manifests/v1", content=b"{}")
    assert_error(r, 400, "NAME_INVALID")
    # an encoded slash is not a way around the grammar either
    r = oci.http.get(f"/v2/{repo}%2F%2E%2E%2Fx/tags/list")
    assert r.status_code in (400, 404)
    assert error_codes(r)[0] in ("NAME_INVALID", "NAME_UNKNOWN")
    _catalog_unchanged(oci, before)


def test_name_of_256_characters_is_valid(oci: OciClient) -> None:
    name = "a" + "/".join(["abcdefg"] * 32)
    assert len(name) == 256
    assert oci.push_blob(name, b"ok").status_code == 201
    assert name in oci.all_repositories()


@pytest.mark.parametrize("tag", ["x" * 129, ".leading-dot", "-leading-dash", "has+plus", "has space",
                                 "sp\u00e9cial", "tab\there", "semi;colon", "a*b", "~tilde",
                                 ".INVALID_MANIFEST_NAME"])  # the OCI conformance suite's nonexistent manifest
def test_invalid_tags(oci: OciClient, repo: str, tag: str) -> None:
    image = _image_with_blobs(oci, repo)
    path = quote(tag, safe="")
    r = oci.http.put(f"/v2/{repo}/manifests/{path}", content=image.body, headers={"Content-Type": OCI_MANIFEST})
    assert_error(r, 400, "TAG_INVALID")
    # a read finds nothing under a name no manifest can have: 404, as the spec requires of not found
    assert_error(oci.http.get(f"/v2/{repo}/manifests/{path}"), 404, "MANIFEST_UNKNOWN")
    head = oci.http.head(f"/v2/{repo}/manifests/{path}")
    assert head.status_code == 404 and head.content == b""
    assert_error(oci.http.delete(f"/v2/{repo}/manifests/{path}"), 400, "TAG_INVALID")
    _manifest_absent(oci, repo, image.body)


def test_longest_valid_tag(oci: OciClient, repo: str) -> None:
    image = _image_with_blobs(oci, repo)
    tag = "_" + "a" * 127
    assert oci.put_manifest(repo, tag, image.body).status_code == 201
    assert oci.get_manifest(repo, tag).content == image.body
    assert oci.http.delete(f"/v2/{repo}/manifests/{tag}").status_code == 202  # leave the fixture's tags as found


# uploads


def test_patch_unknown_upload(oci: OciClient, repo: str) -> None:
    for upload_id in ("does-not-exist-1234567890", "short", "a" * 200, "x.y", "%00zero-byte-0000", "%E2%82%AC-euro",
                      "%0D%0Ainjected: header", "%FF"):
        loc = f"/v2/{repo}/blobs/uploads/{upload_id}"
        assert_error(oci.http.patch(loc, content=b"abc"), 404, "BLOB_UPLOAD_UNKNOWN")
        assert_error(oci.http.get(loc), 404, "BLOB_UPLOAD_UNKNOWN")
        assert_error(oci.http.put(loc, params={"digest": sha256(b"abc")}, content=b"abc"), 404, "BLOB_UPLOAD_UNKNOWN")
        assert_error(oci.http.delete(loc), 404, "BLOB_UPLOAD_UNKNOWN")


def _two_answers(port: int, first: bytes, body: bytes) -> list[bytes]:
    """`first` (a request's head), `body` a moment later (a separate segment, as under load), then a GET
    /v2/ on the same connection: the status lines of every answer the connection carried."""
    with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
        s.sendall(first)
        time.sleep(0.2)  # the error is decided (and answered) before the body arrives
        s.sendall(body + b"GET /v2/ HTTP/1.1\r\nHost: x\r\n\r\n")
        data = b""
        while data.count(b"HTTP/1.1 ") < 2:
            chunk = s.recv(65536)
            if not chunk:
                break
            data += chunk
    return re.findall(rb"HTTP/1\.1 \d{3}", data)


@pytest.mark.parametrize("size", [3, 200_000])
def test_an_error_before_the_body_is_read_keeps_the_connection(berth: BerthServer, repo: str, size: int) -> None:
    """A keep-alive client whose PATCH to an unknown upload (or unauthenticated push) is refused before its
    body was read can send its next request on the same connection: the small body is drained first."""
    head = (f"PATCH /v2/{repo}/blobs/uploads/does-not-exist-1234567890 HTTP/1.1\r\nHost: x\r\n"
            f"Content-Length: {size}\r\n\r\n").encode()
    assert _two_answers(berth.port, head, b"x" * size) == [b"HTTP/1.1 404", b"HTTP/1.1 200"]
    chunked = f"PATCH /v2/{repo}/blobs/uploads/nope-1234567890abcdef HTTP/1.1\r\nHost: x\r\n" \
              "Transfer-Encoding: chunked\r\n\r\n"
    assert _two_answers(berth.port, chunked.encode(), b"5\r\nhello\r\n0\r\n\r\n") == \
        [b"HTTP/1.1 404", b"HTTP/1.1 200"]


def test_patch_finished_upload(oci: OciClient, repo: str) -> None:
    data = os.urandom(1000)
    location = oci.start_upload(repo)
    assert oci.patch(location, data, 0).status_code == 202
    assert oci.http.put(location, params={"digest": sha256(data)}).status_code == 201
    assert_error(oci.patch(location, b"more", len(data)), 404, "BLOB_UPLOAD_UNKNOWN")
    assert_error(oci.http.patch(location, content=b"more"), 404, "BLOB_UPLOAD_UNKNOWN")
    assert_error(oci.http.put(location, params={"digest": sha256(data)}), 404, "BLOB_UPLOAD_UNKNOWN")
    assert oci.get_blob(repo, sha256(data)).content == data


def test_content_range_not_continuing(oci: OciClient, repo: str) -> None:
    data = os.urandom(2000)
    location = oci.start_upload(repo)
    assert oci.patch(location, data[:1000], 0).status_code == 202
    for start, end in ((1001, 1999), (999, 1999), (0, 999), (5000, 5999)):
        r = oci.http.patch(location, content=data[1000:], headers={"Content-Range": f"{start}-{end}"})
        assert r.status_code == 416, (start, end, r.status_code, r.text)
        assert r.headers["Range"] == "0-999"
    # Content-Range and the body disagree in length
    r = oci.http.patch(location, content=data[1000:1500], headers={"Content-Range": "1000-1999"})
    assert 400 <= r.status_code < 500, r.text
    error_codes(r)
    # garbage Content-Range
    r = oci.http.patch(location, content=data[1000:], headers={"Content-Range": "bytes=a-b"})
    assert 400 <= r.status_code < 500, r.text
    error_codes(r)
    assert oci.http.get(location).headers["Range"] == "0-999"
    assert oci.patch(location, data[1000:], 1000).status_code == 202
    assert oci.http.put(location, params={"digest": sha256(data)}).status_code == 201
    assert oci.get_blob(repo, sha256(data)).content == data


def test_range_outside_blob(oci: OciClient, repo: str) -> None:
    data = os.urandom(1000)
    oci.push_blob(repo, data)
    for rng in ("bytes=1000-", "bytes=1000-1000", "bytes=5000-6000", "bytes=500-100", "bytes=-0"):
        r = oci.get_blob(repo, sha256(data), headers={"Range": rng})
        assert r.status_code == 416, (rng, r.status_code)
        assert r.headers["Content-Range"] == "bytes */1000"
    assert oci.get_blob(repo, sha256(data)).content == data


def test_bad_pagination(oci: OciClient, repo: str) -> None:
    for n in ("abc", "-1", "1.5", "99999999999999999999999", "\uff11"):
        for r in (oci.tags(repo, n=n), oci.catalog(n=n)):
            assert 400 <= r.status_code < 500 or r.status_code == 200, (n, r.status_code, r.text)
            if r.status_code != 200:
                assert error_codes(r) == ["PAGINATION_NUMBER_INVALID"]
    for last in ("\x00", "a\x00b", "\uffff", "\U0001f600"):
        assert oci.tags(repo, last=last).status_code == 200, last
        assert oci.catalog(last=last).status_code == 200, last


def test_method_not_allowed_and_unknown_paths(oci: OciClient, repo: str) -> None:
    for method, path in (("POST", f"/v2/{repo}/manifests/good"), ("PATCH", f"/v2/{repo}/blobs/{sha256(b'')}"),
                         ("DELETE", f"/v2/{repo}/tags/list"), ("PUT", "/v2/_catalog")):
        r = oci.request(method, path)
        assert r.status_code == 405, (method, path, r.status_code)
        error_codes(r)
    for path in ("/v2/nothing-here", f"/v2/{repo}/other/thing", f"/v2/{repo}/manifests/"):
        r = oci.http.get(path)
        assert r.status_code == 404, (path, r.status_code)
        error_codes(r)


def _send_partial(port: int, head: str, body: bytes) -> None:
    """Send a request's headers and part of its body, then vanish."""
    with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
        s.sendall(head.encode() + body)
        time.sleep(0.05)


def _wait_range(oci: OciClient, location: str, expected: str, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while True:
        r = oci.http.get(location)
        assert r.status_code == 204, r.text
        if r.headers["Range"] == expected or time.monotonic() > deadline:
            break
        time.sleep(0.05)
    assert r.headers["Range"] == expected


def _wait_released(oci: OciClient, location: str, timeout: float = 10.0) -> None:
    """Until the request whose client vanished has noticed it and let go of the upload: an empty PATCH
    (it changes nothing) is refused 416 while another request holds the session."""
    deadline = time.monotonic() + timeout
    while (r := oci.http.patch(location, content=b"")).status_code == 416 and time.monotonic() < deadline:
        time.sleep(0.05)
    assert r.status_code == 202, r.text


def test_body_shorter_than_content_length(oci: OciClient, repo: str, berth: BerthServer) -> None:
    uploads_before = set((berth.data_dir / "uploads").iterdir())
    full = os.urandom(1000)
    digest = sha256(full)
    host = f"Host: 127.0.0.1:{berth.port}\r\n"
    # monolithic upload
    _send_partial(berth.port, f"POST /v2/{repo}/blobs/uploads/?digest={digest} HTTP/1.1\r\n{host}"
                              "Content-Type: application/octet-stream\r\nContent-Length: 1000\r\n\r\n", full[:10])
    # manifest put
    image = _image_with_blobs(oci, repo)
    _send_partial(berth.port, f"PUT /v2/{repo}/manifests/short HTTP/1.1\r\n{host}Content-Type: {OCI_MANIFEST}\r\n"
                              f"Content-Length: {len(image.body)}\r\n\r\n", image.body[:10])
    # a chunk and a completing PUT on a session
    location = oci.start_upload(repo)
    assert oci.patch(location, full[:100], 0).status_code == 202
    _send_partial(berth.port, f"PATCH {location} HTTP/1.1\r\n{host}Content-Range: 100-999\r\n"
                              "Content-Length: 900\r\n\r\n", full[100:110])
    _wait_range(oci, location, "0-99")
    _send_partial(berth.port, f"PUT {location}?digest={digest} HTTP/1.1\r\n{host}"
                              "Content-Length: 900\r\n\r\n", full[100:110])
    _wait_range(oci, location, "0-99")
    # nothing was created, and the server answers
    assert_error(oci.get_blob(repo, digest), 404, "BLOB_UNKNOWN")
    assert_error(oci.get_manifest(repo, "short"), 404, "MANIFEST_UNKNOWN")
    _manifest_absent(oci, repo, image.body)
    assert oci.http.get("/v2/").status_code == 200
    # the session is still usable
    assert oci.patch(location, full[100:], 100).status_code == 202
    assert oci.http.put(location, params={"digest": digest}).status_code == 201
    assert oci.get_blob(repo, digest).content == full
    # no upload file left behind by the abandoned monolithic upload
    deadline = time.monotonic() + 5
    while set((berth.data_dir / "uploads").iterdir()) - uploads_before and time.monotonic() < deadline:
        time.sleep(0.05)
    leftovers = set((berth.data_dir / "uploads").iterdir()) - uploads_before
    assert not leftovers, leftovers


def test_client_disconnects_mid_patch(oci: OciClient, repo: str, berth: BerthServer) -> None:
    data = os.urandom(3 << 20)
    location = oci.start_upload(repo)
    assert oci.patch(location, data[:1 << 20], 0).status_code == 202
    with socket.create_connection(("127.0.0.1", berth.port), timeout=10) as s:
        s.sendall(f"PATCH {location} HTTP/1.1\r\nHost: 127.0.0.1:{berth.port}\r\n"
                  f"Content-Range: {1 << 20}-{(3 << 20) - 1}\r\nContent-Length: {2 << 20}\r\n\r\n".encode())
        s.sendall(data[1 << 20:(3 << 19)])  # half of what was announced
        time.sleep(0.3)  # let the server write some of it
    _wait_range(oci, location, f"0-{(1 << 20) - 1}")
    _wait_released(oci, location)
    # a chunked-transfer PATCH that stops mid-way
    with socket.create_connection(("127.0.0.1", berth.port), timeout=10) as s:
        s.sendall(f"PATCH {location} HTTP/1.1\r\nHost: 127.0.0.1:{berth.port}\r\n"
                  "Transfer-Encoding: chunked\r\n\r\n".encode())
        s.sendall(b"%x\r\n" % 65536 + data[1 << 20:(1 << 20) + 65536] + b"\r\n")
        time.sleep(0.2)
    _wait_range(oci, location, f"0-{(1 << 20) - 1}")
    _wait_released(oci, location)
    # the session goes on from the last acknowledged byte and completes correctly
    assert oci.patch(location, data[1 << 20:], 1 << 20).status_code == 202
    r = oci.http.put(location, params={"digest": sha256(data)})
    assert r.status_code == 201, r.text
    assert oci.get_blob(repo, sha256(data)).content == data


def test_headers_only_then_close(berth: BerthServer, oci: OciClient) -> None:
    """Garbage and truncated requests on raw sockets do not take the server down."""
    for junk in (b"GARBAGE\r\n\r\n", b"GET /v2/ HTTP/1.1\r\n", b"\x00\x01\x02\x03" * 100,
                 b"PUT /v2/junk/x/manifests/y HTTP/1.1\r\nContent-Length: 99999999999\r\n\r\n{"):
        with socket.create_connection(("127.0.0.1", berth.port), timeout=5) as s:
            s.sendall(junk)
    status, headers, _ = raw_request("127.0.0.1", berth.port,
                                     f"GET /v2/ HTTP/1.1\r\nHost: 127.0.0.1:{berth.port}\r\n"
                                     "Connection: close\r\n\r\n".encode())
    assert status == 200
    assert headers["docker-distribution-api-version"] == "registry/2.0"
    assert oci.http.get("/v2/").status_code == 200


# rejected pushes to a new name


def test_rejected_push_does_not_create_repository(oci: OciClient) -> None:
    before = oci.all_repositories()
    name = f"bad/new-{uuid.uuid4().hex[:8]}"
    assert_error(oci.put_manifest(name, "v1", b"{not json"), 400, "MANIFEST_INVALID")
    assert_error(oci.push_blob(name, b"data", digest=sha256(b"other")), 400, "DIGEST_INVALID")
    assert oci.all_repositories() == before


# fuzzing the grammars: always a 4xx with an OCI error, never a 5xx

_NAME_CHARS = "abz09._-/AZ%:@ ~\x00\u00e9"
_TAG_CHARS = "aZ09._-+:/ %\u00e9\x00~"


def _oci_4xx(r: httpx.Response) -> None:
    assert 400 <= r.status_code < 500, (r.request.method, r.request.url, r.status_code, r.text)
    if r.request.method != "HEAD":
        assert error_codes(r)


@pytest.fixture(scope="module")
def fuzz_repo(berth: BerthServer) -> str:
    name = f"fuzz/{uuid.uuid4().hex[:8]}"
    with OciClient(berth.url) as oci:
        image = _image_with_blobs(oci, name)
        assert oci.put_manifest(name, "base", image.body).status_code == 201
    return name


@settings(max_examples=40, deadline=None, suppress_health_check=list(HealthCheck))
@given(name=st.text(_NAME_CHARS, min_size=0, max_size=40) | st.from_regex(r"[a-z0-9]{1,5}(/[a-z0-9._-]{0,6}){0,4}",
                                                                          fullmatch=True))
def test_fuzz_repository_names(berth: BerthServer, name: str) -> None:
    from berth.registry.names import MAX_NAME, NAME_RE

    valid = len(name) <= MAX_NAME and NAME_RE.fullmatch(name) is not None
    path = quote(name, safe="/")
    with OciClient(berth.url) as oci:
        for r in (oci.http.get(f"/v2/{path}/tags/list"), oci.http.get(f"/v2/{path}/manifests/latest"),
                  oci.http.head(f"/v2/{path}/blobs/{sha256(b'x')}"),
                  oci.http.get(f"/v2/{path}/referrers/{sha256(b'x')}")):
            _oci_4xx(r)
            routed = all(f"/{k}/" not in name for k in ("tags", "manifests", "blobs", "referrers"))
            dots = any(seg in (".", "..") for seg in name.split("/"))  # clients normalise those away
            if r.request.method != "HEAD" and routed and not dots and name:
                assert error_codes(r) == (["NAME_UNKNOWN"] if valid else ["NAME_INVALID"]), (name, r.text)
        if not valid and not dots:  # a push is refused too, and creates nothing (a client would send
            # "a/./b" as "a/b", a valid name, so those are left out)
            _oci_4xx(oci.http.post(f"/v2/{path}/blobs/uploads/"))
            assert name not in oci.all_repositories()


@settings(max_examples=40, deadline=None, suppress_health_check=list(HealthCheck))
@given(tag=st.text(_TAG_CHARS, min_size=1, max_size=140) | st.from_regex(TAG_GRAMMAR, fullmatch=True))
def test_fuzz_tags(berth: BerthServer, fuzz_repo: str, tag: str) -> None:
    path = quote(tag, safe="")
    with OciClient(berth.url) as oci:
        body = oci.get_manifest(fuzz_repo, "base").content
        r = oci.http.put(f"/v2/{fuzz_repo}/manifests/{path}", content=body, headers={"Content-Type": OCI_MANIFEST})
        if "/" in tag or tag in (".", ".."):  # another route (or normalised away by the client): 404
            _oci_4xx(r)
        elif ":" in tag:
            _oci_4xx(r)
            assert error_codes(r) == ["DIGEST_INVALID"], (tag, r.text)
        elif re.fullmatch(TAG_GRAMMAR, tag):
            assert r.status_code == 201, (tag, r.text)
            got = oci.http.get(f"/v2/{fuzz_repo}/manifests/{path}")
            assert got.status_code == 200 and got.content == body
            if tag != "base":
                assert oci.http.delete(f"/v2/{fuzz_repo}/manifests/{path}").status_code == 202
        else:
            _oci_4xx(r)
            assert error_codes(r) == ["TAG_INVALID"], (tag, r.text)
            got = oci.http.get(f"/v2/{fuzz_repo}/manifests/{path}")
            assert got.status_code == 404 and error_codes(got) == ["MANIFEST_UNKNOWN"], (tag, got.text)
        assert oci.all_tags(fuzz_repo) == ["base"]
