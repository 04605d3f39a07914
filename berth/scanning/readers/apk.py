"""Alpine packages: /lib/apk/db/installed (blocks of `X:value` lines; P name, V version, o origin)."""

from __future__ import annotations

from typing import IO

from berth.scanning.model import Package, read_capped
from berth.scanning.tar import Member

PATH = "lib/apk/db/installed"
CAP = 64 * 1024 * 1024


def parse(text: str, path: str) -> list[Package]:
    out: list[Package] = []
    fields: dict[str, str] = {}

    def flush() -> None:
        if fields.get("P") and fields.get("V"):
            out.append(Package("apk", fields["P"], fields["V"], path, source=fields.get("o") or fields["P"],
                               source_version=fields["V"]))
        fields.clear()

    for line in text.splitlines():
        if not line.strip():
            flush()
        elif len(line) > 2 and line[1] == ":" and line[0] in "PVo":
            fields[line[0]] = line[2:].strip()
    flush()
    return out


class Reader:
    name = "apk"

    def wants(self, path: str, member: Member) -> bool:
        return path == PATH

    def read(self, path: str, f: IO[bytes], size: int) -> list[Package] | None:
        data = read_capped(f, CAP)
        return None if data is None else parse(data.decode("utf-8", "replace"), path)
