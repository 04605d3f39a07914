"""Verify AWS Signature Version 4 on an incoming request (header and presigned-query forms).

Pure: the caller passes the request parts, the secret for the access key id, the sha256 of the
body and the clock. The canonical form is the one botocore's ``SigV4Auth`` produces (the tests use
botocore's signer as the oracle): the path is the raw, still percent-encoded path as received, and
it is encoded once more, as AWS does for every service but S3.
"""

from __future__ import annotations

import hashlib
import hmac
import re
from collections.abc import Collection, Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from email.utils import parsedate_to_datetime
from urllib.parse import quote, unquote, unquote_plus

from botocore.utils import normalize_url_path

ALGORITHM = "AWS4-HMAC-SHA256"
TERMINATOR = "aws4_request"
TIMESTAMP_FORMAT = "%Y%m%dT%H%M%SZ"
MAX_SKEW = timedelta(minutes=15)
MAX_PRESIGN_EXPIRES = 7 * 24 * 3600
UNSIGNED_PAYLOAD = "UNSIGNED-PAYLOAD"
EMPTY_SHA256 = hashlib.sha256(b"").hexdigest()

_QUERY_AUTH_PARAMS = ("X-Amz-Algorithm", "X-Amz-Credential", "X-Amz-Signature")
_MISMATCH = (
    "The request signature we calculated does not match the signature you provided. "
    "Check your AWS Secret Access Key and signing method. Consult the service documentation for details."
)

HeadersLike = Mapping[str, str] | Iterable[tuple[str | bytes, str | bytes]]


class SigV4Error(Exception):
    """Base of the authentication failures; ``message`` is the text AWS would send."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class MissingAuthentication(SigV4Error):
    """No Authorization header and no presigned query parameters."""


class IncompleteSignature(SigV4Error):
    """Authentication present but malformed or unsupported."""


class SignatureDoesNotMatch(SigV4Error):
    """Well-formed, but the signature (or the declared payload hash) is wrong."""


class ExpiredToken(SigV4Error):
    """Temporary credentials past their expiry (AWS: ExpiredToken / ExpiredTokenException)."""


class RequestExpired(SigV4Error):
    """Outside the ±15 minute window, or past X-Amz-Expires for a presigned request."""


@dataclass(frozen=True)
class SigV4Request:
    method: str
    path: str  # raw path as received (percent-encoded), no query
    query_string: str  # raw query as received, without '?'
    headers: tuple[tuple[str, str], ...]  # lower-cased names, in arrival order
    access_key_id: str
    amz_date: str  # the timestamp that goes into the string to sign, e.g. 20261127T100000Z
    date: datetime
    scope_date: str  # the YYYYMMDD of the credential scope
    region: str
    service: str
    signed_headers: tuple[str, ...]
    signature: str
    presigned: bool
    expires: int | None
    security_token: str | None
    content_sha256: str | None

    @property
    def credential_scope(self) -> str:
        return f"{self.scope_date}/{self.region}/{self.service}/{TERMINATOR}"


def _normalise_headers(headers: HeadersLike) -> tuple[tuple[str, str], ...]:
    items: Iterable[tuple[str | bytes, str | bytes]]
    items = headers.items() if isinstance(headers, Mapping) else headers
    out = []
    for name, value in items:
        # ASGI hands over raw bytes; HTTP header bytes are latin-1.
        n = name.decode("latin-1") if isinstance(name, bytes) else name
        v = value.decode("latin-1") if isinstance(value, bytes) else value
        out.append((n.strip().lower(), v))
    return tuple(out)


def _header(headers: tuple[tuple[str, str], ...], name: str) -> str | None:
    for n, v in headers:
        if n == name:
            return v
    return None


def _split_query(raw_query: str) -> list[tuple[str, str]]:
    pairs = []
    for part in raw_query.split("&"):
        if part:
            key, _, value = part.partition("=")
            pairs.append((key, value))
    return pairs


def _parse_timestamp(value: str) -> datetime:
    return datetime.strptime(value, TIMESTAMP_FORMAT).replace(tzinfo=UTC)


def _parse_credential(credential: str) -> tuple[str, str, str, str]:
    parts = credential.split("/")
    if len(parts) != 5 or not all(parts) or parts[4] != TERMINATOR:
        raise IncompleteSignature(
            f"Credential should be scoped to a valid region, service and terminator ('{TERMINATOR}'). "
            f"Credential={credential}"
        )
    akid, day, region, service, _ = parts
    if len(day) != 8 or not day.isdigit():
        raise IncompleteSignature(f"Credential date is not in YYYYMMDD form. Credential={credential}")
    return akid, day, region, service


def _parse_auth_header(value: str) -> dict[str, str]:
    algorithm, _, rest = value.strip().partition(" ")
    if algorithm != ALGORITHM:
        raise IncompleteSignature(f"Unsupported AWS 'algorithm': '{algorithm}'")
    fields: dict[str, str] = {}
    for component in rest.split(","):
        component = component.strip()
        if not component:
            continue
        key, sep, val = component.partition("=")
        if not sep or key in fields:
            raise IncompleteSignature(f"Authorization header is malformed: '{component}'")
        fields[key] = val
    missing = [k for k in ("Credential", "Signature", "SignedHeaders") if not fields.get(k)]
    if missing:
        raise IncompleteSignature(
            " ".join(f"Authorization header requires '{k}' parameter." for k in missing) + f" Authorization={value}"
        )
    return fields


def parse_authorization(method: str, path: str, query_string: str, headers: HeadersLike) -> SigV4Request:
    """Read the SigV4 parameters of a request, from the Authorization header or the query string.

    ``path`` is the raw request path (ASGI ``raw_path``); ``headers`` a mapping or (name, value)
    pairs, str or bytes, names in any case. Raises MissingAuthentication or IncompleteSignature.
    """
    path = path.split("?", 1)[0]
    query_string = query_string.lstrip("?")
    hdrs = _normalise_headers(headers)
    auth = _header(hdrs, "authorization")
    query: dict[str, str] = {}
    for key, value in _split_query(query_string):
        k = unquote(key)
        if k.startswith("X-Amz-"):
            if k in query:
                raise IncompleteSignature(f"Duplicate query parameter '{k}'")
            query[k] = unquote(value)
    presigned = any(p in query for p in _QUERY_AUTH_PARAMS)
    if auth is None and not presigned:
        raise MissingAuthentication("Missing Authentication Token")
    if auth is not None and presigned:
        raise IncompleteSignature(
            "Only one auth mechanism allowed; only the X-Amz-Algorithm query parameter "
            "or the Authorization header should be specified"
        )

    expires: int | None = None
    if auth is not None:
        fields = _parse_auth_header(auth)
        credential, signed, signature = fields["Credential"], fields["SignedHeaders"], fields["Signature"]
        amz_date = _header(hdrs, "x-amz-date")
        date_header = "x-amz-date"
        if amz_date is None:
            http_date = _header(hdrs, "date")
            if http_date is None:
                raise IncompleteSignature(
                    "Authorization header requires existence of either a 'X-Amz-Date' or a 'Date' header."
                )
            date_header = "date"
            try:
                parsed = parsedate_to_datetime(http_date)
            except (TypeError, ValueError) as exc:
                raise IncompleteSignature(f"Date header is not a valid HTTP date: '{http_date}'") from exc
            # A '-0000' zone parses as naive; HTTP dates are GMT.
            parsed = parsed.replace(tzinfo=UTC) if parsed.tzinfo is None else parsed.astimezone(UTC)
            amz_date = parsed.strftime(TIMESTAMP_FORMAT)
        security_token = _header(hdrs, "x-amz-security-token")
    else:
        missing = [
            p
            for p in ("X-Amz-Algorithm", "X-Amz-Credential", "X-Amz-Date", "X-Amz-SignedHeaders", "X-Amz-Signature")
            if not query.get(p)
        ]
        if missing:
            raise IncompleteSignature(
                " ".join(f"AWS query-string parameters must include '{p}'." for p in missing)
                + " Re-examine the query-string parameters."
            )
        if query["X-Amz-Algorithm"] != ALGORITHM:
            raise IncompleteSignature(f"Unsupported AWS 'algorithm': '{query['X-Amz-Algorithm']}'")
        credential, signed, signature = (
            query["X-Amz-Credential"],
            query["X-Amz-SignedHeaders"],
            query["X-Amz-Signature"],
        )
        amz_date = query["X-Amz-Date"]
        date_header = ""
        if "X-Amz-Expires" in query:
            raw = query["X-Amz-Expires"]
            if not raw.isdigit() or not 1 <= int(raw) <= MAX_PRESIGN_EXPIRES:
                raise IncompleteSignature(
                    f"X-Amz-Expires must be a number of seconds from 1 to {MAX_PRESIGN_EXPIRES}: '{raw}'"
                )
            expires = int(raw)
        security_token = query.get("X-Amz-Security-Token")

    akid, scope_date, region, service = _parse_credential(credential)
    try:
        date = _parse_timestamp(amz_date)
    except ValueError as exc:
        raise IncompleteSignature(f"X-Amz-Date must be in the ISO8601 basic format: '{amz_date}'") from exc
    signed_headers = tuple(sorted(h.strip().lower() for h in signed.split(";") if h.strip()))
    if "host" not in signed_headers:
        raise IncompleteSignature("'Host' must be a signed header.")
    if date_header and date_header not in signed_headers:
        raise IncompleteSignature(f"'{date_header}' must be a signed header.")
    return SigV4Request(
        method=method.upper(),
        path=path,
        query_string=query_string,
        headers=hdrs,
        access_key_id=akid,
        amz_date=amz_date,
        date=date,
        scope_date=scope_date,
        region=region,
        service=service,
        signed_headers=signed_headers,
        signature=signature,
        presigned=auth is None,
        expires=expires,
        security_token=security_token,
        content_sha256=_header(hdrs, "x-amz-content-sha256"),
    )


_REGION = re.compile(r"[a-z]{2}(?:-[a-z]+)+-\d{1,2}")


def check_scope(req: SigV4Request, service: str, regions: Collection[str]) -> None:
    """The credential scope must name the service of the face that answers and a region this
    deployment serves; AWS answers either mistake as a signature error, in these words."""
    if req.service != service:
        raise SignatureDoesNotMatch(f"Credential should be scoped to correct service: '{service}'. ")
    if req.region not in regions:
        if _REGION.fullmatch(req.region):
            raise SignatureDoesNotMatch(f"Credential should be scoped to a valid region, not '{req.region}'. ")
        raise SignatureDoesNotMatch("Credential should be scoped to a valid region. ")


def canonical_uri(raw_path: str) -> str:
    """Dot segments and repeated slashes removed, then URI-encoded again (botocore's rule)."""
    return quote(normalize_url_path(raw_path), safe="/~")


def canonical_query_string(raw_query: str, exclude: Iterable[str] = ()) -> str:
    """Each key and value decoded then strictly re-encoded (RFC 3986 unreserved), sorted by key, value.

    '+' decodes to a space: that is how form encoding (and botocore's ``params``) puts a space on the wire.
    """
    skip = set(exclude)
    pairs = []
    for key, value in _split_query(raw_query):
        k = unquote_plus(key)
        if k not in skip:
            pairs.append((quote(k, safe="-_.~"), quote(unquote_plus(value), safe="-_.~")))
    return "&".join(f"{k}={v}" for k, v in sorted(pairs))


def _verbatim_query_string(raw_query: str, exclude: Iterable[str]) -> str:
    # botocore signs a query already in the URL verbatim, only sorted; accept that form too.
    skip = set(exclude)
    pairs = [(k, v) for k, v in (p.partition("=")[::2] for p in raw_query.split("&")) if unquote(k) not in skip]
    return "&".join(f"{k}={v}" for k, v in sorted(pairs)) if raw_query else ""


def canonical_headers(req: SigV4Request) -> str:
    lines = []
    for name in req.signed_headers:
        # Trimall: outer whitespace removed, inner runs collapsed; repeated headers joined by ','.
        values = [" ".join(v.split()) for n, v in req.headers if n == name]
        lines.append(f"{name}:{','.join(values)}\n")
    return "".join(lines)


def canonical_request(req: SigV4Request, canonical_query: str, payload_hash: str) -> str:
    return "\n".join(
        [
            req.method,
            canonical_uri(req.path),
            canonical_query,
            canonical_headers(req),
            ";".join(req.signed_headers),
            payload_hash,
        ]
    )


def string_to_sign(req: SigV4Request, canonical: str) -> str:
    digest = hashlib.sha256(canonical.encode("utf-8")).hexdigest()
    return "\n".join([ALGORITHM, req.amz_date, req.credential_scope, digest])


def signing_key(secret_key: str, scope_date: str, region: str, service: str) -> bytes:
    key = ("AWS4" + secret_key).encode("utf-8")
    for part in (scope_date, region, service, TERMINATOR):
        key = hmac.new(key, part.encode("utf-8"), hashlib.sha256).digest()
    return key


def _check_time(req: SigV4Request, now: datetime) -> None:
    stamp = "%Y%m%dT%H%M%SZ"
    if req.date - now > MAX_SKEW:
        raise RequestExpired(
            f"Signature not yet current: {req.amz_date} is still later than "
            f"{(now + MAX_SKEW).strftime(stamp)} ({now.strftime(stamp)} + 15 min.)"
        )
    if req.presigned and req.expires is not None:
        if now > req.date + timedelta(seconds=req.expires):
            raise RequestExpired(
                f"Request has expired: signed at {req.amz_date} for {req.expires} seconds, now {now.strftime(stamp)}"
            )
    elif now - req.date > MAX_SKEW:
        raise RequestExpired(
            f"Signature expired: {req.amz_date} is now earlier than "
            f"{(now - MAX_SKEW).strftime(stamp)} ({now.strftime(stamp)} - 15 min.)"
        )


def _payload_candidates(req: SigV4Request, body_sha256_hex: str) -> list[str]:
    declared = req.content_sha256
    if declared is None:
        # A presigned URL may be signed with a body hash (botocore SigV4QueryAuth) or unsigned (S3 style).
        return [body_sha256_hex, UNSIGNED_PAYLOAD] if req.presigned else [body_sha256_hex]
    if declared == UNSIGNED_PAYLOAD:
        return [declared]
    if declared.startswith("STREAMING-"):
        raise IncompleteSignature(f"x-amz-content-sha256 '{declared}' (chunked signing) is not supported")
    if declared.lower() != body_sha256_hex.lower():
        raise SignatureDoesNotMatch("The provided 'x-amz-content-sha256' header does not match what was computed.")
    return [declared]


def verify(req: SigV4Request, secret_key: str, body_sha256_hex: str, now: datetime) -> None:
    """Check the signature of ``req`` with ``secret_key``; ``now`` is an aware datetime (naive = UTC).

    ``body_sha256_hex`` is the sha256 of the body actually received (EMPTY_SHA256 for none).
    Raises RequestExpired, SignatureDoesNotMatch or IncompleteSignature; returns None if valid.
    """
    if now.tzinfo is None:
        now = now.replace(tzinfo=UTC)
    _check_time(req, now)
    if req.scope_date != req.amz_date[:8]:
        raise SignatureDoesNotMatch(
            "Date in Credential scope does not match YYYYMMDD from ISO-8601 version of date from HTTP: "
            f"'{req.scope_date}' != '{req.amz_date[:8]}', from '{req.amz_date}'."
        )
    exclude = ("X-Amz-Signature",) if req.presigned else ()
    queries = dict.fromkeys(
        [canonical_query_string(req.query_string, exclude), _verbatim_query_string(req.query_string, exclude)]
    )
    key = signing_key(secret_key, req.scope_date, req.region, req.service)
    given = req.signature.encode("utf-8")
    for payload_hash in _payload_candidates(req, body_sha256_hex):
        for query in queries:
            sts = string_to_sign(req, canonical_request(req, query, payload_hash))
            expected = hmac.new(key, sts.encode("utf-8"), hashlib.sha256).hexdigest().encode("ascii")
            if hmac.compare_digest(expected, given):
                return
    raise SignatureDoesNotMatch(_MISMATCH)
