"""Debian and Ubuntu packages: /var/lib/dpkg/status, and distroless images' /var/lib/dpkg/status.d/<pkg>."""

from __future__ import annotations

import re
from typing import IO

from berth.scanning.model import Package, read_capped
from berth.scanning.tar import Member

STATUS = "var/lib/dpkg/status"
STATUS_D = "var/lib/dpkg/status.d/"
CAP = 64 * 1024 * 1024  # a full desktop's status file is ~5 MB


# deb822 paragraphs are separated by blank lines; a field starts a line (continuations start with a blank).
# Only four single-line fields matter, so a regex per paragraph does what python-debian's Deb822 does here
# at ~8x its speed (tests/unit/scanning/test_layers.py compares both on the machine's real status file).
_PARAGRAPHS = re.compile(r"\n[ \t]*\n")
_FIELDS = re.compile(r"^(package|status|version|source):[ \t]*(.*?)[ \t]*$", re.M | re.I)


def fields(text: str) -> list[dict[str, str]]:
    return [{k.lower(): v for k, v in _FIELDS.findall(p)} for p in _PARAGRAPHS.split(text.replace("\r\n", "\n"))]


def parse(text: str, path: str) -> list[Package]:
    out = []
    for para in fields(text):
        name, version = para.get("package"), para.get("version")
        if not name or not version:
            continue
        status = para.get("status")
        if status is not None and not status.endswith(" installed"):
            continue  # removed, config-files only, half-installed
        source, source_version = name, version
        if src := para.get("source"):
            # "Source: name" or "Source: name (version)" when the binary's version differs
            source, _, rest = src.strip().partition(" ")
            if rest.strip().startswith("(") and rest.strip().endswith(")"):
                source_version = rest.strip()[1:-1].strip()
        out.append(Package("dpkg", name, version, path, source=source, source_version=source_version))
    return out


class Reader:
    name = "dpkg"

    def wants(self, path: str, member: Member) -> bool:
        return path == STATUS or (path.startswith(STATUS_D) and "/" not in path[len(STATUS_D):]
                                  and not path.endswith(".md5sums"))

    def read(self, path: str, f: IO[bytes], size: int) -> list[Package] | None:
        data = read_capped(f, CAP)
        return None if data is None else parse(data.decode("utf-8", "replace"), path)
