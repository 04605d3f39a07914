"""nextToken for the ECR listings: an opaque keyset position, bound to the operation that issued it."""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Sequence

from berth.api.ecr.app import EcrCall
from berth.api.ecr.errors import EcrError


def encode_token(op: str, key: Sequence[str]) -> str:
    raw = json.dumps({"op": op, "after": list(key)}, separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_token(c: EcrCall, size: int) -> list[str] | None:
    """The keyset position a nextToken carries (None on a first page); InvalidParameterException if forged."""
    token = c.params.get("nextToken")
    if token is None:
        return None
    try:
        doc = json.loads(base64.urlsafe_b64decode(token + "=" * (-len(token) % 4)))
        after = doc["after"]
        valid = (doc["op"] == c.op and isinstance(after, list) and len(after) == size
                 and all(isinstance(x, str) and "\x00" not in x for x in after))  # PostgreSQL text has no NUL
    except (ValueError, TypeError, KeyError, binascii.Error):
        valid = False
    if not valid:
        raise EcrError("InvalidParameterException",
                       "Invalid parameter at 'nextToken' failed to satisfy constraint: 'Invalid pagination token'")
    return list(after)
