"""Signed upload ids: a POST mints one without writing anything, any node can verify it.

An id is base64url(random 8 bytes | repository id 8 | minted at 4 (Unix seconds) | MAC 16),
48 characters. The MAC (HMAC-SHA256 under a signing key every node shares, domain-separated from
other uses of it) makes an id of another repository, a made-up id or an altered one unknown; the
mint time bounds its life. Whether the session has ended is the database's to say (a tombstone).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import secrets
import struct
from collections.abc import Mapping
from dataclasses import dataclass

_DOMAIN = b"berth-upload-id-v1."
_BODY = struct.Struct(">8sQI")  # random, repository id, minted at
_MAC_BYTES = 16
LENGTH = 48  # characters


@dataclass(frozen=True, slots=True)
class SignedId:
    repo_id: int
    minted_at: float


def _mac(key: bytes, body: bytes) -> bytes:
    return hmac.new(key, _DOMAIN + body, hashlib.sha256).digest()[:_MAC_BYTES]


def mint(key: bytes, repo_id: int, now: float) -> str:
    body = _BODY.pack(secrets.token_bytes(8), repo_id, int(now))
    return base64.urlsafe_b64encode(body + _mac(key, body)).decode("ascii")


def parse(upload_id: str, keys: Mapping[str, bytes]) -> SignedId | None:
    """What a well-signed id says, or None (not one of ours; ECR's UUIDs are not signed)."""
    if len(upload_id) != LENGTH:
        return None
    try:
        raw = base64.urlsafe_b64decode(upload_id.encode("ascii"))
    except (binascii.Error, UnicodeEncodeError, ValueError):
        return None
    if len(raw) != _BODY.size + _MAC_BYTES or base64.urlsafe_b64encode(raw).decode("ascii") != upload_id:
        return None  # one spelling per id: the decoder would also take "+", "/" and stray characters
    body, mac = raw[:_BODY.size], raw[_BODY.size:]
    if not any(hmac.compare_digest(mac, _mac(key, body)) for key in keys.values()):
        return None
    _, repo_id, minted_at = _BODY.unpack(body)
    return SignedId(repo_id, float(minted_at))
