"""Checks a JSON text before it is parsed: nesting depth and lone surrogates.

Python's json parser recurses once per `[` or `{` and raises RecursionError (a 500) on a few thousand;
no document Berth reads (manifests, ECR bodies, policies) nests deeper than a handful of levels.
Pure and dependency-free: every layer that parses JSON from the wire may use it.
"""

from __future__ import annotations

import re
from typing import Any

MAX_DEPTH = 64  # a manifest or a policy nests 4-6 levels; json recurses in C up to ~1000
_STRING = re.compile(rb'"[^"\\]*(?:\\.[^"\\]*)*"', re.S)
_NOT_BRACKETS = bytes(b for b in range(256) if b not in b"[]{}")
_SURROGATE_ESCAPE = re.compile(rb"\\u[dD][89abcdefABCDEF]")


class TooDeep(ValueError):
    pass


def check_depth(text: bytes | str, limit: int = MAX_DEPTH) -> None:
    """Raise TooDeep if `text` nests arrays/objects deeper than about `limit` (between `limit` and twice
    that: a pass may strip a `{[]}` whole), or its brackets do not pair up.

    In C, one pass per level: drop the strings, keep the brackets, strip the innermost pairs."""
    data = text.encode("utf-8", "surrogatepass") if isinstance(text, str) else bytes(text)
    opens = data.count(b"[") + data.count(b"{")
    if opens <= limit:
        return
    brackets = _STRING.sub(b"", data).translate(None, _NOT_BRACKETS)
    for _ in range(limit):
        if not brackets:
            return
        shorter = brackets.replace(b"[]", b"").replace(b"{}", b"")
        if len(shorter) == len(brackets):  # unpaired: not JSON anyway
            break
        brackets = shorter
    if brackets:
        raise TooDeep(f"JSON nested deeper than {limit} levels (or unbalanced brackets)")


def has_lone_surrogate(raw: bytes, value: Any) -> bool:
    """True if the decoded `value` holds a lone UTF-16 surrogate (`\\ud800` unpaired), which no UTF-8
    text can carry. `raw` is the JSON text it came from: without a `\\uD8..`-`\\uDF..` escape, no walk."""
    if _SURROGATE_ESCAPE.search(raw) is None:
        return False
    return _walk_has_surrogate(value)


def _walk_has_surrogate(value: Any) -> bool:
    if isinstance(value, str):
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:
            return True
        return False
    if isinstance(value, dict):
        return any(_walk_has_surrogate(k) or _walk_has_surrogate(v) for k, v in value.items())
    if isinstance(value, list):
        return any(_walk_has_surrogate(v) for v in value)
    return False
