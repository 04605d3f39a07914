"""The grammars: repository names, tags, digests (distribution-spec)."""

from __future__ import annotations

import re

from berth.registry.errors import DigestInvalid, NameInvalid, TagInvalid

MAX_NAME = 256
_COMPONENT = r"[a-z0-9]+(?:(?:\.|_|__|-+)[a-z0-9]+)*"
NAME_RE = re.compile(rf"{_COMPONENT}(?:/{_COMPONENT})*")
TAG_RE = re.compile(r"[A-Za-z0-9_][A-Za-z0-9._-]{0,127}")
DIGEST_RE = re.compile(r"[a-z0-9]+(?:[+._-][a-z0-9]+)*:[a-zA-Z0-9=_-]+")
SUPPORTED = {"sha256": 64, "sha512": 128}


def check_name(name: str) -> str:
    if len(name) > MAX_NAME or not NAME_RE.fullmatch(name):
        raise NameInvalid(f"invalid repository name {name[:300]!r}")
    return name


def check_tag(tag: str) -> str:
    if not TAG_RE.fullmatch(tag):
        raise TagInvalid(f"invalid tag {tag[:200]!r}")
    return tag


def is_digest(ref: str) -> bool:
    return ":" in ref


def check_digest(digest: str) -> str:
    """A well-formed digest in a supported algorithm with an encoded part of the right length."""
    if not DIGEST_RE.fullmatch(digest):
        raise DigestInvalid(f"invalid digest {digest[:200]!r}")
    alg, hexpart = digest.split(":", 1)
    if alg not in SUPPORTED:
        raise DigestInvalid(f"unsupported digest algorithm {alg!r}")
    if len(hexpart) != SUPPORTED[alg] or not re.fullmatch(r"[a-f0-9]+", hexpart):
        raise DigestInvalid(f"invalid {alg} digest {digest[:200]!r}")
    return digest
