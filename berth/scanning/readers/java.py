"""Java archives (.jar, .war, .ear): `META-INF/maven/<g>/<a>/pom.properties`, else the manifest's
Implementation/Bundle version; nested archives (Spring Boot's BOOT-INF/lib, WEB-INF/lib) one level
down and more. A zip needs random access, so one archive at a time is held in memory, up to CAP."""

from __future__ import annotations

import io
import zipfile
from typing import IO

from berth.scanning.model import Package, read_capped
from berth.scanning.tar import Member

CAP = 64 * 1024 * 1024  # one archive in memory; larger ones are skipped
NESTED_CAP = 32 * 1024 * 1024
MAX_DEPTH = 3
SUFFIXES = (".jar", ".war", ".ear", ".jpi", ".hpi")


def _properties(text: str) -> dict[str, str]:
    out = {}
    for line in text.splitlines():
        line = line.strip()
        if line and not line.startswith(("#", "!")) and "=" in line:
            k, _, v = line.partition("=")
            out[k.strip()] = v.strip()
    return out


def _manifest(text: str) -> dict[str, str]:
    out: dict[str, str] = {}
    key = None
    for line in text.splitlines():
        if line.startswith(" ") and key:
            out[key] += line[1:]
        elif ":" in line:
            key, _, v = line.partition(":")
            key = key.strip()
            out[key] = v.strip()
    return out


def parse(data: bytes, path: str, depth: int = 0) -> list[Package]:
    try:
        z = zipfile.ZipFile(io.BytesIO(data))
    except (zipfile.BadZipFile, OSError, ValueError):
        return []
    out: list[Package] = []
    with z:
        names = z.namelist()
        poms = [n for n in names if n.startswith("META-INF/maven/") and n.endswith("/pom.properties")]
        for n in poms:
            try:
                props = _properties(z.read(n).decode("utf-8", "replace"))
            except (zipfile.BadZipFile, OSError, RuntimeError):
                continue
            if props.get("groupId") and props.get("artifactId") and props.get("version"):
                out.append(Package("maven", f"{props['groupId']}:{props['artifactId']}", props["version"], path))
        if not poms and "META-INF/MANIFEST.MF" in names:
            try:
                mf = _manifest(z.read("META-INF/MANIFEST.MF").decode("utf-8", "replace"))
            except (zipfile.BadZipFile, OSError, RuntimeError):
                mf = {}
            name = mf.get("Bundle-SymbolicName", "").split(";")[0] or mf.get("Implementation-Title", "")
            version = mf.get("Bundle-Version") or mf.get("Implementation-Version")
            group = mf.get("Implementation-Vendor-Id")
            if name and version:
                out.append(Package("maven", f"{group}:{name}" if group and ":" not in name else name, version, path))
        if depth < MAX_DEPTH:
            for info in z.infolist():
                if info.filename.endswith(SUFFIXES) and info.file_size <= NESTED_CAP:
                    try:
                        inner = z.read(info)
                    except (zipfile.BadZipFile, OSError, RuntimeError):
                        continue
                    out += parse(inner, f"{path}!/{info.filename}", depth + 1)
    return out


class Reader:
    name = "java"

    def wants(self, path: str, member: Member) -> bool:
        return path.endswith(SUFFIXES)

    def read(self, path: str, f: IO[bytes], size: int) -> list[Package] | None:
        if size > CAP:
            return None
        data = read_capped(f, CAP)
        return None if data is None else (parse(data, path) or None)
