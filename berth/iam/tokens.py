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
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

DEFAULT_TTL = timedelta(hours=12)
DEFAULT_KEY_ID = "k1"
BASIC_USER = "AWS"
MIN_SECRET_BYTES = 16
MAX_TOKEN_CHARS = 4096  # bounds the work an unauthenticated caller can ask for

_KEY_ID = re.compile(r"[A-Za-z0-9_-]{1,64}")
_TOKEN = re.compile(r"[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+")
_DOMAIN = b"berth-registry-token-v1."  # keeps these MACs apart from any other use of the same secret


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


def _b64encode(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _b64decode(text: str) -> bytes:
    try:
        return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
    except (binascii.Error, ValueError) as exc:
        raise TokenInvalid("token is not base64url") from exc


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
    claims = {"sub": principal_arn, "acct": account, "iat": iat, "exp": exp}
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
    if not (isinstance(sub, str) and isinstance(acct, str) and type(iat) is int and type(exp) is int):
        raise TokenInvalid("token claims are malformed")
    if _epoch(now) >= exp:
        raise TokenExpired("token has expired")
    return TokenClaims(sub, acct, datetime.fromtimestamp(iat, UTC), datetime.fromtimestamp(exp, UTC), key_id)


def basic_auth_token(token: str) -> str:
    """The authorizationToken field of GetAuthorizationToken: base64("AWS:" + token)."""
    return base64.b64encode(f"{BASIC_USER}:{token}".encode()).decode("ascii")


def parse_basic_auth(header_value: str) -> str:
    """The token inside ``Authorization: Basic base64(AWS:<token>)``; TokenInvalid for anything else."""
    scheme, _, encoded = header_value.strip().partition(" ")
    if scheme.lower() != "basic" or not encoded.strip():
        raise TokenInvalid("expected HTTP Basic credentials")
    try:
        decoded = base64.b64decode(encoded.strip(), validate=True).decode("utf-8")
    except (binascii.Error, ValueError) as exc:
        raise TokenInvalid("Basic credentials are not base64") from exc
    user, sep, token = decoded.partition(":")
    if not sep or user != BASIC_USER:
        raise TokenInvalid(f"the user name must be {BASIC_USER}")
    if not token:
        raise TokenInvalid("the password is empty")
    return token
