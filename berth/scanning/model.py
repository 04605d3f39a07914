"""Value objects of scanning: packages found in an image, its inventory, findings."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

OS_KINDS = ("dpkg", "apk", "rpm")  # what BASIC scans; ENHANCED adds the language and binary kinds


@dataclass(frozen=True, slots=True)
class Package:
    kind: str  # dpkg | apk | rpm | python | npm | go
    name: str
    version: str
    path: str  # the file it was read from
    layer: str = ""  # the digest of the layer that put that file there
    source: str | None = None  # Debian/Ubuntu source package (apk: origin)
    source_version: str | None = None

    def to_json(self) -> dict[str, Any]:
        out = {"kind": self.kind, "name": self.name, "version": self.version, "path": self.path, "layer": self.layer}
        if self.source is not None:
            out["source"] = self.source
        if self.source_version is not None:
            out["source_version"] = self.source_version
        return out

    @staticmethod
    def from_json(d: dict[str, Any]) -> Package:
        return Package(d["kind"], d["name"], d["version"], d.get("path", ""), d.get("layer", ""),
                       d.get("source"), d.get("source_version"))


@dataclass(frozen=True, slots=True)
class OsRelease:
    id: str  # debian, ubuntu, alpine, fedora, …
    version_id: str
    pretty_name: str = ""
    codename: str = ""


@dataclass(slots=True)
class Inventory:
    os: OsRelease | None
    packages: list[Package] = field(default_factory=list)
    files_seen: int = 0
    bytes_read: int = 0  # compressed layer bytes

    def to_json(self) -> dict[str, Any]:
        return {"os": None if self.os is None else asdict(self.os),
                "packages": [p.to_json() for p in self.packages],
                "filesSeen": self.files_seen, "bytesRead": self.bytes_read}

    @staticmethod
    def from_json(d: dict[str, Any]) -> Inventory:
        os = d.get("os")
        return Inventory(None if os is None else OsRelease(**os),
                         [Package.from_json(p) for p in d.get("packages", [])],
                         int(d.get("filesSeen", 0)), int(d.get("bytesRead", 0)))


def read_capped(f: Any, cap: int) -> bytes | None:
    """Up to `cap` bytes of a file object; None when it is longer (the caller skips the file)."""
    data: bytes = f.read(cap + 1)
    return None if len(data) > cap else data
