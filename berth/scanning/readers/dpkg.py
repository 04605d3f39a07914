"""Debian and Ubuntu packages: /var/lib/dpkg/status, and distroless images' /var/lib/dpkg/status.d/<pkg>."""

from __future__ import annotations

import tarfile
from typing import IO

from debian.deb822 import Deb822

from berth.scanning.model import Package, read_capped

STATUS = "var/lib/dpkg/status"
STATUS_D = "var/lib/dpkg/status.d/"
CAP = 64 * 1024 * 1024  # a full desktop's status file is ~5 MB


def parse(text: str, path: str) -> list[Package]:
    out = []
    for para in Deb822.iter_paragraphs(text.splitlines(keepends=True), use_apt_pkg=False):
        name, version = para.get("Package"), para.get("Version")
        if not name or not version:
            continue
        status = para.get("Status")
        if status is not None and not status.endswith(" installed"):
            continue  # removed, config-files only, half-installed
        source, source_version = name, version
        if src := para.get("Source"):
            # "Source: name" or "Source: name (version)" when the binary's version differs
            source, _, rest = src.strip().partition(" ")
            if rest.strip().startswith("(") and rest.strip().endswith(")"):
                source_version = rest.strip()[1:-1].strip()
        out.append(Package("dpkg", name, version, path, source=source, source_version=source_version))
    return out


class Reader:
    name = "dpkg"

    def wants(self, path: str, member: tarfile.TarInfo) -> bool:
        return path == STATUS or (path.startswith(STATUS_D) and "/" not in path[len(STATUS_D):]
                                  and not path.endswith(".md5sums"))

    def read(self, path: str, f: IO[bytes], size: int) -> list[Package] | None:
        data = read_capped(f, CAP)
        return None if data is None else parse(data.decode("utf-8", "replace"), path)
