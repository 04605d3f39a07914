"""/etc/os-release (often a symlink to /usr/lib/os-release): the distribution and its release."""

from __future__ import annotations

import shlex
from typing import IO

from berth.scanning.model import OsRelease, read_capped
from berth.scanning.tar import Member

PATHS = ("etc/os-release", "usr/lib/os-release")
CAP = 64 * 1024


def parse(text: str) -> OsRelease | None:
    values: dict[str, str] = {}
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith("#") or "=" not in line:
            continue
        key, _, raw = line.partition("=")
        try:
            parts = shlex.split(raw)
        except ValueError:
            continue
        values[key.strip()] = parts[0] if parts else ""
    if "ID" not in values:
        return None
    return OsRelease(values["ID"].lower(), values.get("VERSION_ID", ""), values.get("PRETTY_NAME", ""),
                     values.get("VERSION_CODENAME", ""))


class Reader:
    name = "os-release"

    def wants(self, path: str, member: Member) -> bool:
        return path in PATHS

    def read(self, path: str, f: IO[bytes], size: int) -> OsRelease | None:
        data = read_capped(f, CAP)
        return None if data is None else parse(data.decode("utf-8", "replace"))
