"""npm packages: `node_modules/<name>/package.json` and `node_modules/@scope/<name>/package.json`."""

from __future__ import annotations

import json
import tarfile
from typing import IO

from berth.scanning.model import Package, read_capped

CAP = 4 * 1024 * 1024


def package_dir(path: str) -> bool:
    parts = path.split("/")
    if len(parts) < 3 or parts[-1] != "package.json":
        return False
    if parts[-3] == "node_modules":
        return not parts[-2].startswith("@")
    return len(parts) >= 4 and parts[-4] == "node_modules" and parts[-3].startswith("@")


def parse(data: bytes, path: str) -> list[Package]:
    try:
        doc = json.loads(data)
    except (ValueError, UnicodeDecodeError):
        return []
    if not isinstance(doc, dict):
        return []
    name, version = doc.get("name"), doc.get("version")
    if not isinstance(name, str) or not isinstance(version, str) or not name or not version:
        return []
    return [Package("npm", name, version, path)]


class Reader:
    name = "npm"

    def wants(self, path: str, member: tarfile.TarInfo) -> bool:
        return "node_modules/" in path and package_dir(path)

    def read(self, path: str, f: IO[bytes], size: int) -> list[Package] | None:
        data = read_capped(f, CAP)
        return None if data is None else (parse(data, path) or None)
