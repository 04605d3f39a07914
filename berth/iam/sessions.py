"""Temporary credentials (STS AssumeRole, GetSessionToken): stateless, like registry tokens.

The session token is ``<key id>.<base64url(json claims)>.<base64url(HMAC)>`` over the claims (the
ASIA access key id, the principal, the expiry, a session policy); the secret access key is derived
from the token with the same signing secret, so any node verifies a request signed with temporary
credentials without a database, and nothing needs to be stored or purged.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import secrets
import string
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from berth.iam.tokens import TokenExpired, TokenInvalid, b64decode_canonical, b64encode

_DOMAIN = b"berth-session-token-v1."
_SECRET_DOMAIN = b"berth-session-secret-v1."
MAX_TOKEN_CHARS = 8192


@dataclass(frozen=True)
class SessionClaims:
    access_key_id: str
    account: str
    arn: str  # the session's ARN: assumed-role/<role>/<session>, or the user's own for GetSessionToken
    expires_at: datetime
    user: str | None = None  # GetSessionToken: the user
    user_id: str | None = None
    role: str | None = None  # AssumeRole: the role's name, path and unique id, and the session name
    role_path: str = "/"
    role_id: str | None = None
    session: str | None = None
    policy: str | None = None  # a session policy narrowing the role
    tags: tuple[tuple[str, str], ...] = ()  # session tags (aws:PrincipalTag)

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"akid": self.access_key_id, "acct": self.account, "arn": self.arn,
                               "exp": int(self.expires_at.timestamp())}
        for key, value in (("user", self.user), ("uid", self.user_id), ("role", self.role),
                           ("rpath", self.role_path), ("rid", self.role_id), ("sess", self.session),
                           ("pol", self.policy)):
            if value is not None:
                out[key] = value
        if self.tags:
            out["tags"] = dict(self.tags)
        return out


def _mac(secret: bytes, signed: str) -> bytes:
    return hmac.new(secret, _DOMAIN + signed.encode("ascii"), hashlib.sha256).digest()


def new_access_key_id() -> str:
    return "ASIA" + "".join(secrets.choice(string.ascii_uppercase + "234567") for _ in range(16))


def secret_for(token: str, secret: bytes) -> str:
    """The secret access key that goes with a session token."""
    raw = hmac.new(secret, _SECRET_DOMAIN + token.encode("ascii"), hashlib.sha256).digest()
    return base64.b64encode(raw).decode("ascii")[:40]


def issue(claims: SessionClaims, secret: bytes, key_id: str) -> tuple[str, str]:
    """(session token, secret access key)."""
    payload = b64encode(json.dumps(claims.to_json(), separators=(",", ":"), sort_keys=True).encode())
    signed = f"{key_id}.{payload}"
    token = f"{signed}.{b64encode(_mac(secret, signed))}"
    return token, secret_for(token, secret)


def verify(token: str, keys: dict[str, bytes], now: datetime) -> SessionClaims:
    if len(token) > MAX_TOKEN_CHARS or token.count(".") != 2:
        raise TokenInvalid("The security token included in the request is invalid.")
    key_id, payload, mac = token.split(".")
    secret = keys.get(key_id)
    if secret is None or not hmac.compare_digest(b64decode_canonical(mac), _mac(secret, f"{key_id}.{payload}")):
        raise TokenInvalid("The security token included in the request is invalid.")
    try:
        raw = json.loads(b64decode_canonical(payload))
        claims = SessionClaims(raw["akid"], raw["acct"], raw["arn"], datetime.fromtimestamp(int(raw["exp"]), UTC),
                               raw.get("user"), raw.get("uid"), raw.get("role"), raw.get("rpath", "/"),
                               raw.get("rid"), raw.get("sess"), raw.get("pol"),
                               tuple(sorted(dict(raw.get("tags", {})).items())))
    except (ValueError, TypeError, KeyError) as exc:
        raise TokenInvalid("The security token included in the request is invalid.") from exc
    if now >= claims.expires_at:
        raise TokenExpired("The security token included in the request is expired")
    return claims
