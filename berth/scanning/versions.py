"""Each ecosystem's own version order, from the well-kept implementations: python-debian for dpkg,
packaging for PEP 440, univers for apk, RPM, SemVer (npm, crates.io), Go and Maven.

`key(ecosystem, version)` gives a sortable object, or raises InvalidVersion; ecosystems are OSV's names
without their release suffix ("Debian:12" -> "Debian")."""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

from debian.debian_support import version_compare
from packaging.version import InvalidVersion as PepInvalid
from packaging.version import Version as PepVersion


class InvalidVersion(ValueError):
    pass


@functools.total_ordering
class _Dpkg:
    __slots__ = ("v",)

    def __init__(self, v: str) -> None:
        if not v or not (v[0].isdigit() or (":" in v and v.split(":", 1)[1][:1].isdigit())):
            raise InvalidVersion(v)
        self.v = v

    def __eq__(self, other: object) -> bool:
        return isinstance(other, _Dpkg) and version_compare(self.v, other.v) == 0

    def __lt__(self, other: _Dpkg) -> bool:
        return version_compare(self.v, other.v) < 0

    def __hash__(self) -> int:
        return hash(self.v)


def _pep440(v: str) -> Any:
    try:
        return PepVersion(v)
    except PepInvalid as e:
        raise InvalidVersion(v) from e


def _univers(cls_name: str, strip_v: bool = False) -> Callable[[str], Any]:
    def parse(v: str) -> Any:
        from univers import versions

        cls = getattr(versions, cls_name)
        if strip_v:
            v = v.removeprefix("v")
        try:
            return cls(v)
        except Exception as e:  # univers raises several kinds for a bad string
            raise InvalidVersion(v) from e
    return parse


PARSERS: dict[str, Callable[[str], Any]] = {
    "Debian": _Dpkg,
    "Ubuntu": _Dpkg,
    "Alpine": _univers("AlpineLinuxVersion"),
    "Red Hat": _univers("RpmVersion"),
    "Rocky Linux": _univers("RpmVersion"),
    "AlmaLinux": _univers("RpmVersion"),
    "PyPI": _pep440,
    "npm": _univers("SemverVersion"),
    "crates.io": _univers("SemverVersion"),
    "Go": _univers("GolangVersion", strip_v=True),
    "Maven": _univers("MavenVersion"),
}


def base(ecosystem: str) -> str:
    """"Debian:12" -> "Debian"; "Alpine:v3.18" -> "Alpine"."""
    return ecosystem.split(":", 1)[0]


@functools.lru_cache(maxsize=1 << 16)
def key(ecosystem: str, version: str) -> Any:
    """Cached: matching compares the same package and event versions over and over (immutable objects)."""
    parser = PARSERS.get(base(ecosystem))
    if parser is None:
        raise InvalidVersion(f"no version rules for ecosystem {ecosystem!r}")
    if base(ecosystem) == "Go":
        version = version.removeprefix("v")
    return parser(version)


def compare(ecosystem: str, a: str, b: str) -> int:
    ka, kb = key(ecosystem, a), key(ecosystem, b)
    return -1 if ka < kb else (1 if kb < ka else 0)
