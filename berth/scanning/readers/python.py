"""Python distributions: `*.dist-info/METADATA`, `*.egg-info/PKG-INFO` and single-file `*.egg-info`.

Only the header block is read (Name, Version); the description after it is never kept."""

from __future__ import annotations

import re
from typing import IO

from berth.scanning.model import Package
from berth.scanning.tar import Member

HEADER_CAP = 256 * 1024


def normalise(name: str) -> str:
    """PEP 503 name normalisation, as PyPI and OSV's PyPI ecosystem name packages."""
    return re.sub(r"[-_.]+", "-", name).lower()


def parse(data: bytes, path: str) -> list[Package]:
    name = version = None
    for raw in data.split(b"\n"):
        line = raw.rstrip(b"\r").decode("utf-8", "replace")
        if not line:
            break  # the end of the headers
        if line.startswith("Name:") and name is None:
            name = line[5:].strip()
        elif line.startswith("Version:") and version is None:
            version = line[8:].strip()
    if not name or not version:
        return []
    return [Package("python", normalise(name), version, path)]


class Reader:
    name = "python"

    def wants(self, path: str, member: Member) -> bool:
        return (path.endswith(".dist-info/METADATA") or path.endswith(".egg-info/PKG-INFO")
                or (path.endswith(".egg-info") and member.isreg()))

    def read(self, path: str, f: IO[bytes], size: int) -> list[Package] | None:
        data = f.read(HEADER_CAP)
        return parse(data, path) or None
