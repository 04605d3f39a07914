"""Tag mutability: which tags of a repository may not move (ECR's four modes and exclusion filters)."""

from __future__ import annotations

import fnmatch
import json


def _matches(tag: str, filters: list[dict[str, str]]) -> bool:
    return any(fnmatch.fnmatchcase(tag, f.get("filter", "")) for f in filters)


def tag_is_immutable(mutability: str, filters_json: str, tag: str) -> bool:
    if mutability == "MUTABLE":
        return False
    if mutability == "IMMUTABLE":
        return True
    filters = json.loads(filters_json or "[]")
    if mutability == "IMMUTABLE_WITH_EXCLUSION":
        return not _matches(tag, filters)
    if mutability == "MUTABLE_WITH_EXCLUSION":
        return _matches(tag, filters)
    raise ValueError(f"unknown tag mutability {mutability!r}")
