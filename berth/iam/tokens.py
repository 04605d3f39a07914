"""Registry auth tokens, as handed out by GetAuthorizationToken and presented by docker as a password.

A token is ``<key id>.<base64url(json claims)>.<base64url(HMAC-SHA256)>``: any node holding the
secrets verifies it without a database. The key id travels in clear so the MAC is checked before
the claims are parsed, and so secrets can rotate (verify takes every key still accepted).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from urllib.parse import parse_qsl, urlencode

DEFAULT_TTL = timedelta(hours=12)
DEFAULT_KEY_ID = "k1"
BASIC_USER = "AWS"
MIN_SECRET_BYTES = 16
MAX_TOKEN_CHARS = 4096  # bounds the work an unauthenticated caller can ask for

_KEY_ID = re.compile(r"[A-Za-z0-9_-]{1,64}")
_TOKEN = re.compile(r"[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+")
_DOMAIN = b"berth-registry-token-v1."  # keeps these MACs apart from any other use of the same secret
_DOWNLOAD_DOMAIN = b"berth-download-url-v1."
DOWNLOAD_SCHEME = "BerthDownloadUrl"  # what the /v2 edge hands the authenticator for a download URL
_DOWNLOAD_PARAMS = ("X-Berth-Key", "X-Berth-Principal", "X-Berth-Claims", "X-Berth-Expires", "X-Berth-Signature")


class TokenError(Exception):
    pass


class TokenInvalid(TokenError):
    """Malformed, altered, signed with an unknown key, or presented with the wrong user."""


class TokenExpired(TokenError):
    pass


@dataclass(frozen=True)
class TokenClaims:
    principal_arn: str
    account: str
    issued_at: datetime
    expires_at: datetime
    key_id: str
    extra: Mapping[str, str] = field(default_factory=dict)  # what else names the principal (Principal.claims)

    @property
    def user_id(self) -> str | None:
        return self.extra.get("uid")


def b64encode(data: bytes) -> str:
    """Unpadded base64url."""
    return _b64encode(data)


def b64decode_canonical(text: str) -> bytes:
    """Unpadded base64url in its one canonical spelling (TokenInvalid otherwise)."""
    return _b64decode(text)


def _b64encode(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _b64decode(text: str) -> bytes:
    """Unpadded base64url, in its one canonical spelling: the unused low bits of the last character
    must be zero, so no two strings decode to the same bytes (no token has two valid spellings)."""
    try:
        data = base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
    except (binascii.Error, ValueError) as exc:
        raise TokenInvalid("token is not base64url") from exc
    if _b64encode(data) != text:
        raise TokenInvalid("token is not in canonical base64url")
    return data


def _mac(secret: bytes, signed_part: str) -> bytes:
    return hmac.new(secret, _DOMAIN + signed_part.encode("ascii"), hashlib.sha256).digest()


def _epoch(moment: datetime) -> int:
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return int(moment.timestamp())


def issue(
    principal_arn: str,
    account: str,
    secret: bytes,
    now: datetime,
    ttl: timedelta = DEFAULT_TTL,
    *,
    key_id: str = DEFAULT_KEY_ID,
    extra: Mapping[str, str] | None = None,
) -> tuple[str, datetime]:
    """Return (token, expires_at); times are whole seconds, ``now`` naive means UTC."""
    if len(secret) < MIN_SECRET_BYTES:
        raise ValueError(f"token secret must be at least {MIN_SECRET_BYTES} bytes")
    if not _KEY_ID.fullmatch(key_id):
        raise ValueError(f"key id must match {_KEY_ID.pattern}")
    if ttl <= timedelta(0):
        raise ValueError("ttl must be positive")
    iat = _epoch(now)
    exp = iat + int(ttl.total_seconds())
    claims: dict[str, object] = {"sub": principal_arn, "acct": account, "iat": iat, "exp": exp}
    if extra:
        claims["x"] = dict(extra)
    payload = _b64encode(json.dumps(claims, separators=(",", ":"), sort_keys=True).encode("utf-8"))
    signed_part = f"{key_id}.{payload}"
    return f"{signed_part}.{_b64encode(_mac(secret, signed_part))}", datetime.fromtimestamp(exp, UTC)


def verify(token: str, secrets: Mapping[str, bytes], now: datetime) -> TokenClaims:
    """Check the MAC with ``secrets[key_id]``, then the expiry; raise TokenInvalid or TokenExpired."""
    if len(token) > MAX_TOKEN_CHARS:
        raise TokenInvalid("token is too long")
    if not _TOKEN.fullmatch(token):
        raise TokenInvalid("token is not <key id>.<claims>.<mac> in base64url")
    key_id, payload, mac = token.split(".")
    secret = secrets.get(key_id)
    if secret is None:
        raise TokenInvalid("token is signed with an unknown key")
    if not hmac.compare_digest(_b64decode(mac), _mac(secret, f"{key_id}.{payload}")):
        raise TokenInvalid("token signature does not match")
    try:
        claims = json.loads(_b64decode(payload))
        sub, acct, iat, exp = claims["sub"], claims["acct"], claims["iat"], claims["exp"]
    except (ValueError, TypeError, KeyError) as exc:
        raise TokenInvalid("token claims are malformed") from exc
    extra = claims.get("x", {})
    if not (isinstance(sub, str) and isinstance(acct, str) and type(iat) is int and type(exp) is int
            and _string_map(extra)):
        raise TokenInvalid("token claims are malformed")
    if _epoch(now) >= exp:
        raise TokenExpired("token has expired")
    return TokenClaims(sub, acct, datetime.fromtimestamp(iat, UTC), datetime.fromtimestamp(exp, UTC), key_id, extra)


def _string_map(value: object) -> bool:
    return isinstance(value, dict) and all(isinstance(k, str) and isinstance(v, str) for k, v in value.items())


# Download URLs (GetDownloadUrlForLayer): like a presigned S3 URL, a MAC over exactly one host, one
# path (/v2/<repository>/blobs/<digest>), the principal and an expiry. It is no registry token: it
# opens that GET only, and the principal's permissions still decide it.

def _download_mac(secret: bytes, key_id: str, host: str, path: str, arn: str, extra: str, expires: int) -> str:
    signed = "\n".join((key_id, host.lower(), path, arn, extra, str(expires))).encode("utf-8")
    return _b64encode(hmac.new(secret, _DOWNLOAD_DOMAIN + signed, hashlib.sha256).digest())


def sign_download(secret: bytes, key_id: str, host: str, path: str, principal_arn: str,
                  extra: Mapping[str, str], expires_at: datetime) -> str:
    """The query string that makes `https://<host><path>` a download URL until `expires_at`."""
    exp = _epoch(expires_at)
    packed = _b64encode(json.dumps(dict(extra), separators=(",", ":"), sort_keys=True).encode())
    mac = _download_mac(secret, key_id, host, path, principal_arn, packed, exp)
    return urlencode({"X-Berth-Key": key_id, "X-Berth-Principal": principal_arn, "X-Berth-Claims": packed,
                      "X-Berth-Expires": str(exp), "X-Berth-Signature": mac})


def download_credentials(host: str, path: str, query: str) -> str | None:
    """What the /v2 edge passes on for a GET carrying a download URL's parameters (None: it carries none)."""
    if "X-Berth-Signature=" not in query:
        return None
    return "\n".join((DOWNLOAD_SCHEME, host, path, query))


def verify_download(credentials: str, secrets: Mapping[str, bytes], now: datetime) -> TokenClaims:
    """The principal of a download URL presented on exactly the host and path it was signed for."""
    if len(credentials) > MAX_TOKEN_CHARS:
        raise TokenInvalid("download URL is too long")
    scheme, host, path, query = (credentials.split("\n") + ["", "", "", ""])[:4]
    if scheme != DOWNLOAD_SCHEME:
        raise TokenInvalid("not a download URL")
    fields: dict[str, str] = {}
    for name, value in parse_qsl(query, keep_blank_values=True):
        if name in _DOWNLOAD_PARAMS:
            if name in fields:
                raise TokenInvalid(f"duplicate {name}")
            fields[name] = value
    if set(fields) != set(_DOWNLOAD_PARAMS) or not fields["X-Berth-Expires"].isdigit():
        raise TokenInvalid("download URL parameters are incomplete")
    key_id, arn, packed = fields["X-Berth-Key"], fields["X-Berth-Principal"], fields["X-Berth-Claims"]
    secret = secrets.get(key_id)
    if secret is None:
        raise TokenInvalid("download URL is signed with an unknown key")
    exp = int(fields["X-Berth-Expires"])
    expected = _download_mac(secret, key_id, host, path, arn, packed, exp)
    if not hmac.compare_digest(expected.encode(), fields["X-Berth-Signature"].encode()):
        raise TokenInvalid("download URL signature does not match")
    if _epoch(now) >= exp:
        raise TokenExpired("download URL has expired")
    account = arn.split(":")[4] if arn.count(":") >= 5 else ""
    moment = datetime.fromtimestamp(exp, UTC)
    try:
        extra = json.loads(_b64decode(packed))
    except ValueError as exc:
        raise TokenInvalid("download URL claims are malformed") from exc
    if not _string_map(extra):
        raise TokenInvalid("download URL claims are malformed")
    return TokenClaims(arn, account, moment, moment, key_id, extra)


def basic_auth_token(token: str) -> str:
    """The authorizationToken field of GetAuthorizationToken: base64("AWS:" + token)."""
    return base64.b64encode(f"{BASIC_USER}:{token}".encode()).decode("ascii")


def parse_basic_auth(header_value: str) -> str:
    """The token inside ``Authorization: Basic base64(AWS:<token>)``; TokenInvalid for anything else."""
    scheme, _, encoded = header_value.strip().partition(" ")
    if scheme.lower() != "basic" or not encoded.strip():
        raise TokenInvalid("expected HTTP Basic credentials")
    encoded = encoded.strip()
    try:
        raw = base64.b64decode(encoded, validate=True)
        decoded = raw.decode("utf-8")
    except (binascii.Error, ValueError) as exc:
        raise TokenInvalid("Basic credentials are not base64") from exc
    if base64.b64encode(raw).decode("ascii") != encoded:  # one spelling only, as for the token inside
        raise TokenInvalid("Basic credentials are not in canonical base64")
    user, sep, token = decoded.partition(":")
    if not sep or user != BASIC_USER:
        raise TokenInvalid(f"the user name must be {BASIC_USER}")
    if not token:
        raise TokenInvalid("the password is empty")
    return token
