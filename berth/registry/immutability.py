"""Tag mutability over the stored encoding (the rule itself is `model.Mutability.is_immutable`)."""

from __future__ import annotations

import json

from berth.registry.model import Mutability, TagFilter


def tag_is_immutable(mutability: str, filters_json: str, tag: str) -> bool:
    filters = tuple(TagFilter(f.get("filterType", "WILDCARD"), f.get("filter", ""))
                    for f in json.loads(filters_json or "[]"))
    return Mutability(mutability, filters).is_immutable(tag)
