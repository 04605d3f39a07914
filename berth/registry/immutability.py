"""Tag mutability: which tags of a repository may not move (ECR's four modes and exclusion filters)."""

from __future__ import annotations

import fnmatch
import json
from collections.abc import Mapping, Sequence


def _matches(tag: str, filters: Sequence[Mapping[str, str]]) -> bool:
    return any(fnmatch.fnmatchcase(tag, f.get("filter", "")) for f in filters)


def tag_is_immutable(mutability: str, filters: str | Sequence[Mapping[str, str]], tag: str) -> bool:
    """`filters`: the exclusion filters as the store decodes them (RepoRow.exclusion_filters), or their JSON."""
    if mutability == "MUTABLE":
        return False
    if mutability == "IMMUTABLE":
        return True
    decoded: Sequence[Mapping[str, str]] = json.loads(filters or "[]") if isinstance(filters, str) else filters
    if mutability == "IMMUTABLE_WITH_EXCLUSION":
        return not _matches(tag, decoded)
    if mutability == "MUTABLE_WITH_EXCLUSION":
        return _matches(tag, decoded)
    raise ValueError(f"unknown tag mutability {mutability!r}")
