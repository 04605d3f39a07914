"""Rust binaries built with cargo-auditable: the dependency list it links into an ELF section `.dep-v0`.

The section holds zlib-compressed JSON (auditable-serde's format): `{"packages": [{"name", "version",
"source", "kind", "dependencies", "root"}]}`, `source` being "crates.io", "git", "local", "registry" or
another registry's name, `kind` "runtime" (the default, omitted) or "build". cargo-auditable writes it as a
non-allocated section (sh_flags 0), which the linker places after the program's sections, just before
the symbol tables and the section header table at the end of the file. A layer is a forward-only stream, so
this reader skips to the section header table keeping the last WINDOW bytes before it as views of the
decompressed chunks (no copy), then cuts the name table and `.dep-v0` out of them. A section further
than WINDOW before the table is not found (reported as nothing, not guessed).

Reported: crates.io packages that are compiled into the binary (runtime, not build-only dependencies,
which run at build time and are not in it), as kind "cargo" (OSV ecosystem crates.io).
"""

from __future__ import annotations

import json
import struct
import zlib
from typing import IO, Any

from berth.scanning.model import Package

SECTION = b".dep-v0"
WINDOW = 16 << 20  # bytes kept before the section header table
TABLE_CAP = 1 << 20  # a section header table larger than this is not an executable we read
JSON_CAP = 8 << 20  # decompressed: a dependency list of a few thousand crates is ~500 KB


def _elf_table(head: bytes) -> tuple[str, int, int, int, int] | None:
    """(struct byte order, e_shoff, e_shentsize, e_shnum, e_shstrndx) of an ELF header, or None."""
    if len(head) < 64 or head[:4] != b"\x7fELF" or head[5] not in (1, 2) or head[4] not in (1, 2):
        return None
    e = "<" if head[5] == 1 else ">"
    if head[4] == 2:
        shoff, = struct.unpack_from(e + "Q", head, 0x28)
        entsize, shnum, strndx = struct.unpack_from(e + "HHH", head, 0x3A)
        want = 64
    else:
        shoff, = struct.unpack_from(e + "I", head, 0x20)
        entsize, shnum, strndx = struct.unpack_from(e + "HHH", head, 0x2E)
        want = 40
    if not shoff or not shnum or entsize != want or strndx >= shnum or shnum * entsize > TABLE_CAP:
        return None
    return e, shoff, entsize, shnum, strndx


class _Window:
    """Bytes of the file from pieces (offset, view); `get` returns None for what it does not hold."""

    def __init__(self, pieces: list[tuple[int, Any]]) -> None:
        self.pieces = pieces

    def get(self, offset: int, size: int) -> bytes | None:
        out = []
        want, end = offset, offset + size
        for o, v in self.pieces:
            if o + len(v) <= want or want >= end:
                continue
            if o > want:
                return None  # a gap
            piece = v[want - o:min(len(v), end - o)]
            out.append(bytes(piece))
            want += len(piece)
        return b"".join(out) if want >= end else None


def _skip_keep(f: Any, n: int, keep: int) -> list[tuple[int, Any]]:
    if hasattr(f, "skip_keep"):  # a layer member (berth/scanning/tar.py): views, no copy
        return f.skip_keep(n, keep)  # type: ignore[no-any-return]
    start = f.tell()  # an ordinary file (tests): read what is kept
    if n > keep:
        f.seek(n - keep, 1)
        start += n - keep
        n = keep
    return [(start, memoryview(f.read(n)))]


def dependency_section(head: bytes, f: IO[bytes], size: int) -> bytes | None:
    """The `.dep-v0` bytes of an ELF file whose first len(head) bytes were read from `f`."""
    table = _elf_table(head)
    if table is None:
        return None
    e, shoff, entsize, shnum, strndx = table
    end = shoff + shnum * entsize
    if end > size:
        return None
    if shoff >= len(head):
        pieces = [(0, memoryview(head))] + _skip_keep(f, shoff - len(head), WINDOW)
        raw = f.read(shnum * entsize)
    else:  # a small file: the head holds the table, or most of it
        data = head + f.read(max(0, end - len(head)))
        pieces, raw = [(0, memoryview(data))], data[shoff:end]
    if len(raw) < shnum * entsize:
        return None
    fmt = e + ("IIQQQQ" if entsize == 64 else "IIIIII")
    headers = [struct.unpack_from(fmt, raw, i * entsize) for i in range(shnum)]  # name, type, flags, addr, off, size
    window = _Window(pieces)
    names_off, names_size = headers[strndx][4], headers[strndx][5]
    names = window.get(names_off, names_size)
    if names is None:
        return None
    for name, _type, _flags, _addr, off, sec_size in headers:
        if names[name:name + len(SECTION) + 1] == SECTION + b"\x00":
            return window.get(off, sec_size)
    return None


def decode(section: bytes) -> list[dict[str, Any]] | None:
    d = zlib.decompressobj()
    try:
        text = d.decompress(section, JSON_CAP)
        doc = json.loads(text)
    except (zlib.error, ValueError):
        return None
    if d.unconsumed_tail or not isinstance(doc, dict) or not isinstance(doc.get("packages"), list):
        return None
    return [p for p in doc["packages"] if isinstance(p, dict)]


def packages(section: bytes, path: str) -> list[Package]:
    out = []
    for p in decode(section) or []:
        name, version = p.get("name"), p.get("version")
        if p.get("source") != "crates.io" or p.get("kind", "runtime") != "runtime":
            continue  # local or git crates have no advisories by name; build dependencies are not linked in
        if isinstance(name, str) and isinstance(version, str) and name and version:
            out.append(Package("cargo", name, version, path))
    return out


def read(head: bytes, f: IO[bytes], size: int, path: str) -> list[Package] | None:
    section = dependency_section(head, f, size)
    return None if section is None else (packages(section, path) or None)
