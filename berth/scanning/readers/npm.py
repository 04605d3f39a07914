"""npm packages: `node_modules/<name>/package.json` and `node_modules/@scope/<name>/package.json`, and the
lock files `package-lock.json` / `npm-shrinkwrap.json` (v1 `dependencies`, v2/v3 `packages`) for what is
locked but not installed in the image (the inventory drops lock entries whose package.json is present)."""

from __future__ import annotations

import json
from typing import IO

from berth.scanning.model import Package, read_capped
from berth.scanning.tar import Member

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


LOCKS = ("package-lock.json", "npm-shrinkwrap.json")
LOCK_CAP = 32 * 1024 * 1024


def parse_lock(data: bytes, path: str) -> list[Package]:
    """Locked packages; each with `source` set to the install path it names ("node_modules/a/node_modules/b"),
    relative to the lock file's directory."""
    try:
        doc = json.loads(data)
    except (ValueError, UnicodeDecodeError):
        return []
    if not isinstance(doc, dict):
        return []
    out: list[Package] = []
    packages = doc.get("packages")
    if isinstance(packages, dict):
        for where, meta in packages.items():
            if not where or not isinstance(meta, dict) or meta.get("link"):
                continue
            name = meta.get("name") or where.rsplit("node_modules/", 1)[-1]
            version = meta.get("version")
            if isinstance(name, str) and isinstance(version, str) and version:
                out.append(Package("npm", name, version, path, source=where))
        return out

    def walk(deps: object, prefix: str) -> None:
        if not isinstance(deps, dict):
            return
        for name, meta in deps.items():
            if isinstance(meta, dict) and isinstance(meta.get("version"), str):
                where = f"{prefix}node_modules/{name}"
                out.append(Package("npm", name, meta["version"], path, source=where))
                walk(meta.get("dependencies"), where + "/")

    walk(doc.get("dependencies"), "")
    return out


class Reader:
    name = "npm"

    def wants(self, path: str, member: Member) -> bool:
        if path.rsplit("/", 1)[-1] in LOCKS:
            return "node_modules/" not in path  # a project's lock, not one shipped inside a dependency
        return "node_modules/" in path and package_dir(path)

    def read(self, path: str, f: IO[bytes], size: int) -> list[Package] | None:
        if path.rsplit("/", 1)[-1] in LOCKS:
            lock = read_capped(f, LOCK_CAP)
            return None if lock is None else (parse_lock(lock, path) or None)
        data = read_capped(f, CAP)
        return None if data is None else (parse(data, path) or None)
