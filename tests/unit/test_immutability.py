"""Tag mutability: ECR's four modes and wildcard exclusion filters (berth.registry.model.Mutability)."""

from __future__ import annotations

import json

import pytest

from berth.registry.model import Mutability, TagFilter

TAGS = ["latest", "v1", "v1.2.3", "dev-123", "release-2024", "Latest", "_x"]


def tag_is_immutable(mode: str, filters_json: str, tag: str) -> bool:
    """The rule as the services apply it, to a repository's stored mode and filters."""
    stored = json.loads(filters_json or "[]")
    decoded = tuple(TagFilter(f.get("filterType", "WILDCARD"), f.get("filter", "")) for f in stored)
    return Mutability(mode, decoded).is_immutable(tag)


def filters(*patterns: str) -> str:
    return json.dumps([{"filter": p, "filterType": "WILDCARD"} for p in patterns])


@pytest.mark.parametrize("tag", TAGS)
def test_mutable(tag: str) -> None:
    assert tag_is_immutable("MUTABLE", "[]", tag) is False
    assert tag_is_immutable("MUTABLE", filters("*"), tag) is False  # filters only matter with exclusions


@pytest.mark.parametrize("tag", TAGS)
def test_immutable(tag: str) -> None:
    assert tag_is_immutable("IMMUTABLE", "[]", tag) is True
    assert tag_is_immutable("IMMUTABLE", filters("*"), tag) is True


@pytest.mark.parametrize("tag, immutable", [
    ("latest", False),  # excluded: may move
    ("dev-123", False),
    ("dev-", False),
    ("v1", True),
    ("v1.2.3", True),
    ("latest2", True),  # a filter matches the whole tag
    ("my-latest", True),
    ("Latest", True),  # case matters
    ("DEV-1", True),
])
def test_immutable_with_exclusion(tag: str, immutable: bool) -> None:
    assert tag_is_immutable("IMMUTABLE_WITH_EXCLUSION", filters("latest", "dev-*"), tag) is immutable


@pytest.mark.parametrize("tag, immutable", [
    ("release-2024", True),  # matched: may not move
    ("release-", True),
    ("v1.2.3", True),
    ("v1", False),  # "v*.*" needs a dot
    ("latest", False),
    ("prerelease-1", False),
    ("Release-1", False),
])
def test_mutable_with_exclusion(tag: str, immutable: bool) -> None:
    assert tag_is_immutable("MUTABLE_WITH_EXCLUSION", filters("release-*", "v*.*"), tag) is immutable


@pytest.mark.parametrize("pattern, tag, matches", [
    ("*", "anything", True),
    ("*", "_", True),
    ("v*", "v", True),
    ("v*", "av", False),
    ("*-rc*", "1.0-rc1", True),
    ("*-rc*", "1.0-rc", True),
    ("*-rc*", "1.0rc1", False),
    ("*.*.*", "1.2.3", True),
    ("*.*.*", "1.2", False),
    ("a*b*c", "abc", True),
    ("a*b*c", "aXbYc", True),
    ("a*b*c", "acb", False),
    ("exact", "exact", True),
    ("exact", "exactly", False),
])
def test_wildcards(pattern: str, tag: str, matches: bool) -> None:
    assert tag_is_immutable("MUTABLE_WITH_EXCLUSION", filters(pattern), tag) is matches
    assert tag_is_immutable("IMMUTABLE_WITH_EXCLUSION", filters(pattern), tag) is not matches


@pytest.mark.parametrize("filters_json", ["[]", ""])
def test_exclusion_modes_without_filters(filters_json: str) -> None:
    assert tag_is_immutable("IMMUTABLE_WITH_EXCLUSION", filters_json, "latest") is True
    assert tag_is_immutable("MUTABLE_WITH_EXCLUSION", filters_json, "latest") is False


def test_any_filter_matching_is_enough() -> None:
    many = filters("a*", "b*", "c*")
    assert [tag_is_immutable("MUTABLE_WITH_EXCLUSION", many, t) for t in ["ax", "bx", "cx", "dx"]] == [
        True, True, True, False]


def test_filter_without_pattern_matches_nothing() -> None:
    assert tag_is_immutable("MUTABLE_WITH_EXCLUSION", json.dumps([{"filterType": "WILDCARD"}]), "latest") is False


@pytest.mark.parametrize("mode", ["", "mutable", "Immutable", "READ_ONLY", "IMMUTABLE_WITH_EXCLUSIONS"])
def test_unknown_mode_is_an_error(mode: str) -> None:
    with pytest.raises(ValueError, match="unknown tag mutability"):
        tag_is_immutable(mode, "[]", "latest")
