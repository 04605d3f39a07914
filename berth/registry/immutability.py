"""Tag mutability over the stored encoding (the rule itself is `model.Mutability.is_immutable`)."""

from __future__ import annotations

from berth.registry.model import Mutability, decode_filters


def tag_is_immutable(mutability: str, filters_json: str, tag: str) -> bool:
    return Mutability(mutability, decode_filters(filters_json)).is_immutable(tag)
