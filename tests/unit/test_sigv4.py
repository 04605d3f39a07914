from __future__ import annotations

import dataclasses
import hashlib
import json
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import urlsplit

import botocore.auth
import botocore.session
import pytest
from botocore.auth import S3SigV4QueryAuth, SigV4Auth, SigV4QueryAuth
from botocore.awsrequest import AWSRequest
from botocore.config import Config
from botocore.credentials import Credentials

from berth.iam import sigv4
from berth.iam.sigv4 import (
    IncompleteSignature,
    MissingAuthentication,
    RequestExpired,
    SignatureDoesNotMatch,
    canonical_query_string,
    canonical_uri,
    parse_authorization,
    verify,
)

AKID = "AKIAIOSFODNN7EXAMPLE"
SECRET = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"
NOW = datetime(2026, 11, 27, 10, 0, 0, tzinfo=UTC)
ENDPOINT = "http://localhost:5000"


@pytest.fixture(autouse=True)
def frozen_signer_clock(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(botocore.auth, "get_current_datetime", lambda: NOW.replace(tzinfo=None))


@dataclass
class Wire:
    """A request as the server sees it."""

    method: str
    path: str
    query: str
    headers: list[tuple[str, str]]
    body: bytes

    def parse(self) -> sigv4.SigV4Request:
        return parse_authorization(self.method, self.path, self.query, self.headers)

    def verify(self, secret: str = SECRET, now: datetime = NOW, body: bytes | None = None) -> None:
        data = self.body if body is None else body
        verify(self.parse(), secret, hashlib.sha256(data).hexdigest(), now)

    def with_header(self, name: str, value: str) -> Wire:
        kept = [(n, v) for n, v in self.headers if n.lower() != name.lower()]
        return Wire(self.method, self.path, self.query, [*kept, (name, value)], self.body)


def to_wire(request: AWSRequest) -> Wire:
    parts = urlsplit(request.url)
    headers = [(k, v if isinstance(v, str) else v.decode()) for k, v in request.headers.items()]
    if not any(k.lower() == "host" for k, _ in headers):
        headers.append(("Host", parts.netloc))  # what the HTTP client adds on the wire
    body = request.body or b""
    return Wire(request.method, parts.path, parts.query, headers, body)


def creds(token: str | None = None) -> Credentials:
    return Credentials(AKID, SECRET, token)


def sign(
    method: str = "POST",
    url: str = ENDPOINT + "/",
    body: bytes | dict[str, str] = b"",
    headers: dict[str, str] | None = None,
    service: str = "ecr",
    params: dict[str, str] | None = None,
    token: str | None = None,
) -> Wire:
    request = AWSRequest(method=method, url=url, data=body, headers=headers or {}, params=params or {})
    SigV4Auth(creds(token), service, "us-east-1").add_auth(request)
    prepared = request.prepare()  # moves params into the URL and encodes a dict body, as on the wire
    parts = urlsplit(prepared.url)
    wire = to_wire(request)
    body = prepared.body or b""
    return Wire(wire.method, parts.path, parts.query, wire.headers, body.encode() if isinstance(body, str) else body)


def ecr_request(body: bytes = b'{"repositoryName": "team/app"}') -> Wire:
    return sign(
        body=body,
        headers={
            "X-Amz-Target": "AmazonEC2ContainerRegistry_V20150921.CreateRepository",
            "Content-Type": "application/x-amz-json-1.1",
        },
    )


def presign(url: str, expires: int = 60, auth_class: type[SigV4QueryAuth] = SigV4QueryAuth) -> Wire:
    request = AWSRequest(method="GET", url=url)
    auth_class(creds(), "ecr", "us-east-1", expires=expires).add_auth(request)
    return to_wire(request)


# --- header form -------------------------------------------------------------------------------


def test_header_round_trip_and_parsed_fields() -> None:
    wire = ecr_request()
    req = wire.parse()
    assert (req.access_key_id, req.region, req.service) == (AKID, "us-east-1", "ecr")
    assert req.date == NOW and req.amz_date == "20261127T100000Z"
    assert req.credential_scope == "20261127/us-east-1/ecr/aws4_request"
    assert "host" in req.signed_headers and "x-amz-target" in req.signed_headers
    assert not req.presigned and req.expires is None
    wire.verify()


def test_headers_are_case_insensitive_and_may_be_asgi_bytes() -> None:
    wire = ecr_request()
    shouted = [(n.upper(), v) for n, v in wire.headers]
    verify(parse_authorization("post", wire.path, wire.query, shouted), SECRET, _h(wire.body), NOW)
    raw = [(n.lower().encode(), v.encode()) for n, v in wire.headers]
    verify(parse_authorization("POST", wire.path, wire.query, raw), SECRET, _h(wire.body), NOW)
    as_dict = {n.title(): v for n, v in wire.headers}
    verify(parse_authorization("POST", wire.path, wire.query, as_dict), SECRET, _h(wire.body), NOW)


def test_header_values_are_trimmed_and_collapsed() -> None:
    wire = sign(headers={"X-Custom": "  a   b  ", "X-Amz-Target": "x"})
    loose = wire.with_header("X-Custom", "a b")
    loose.verify()


def test_unsigned_extra_header_is_ignored() -> None:
    ecr_request().with_header("User-Agent", "something else").verify()


def test_tampered_body() -> None:
    with pytest.raises(SignatureDoesNotMatch):
        ecr_request().verify(body=b'{"repositoryName": "other"}')


def test_tampered_signed_header() -> None:
    wire = ecr_request().with_header("X-Amz-Target", "AmazonEC2ContainerRegistry_V20150921.DeleteRepository")
    with pytest.raises(SignatureDoesNotMatch):
        wire.verify()


def test_tampered_host() -> None:
    with pytest.raises(SignatureDoesNotMatch):
        ecr_request().with_header("Host", "evil:5000").verify()


def test_tampered_path_and_query() -> None:
    wire = sign(method="GET", url=ENDPOINT + "/v2/repo/tags/list?n=10")
    wire.verify()
    with pytest.raises(SignatureDoesNotMatch):
        Wire(wire.method, "/v2/other/tags/list", wire.query, wire.headers, wire.body).verify()
    with pytest.raises(SignatureDoesNotMatch):
        Wire(wire.method, wire.path, "n=11", wire.headers, wire.body).verify()
    with pytest.raises(SignatureDoesNotMatch):
        Wire("DELETE", wire.path, wire.query, wire.headers, wire.body).verify()


def test_wrong_secret() -> None:
    with pytest.raises(SignatureDoesNotMatch):
        ecr_request().verify(secret=SECRET + "x")


@pytest.mark.parametrize("minutes", [-14, 0, 14])
def test_inside_skew_window(minutes: int) -> None:
    ecr_request().verify(now=NOW + timedelta(minutes=minutes))


@pytest.mark.parametrize("minutes, text", [(16, "Signature expired"), (-16, "Signature not yet current")])
def test_outside_skew_window(minutes: int, text: str) -> None:
    with pytest.raises(RequestExpired, match=text):
        ecr_request().verify(now=NOW + timedelta(minutes=minutes))


def test_naive_now_is_utc() -> None:
    ecr_request().verify(now=NOW.replace(tzinfo=None))


def test_date_header_instead_of_x_amz_date() -> None:
    wire = sign(headers={"Date": "placeholder, replaced by the signer"})
    assert not any(n.lower() == "x-amz-date" for n, _ in wire.headers)
    req = wire.parse()
    assert req.amz_date == "20261127T100000Z" and "date" in req.signed_headers
    wire.verify()


def test_http_date_parsing() -> None:
    base = {
        "Authorization": "AWS4-HMAC-SHA256 Credential=AKID/20261127/us-east-1/ecr/aws4_request, "
        "SignedHeaders=date;host, Signature=00",
        "Host": "h",
    }
    for value in (
        "Fri, 27 Nov 2026 10:00:00 GMT",
        "Fri, 27 Nov 2026 10:00:00 -0000",
        "Fri, 27 Nov 2026 11:00:00 +0100",
    ):
        assert parse_authorization("GET", "/", "", {**base, "Date": value}).amz_date == "20261127T100000Z"
    with pytest.raises(IncompleteSignature, match="HTTP date"):
        parse_authorization("GET", "/", "", {**base, "Date": "yesterday"})


def test_scope_date_must_match_request_date() -> None:
    wire = ecr_request()
    auth = dict(wire.headers)["Authorization"].replace("/20261127/", "/20261126/")
    with pytest.raises(SignatureDoesNotMatch, match="Credential scope"):
        wire.with_header("Authorization", auth).verify()


def test_security_token_is_exposed_and_signed() -> None:
    wire = sign(headers={"X-Amz-Target": "x"}, token="session-token")
    req = wire.parse()
    assert req.security_token == "session-token" and "x-amz-security-token" in req.signed_headers
    wire.verify()
    with pytest.raises(SignatureDoesNotMatch):
        wire.with_header("X-Amz-Security-Token", "other-token").verify()


# --- x-amz-content-sha256 ----------------------------------------------------------------------


def test_declared_payload_hash() -> None:
    body = b'{"a": 1}'
    wire = sign(body=body, headers={"X-Amz-Content-SHA256": _h(body)})
    wire.verify()
    with pytest.raises(SignatureDoesNotMatch, match="x-amz-content-sha256"):
        wire.verify(body=b'{"a": 2}')


def test_unsigned_payload() -> None:
    wire = sign(body=b"data", headers={"X-Amz-Content-SHA256": sigv4.UNSIGNED_PAYLOAD})
    wire.verify(body=b"anything")


def test_streaming_payload_is_refused() -> None:
    wire = sign(body=b"data", headers={"X-Amz-Content-SHA256": "STREAMING-AWS4-HMAC-SHA256-PAYLOAD"})
    with pytest.raises(IncompleteSignature, match="chunked"):
        wire.verify()


# --- presigned query form ----------------------------------------------------------------------


def test_presigned_round_trip() -> None:
    wire = presign(ENDPOINT + "/v2/team/app/blobs/sha256:abc?x=1", expires=60)
    req = wire.parse()
    assert req.presigned and req.expires == 60 and req.service == "ecr" and req.access_key_id == AKID
    wire.verify()
    wire.verify(now=NOW + timedelta(seconds=60))


def test_presigned_expired() -> None:
    with pytest.raises(RequestExpired, match="expired"):
        presign(ENDPOINT + "/v2/x/blobs/y", expires=60).verify(now=NOW + timedelta(seconds=61))


def test_presigned_not_yet_valid() -> None:
    with pytest.raises(RequestExpired, match="not yet current"):
        presign(ENDPOINT + "/", expires=3600).verify(now=NOW - timedelta(minutes=16))


def test_presigned_long_lived_is_not_bound_by_skew() -> None:
    presign(ENDPOINT + "/", expires=3600).verify(now=NOW + timedelta(minutes=50))


def test_presigned_tampered_query_and_path() -> None:
    wire = presign(ENDPOINT + "/v2/x/blobs/y?x=1")
    with pytest.raises(SignatureDoesNotMatch):
        Wire(wire.method, wire.path, wire.query.replace("x=1", "x=2"), wire.headers, b"").verify()
    with pytest.raises(SignatureDoesNotMatch):
        Wire(
            wire.method, wire.path, wire.query.replace("X-Amz-Expires=60", "X-Amz-Expires=600"), wire.headers, b""
        ).verify()
    with pytest.raises(SignatureDoesNotMatch):
        Wire(wire.method, "/v2/x/blobs/z", wire.query, wire.headers, b"").verify()


def test_s3_style_presign_with_unsigned_payload() -> None:
    presign(ENDPOINT + "/v2/x/blobs/y", auth_class=S3SigV4QueryAuth).verify()


def test_presign_expires_over_a_week_is_malformed() -> None:
    wire = presign(ENDPOINT + "/")
    query = wire.query.replace("X-Amz-Expires=60", "X-Amz-Expires=604801")
    with pytest.raises(IncompleteSignature, match="X-Amz-Expires"):
        parse_authorization("GET", wire.path, query, wire.headers)


# --- missing and malformed ---------------------------------------------------------------------


def test_no_authentication_at_all() -> None:
    with pytest.raises(MissingAuthentication, match="Missing Authentication Token"):
        parse_authorization("POST", "/", "", {"Host": "localhost:5000"})


@pytest.mark.parametrize(
    "authorization, text",
    [
        (
            "AWS4-HMAC-SHA256 Credential=AKID/20261127/us-east-1/ecr/aws4_request, SignedHeaders=host",
            "requires 'Signature'",
        ),
        ("AWS4-HMAC-SHA256 SignedHeaders=host;x-amz-date, Signature=00", "requires 'Credential'"),
        ("AWS AKID:signature", "Unsupported AWS 'algorithm'"),
        ("Bearer abc", "Unsupported AWS 'algorithm'"),
        (
            "AWS4-HMAC-SHA256 Credential=AKID/20261127/us-east-1/aws4_request, SignedHeaders=host;x-amz-date, "
            "Signature=00",
            "Credential should be scoped",
        ),
        (
            "AWS4-HMAC-SHA256 Credential=AKID/20261127/us-east-1/ecr/aws5_request, SignedHeaders=host;x-amz-date, "
            "Signature=00",
            "Credential should be scoped",
        ),
        (
            "AWS4-HMAC-SHA256 Credential=AKID/2026-11-27/us-east-1/ecr/aws4_request, "
            "SignedHeaders=host;x-amz-date, Signature=00",
            "YYYYMMDD",
        ),
        (
            "AWS4-HMAC-SHA256 Credential=AKID/20261127/us-east-1/ecr/aws4_request, SignedHeaders=x-amz-date, "
            "Signature=00",
            "'Host' must be a signed header",
        ),
        (
            "AWS4-HMAC-SHA256 Credential=AKID/20261127/us-east-1/ecr/aws4_request, SignedHeaders=host, Signature=00",
            "'x-amz-date' must be a signed header",
        ),
        ("AWS4-HMAC-SHA256 Credential=AKID/20261127/us-east-1/ecr/aws4_request, garbage, Signature=00", "malformed"),
    ],
)
def test_malformed_authorization(authorization: str, text: str) -> None:
    headers = {"Authorization": authorization, "X-Amz-Date": "20261127T100000Z", "Host": "h"}
    with pytest.raises(IncompleteSignature, match=text):
        parse_authorization("POST", "/", "", headers)


def test_missing_date_header() -> None:
    headers = {
        "Authorization": "AWS4-HMAC-SHA256 Credential=AKID/20261127/us-east-1/ecr/aws4_request, "
        "SignedHeaders=host, Signature=00",
        "Host": "h",
    }
    with pytest.raises(IncompleteSignature, match="'X-Amz-Date' or a 'Date'"):
        parse_authorization("POST", "/", "", headers)


def test_bad_x_amz_date() -> None:
    wire = ecr_request().with_header("X-Amz-Date", "2026-11-27T10:00:00Z")
    with pytest.raises(IncompleteSignature, match="ISO8601"):
        wire.parse()


def test_header_and_query_auth_together() -> None:
    wire = ecr_request()
    with pytest.raises(IncompleteSignature, match="Only one auth mechanism"):
        parse_authorization("POST", "/", "X-Amz-Signature=00&X-Amz-Algorithm=AWS4-HMAC-SHA256", wire.headers)


def test_presigned_missing_parameters() -> None:
    query = "X-Amz-Algorithm=AWS4-HMAC-SHA256&X-Amz-Signature=00"
    with pytest.raises(IncompleteSignature, match="X-Amz-Credential"):
        parse_authorization("GET", "/", query, {"Host": "h"})


# --- canonicalisation --------------------------------------------------------------------------


@pytest.mark.parametrize(
    "raw, expected",
    [
        ("", "/"),
        ("/", "/"),
        ("/a%20b/c%2Fd", "/a%2520b/c%252Fd"),
        ("/v2/foo/../bar//baz/./q/", "/v2/bar/baz/q/"),
        ("/~user/%E2%9C%93/a+b=c;d", "/~user/%25E2%259C%2593/a%2Bb%3Dc%3Bd"),
    ],
)
def test_canonical_uri(raw: str, expected: str) -> None:
    assert canonical_uri(raw) == expected
    assert canonical_uri(raw) == SigV4Auth(creds(), "ecr", "us-east-1")._normalize_url_path(raw)


@pytest.mark.parametrize(
    "path", ["/a%20b/c%2Fd", "/v2/foo/../bar//baz/", "/~tilde/%E2%9C%93/%2B+", "/a/./b/", "/x%3Ay@z$!"]
)
def test_special_paths_verify_against_the_botocore_signer(path: str) -> None:
    sign(method="GET", url=ENDPOINT + path).verify()


def test_canonical_query_string_repeated_and_empty_values() -> None:
    assert canonical_query_string("b=2&a=&a=1&c&a=0") == "a=&a=0&a=1&b=2&c="
    assert canonical_query_string("x=a%2Fb&y=a/b&z=%7E&w=a+b&s=a%20b") == "s=a%20b&w=a%20b&x=a%2Fb&y=a%2Fb&z=~"
    assert canonical_query_string("&&k=v&") == "k=v"
    assert canonical_query_string("X-Amz-Signature=1&a=b", exclude=["X-Amz-Signature"]) == "a=b"


@pytest.mark.parametrize(
    "query",
    ["b=2&a=&a=1&c=&a=0", "prefix=a%2Fb&marker=%E2%9C%93&empty=", "y=a/b&w=a+b", "k=%7e&k=~"],
)
def test_queries_verify_against_the_botocore_signer(query: str) -> None:
    sign(method="GET", url=f"{ENDPOINT}/v2/_catalog?{query}").verify()


def test_params_verify_against_the_botocore_signer() -> None:
    sign(method="GET", url=ENDPOINT + "/", params={"a b": "c/d", "e": "", "f": "ü+"}).verify()


def test_iam_query_protocol_form_body() -> None:
    form = {"Action": "ListUsers", "Version": "2010-05-08", "PathPrefix": "/division_abc/"}
    wire = sign(
        url="https://iam.amazonaws.com/",
        body=form,
        headers={"Content-Type": "application/x-www-form-urlencoded; charset=utf-8"},
        service="iam",
    )
    assert wire.body.startswith(b"Action=ListUsers")
    assert wire.parse().service == "iam"
    wire.verify()
    with pytest.raises(SignatureDoesNotMatch):
        wire.verify(body=wire.body.replace(b"ListUsers", b"ListRoles"))


# --- the real clients, as the aws CLI and boto3 send them --------------------------------------


class _Captured(Exception):
    pass


def capture(service: str, operation: str, params: dict[str, Any], token: str | None = None) -> Wire:
    client = botocore.session.get_session().create_client(
        service,
        region_name="us-east-1",
        endpoint_url=ENDPOINT,
        aws_access_key_id=AKID,
        aws_secret_access_key=SECRET,
        aws_session_token=token,
        config=Config(retries={"max_attempts": 0}),
    )
    seen: list[Any] = []

    def before_send(request: Any, **_: Any) -> None:
        seen.append(request)
        raise _Captured

    client.meta.events.register("before-send", before_send)
    with pytest.raises(_Captured):
        getattr(client, operation)(**params)
    prepared = seen[0]
    parts = urlsplit(prepared.url)
    headers = [(k, v.decode() if isinstance(v, bytes) else v) for k, v in prepared.headers.items()]
    headers.append(("Host", parts.netloc))
    body = prepared.body or b""
    return Wire(prepared.method, parts.path, parts.query, headers, body.encode() if isinstance(body, str) else body)


@pytest.mark.parametrize(
    "service, operation, params",
    [
        ("ecr", "create_repository", {"repositoryName": "team/app", "imageTagMutability": "IMMUTABLE"}),
        ("ecr", "describe_repositories", {}),
        ("iam", "list_users", {"PathPrefix": "/a b/"}),
        ("iam", "create_access_key", {"UserName": "alice"}),
        ("sts", "get_caller_identity", {}),
    ],
)
def test_real_client_requests_verify(service: str, operation: str, params: dict[str, Any]) -> None:
    wire = capture(service, operation, params)
    req = wire.parse()
    assert (req.service, req.region, req.access_key_id) == (service, "us-east-1", AKID)
    if service == "ecr":
        assert json.loads(wire.body) == params
    else:
        assert wire.method == "POST" and wire.body.startswith(b"Action=")
    wire.verify()
    with pytest.raises(SignatureDoesNotMatch):
        wire.verify(secret="not-the-secret")


def test_real_client_with_session_token() -> None:
    wire = capture("sts", "get_caller_identity", {}, token="FwoGZXIvYXdzE+/token==")
    assert wire.parse().security_token == "FwoGZXIvYXdzE+/token=="
    wire.verify()


def _h(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


# --- the credential scope ------------------------------------------------------------------------


def test_scope_names_the_face_and_a_served_region() -> None:
    req = ecr_request().parse()
    sigv4.check_scope(req, "ecr", {"us-east-1"})
    with pytest.raises(sigv4.SignatureDoesNotMatch,
                       match=r"^Credential should be scoped to correct service: 'iam'\. $"):
        sigv4.check_scope(req, "iam", {"us-east-1"})
    with pytest.raises(sigv4.SignatureDoesNotMatch,
                       match=r"^Credential should be scoped to a valid region, not 'us-east-1'\. $"):
        sigv4.check_scope(req, "ecr", {"eu-west-1"})
    for region in ("*", "US-EAST-1", "us east 1", "us:east-1"):
        odd = dataclasses.replace(req, region=region)
        with pytest.raises(sigv4.SignatureDoesNotMatch, match=r"^Credential should be scoped to a valid region\. $"):
            sigv4.check_scope(odd, "ecr", {"us-east-1"})
    with pytest.raises(sigv4.SignatureDoesNotMatch, match="correct service: 'ecr'"):
        sigv4.check_scope(dataclasses.replace(req, service="ECR"), "ecr", {"us-east-1"})
