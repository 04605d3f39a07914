"""Go binaries: the module build info the linker embeds (Go 1.18+, `.go.buildinfo`), found by streaming.

Layout (the Go toolchain's debug/buildinfo): a 32-byte header starting with the magic "\\xff Go buildinf:",
then (flag 2, "version inline") two uvarint-length-prefixed strings: the Go version and the module
info. The module info is framed by 16 sentinel bytes each side and holds tab-separated lines: `path`,
`mod path version sum`, `dep path version sum`, `=> path version sum` (replaces the line before).
Binaries from before Go 1.18 keep pointers instead of inline strings; they are reported as unreadable
(nothing is found) rather than guessed. Only executables that start with an ELF header are searched,
and at most MODINFO_CAP bytes after the magic are kept; only ELF files whose first 64 KiB hold the Go
build-id note are streamed at all (see is_go_elf), so a C binary or library costs one 64 KiB read (and a
look at its section headers for Rust's cargo-auditable data: readers/rust.py).
"""

from __future__ import annotations

from typing import IO

from berth.scanning.model import Package
from berth.scanning.readers import rust
from berth.scanning.tar import Member

MAGIC = b"\xff Go buildinf:"
HEADER = 32
FLAG_INLINE = 0x2
MODINFO_CAP = 1 << 20
CHUNK = 1 << 20
MIN_SIZE = 4096
HEAD = 64 * 1024
GO_NOTE = b"\x04\x00\x00\x00Go\x00\x00"  # type 4 (NT_GO_BUILDID), then the name "Go\0\0"


def _uvarint(data: bytes, pos: int) -> tuple[int, int] | None:
    value = shift = 0
    while pos < len(data) and shift < 64:
        b = data[pos]
        pos += 1
        value |= (b & 0x7F) << shift
        if b < 0x80:
            return value, pos
        shift += 7
    return None


def _string(data: bytes, pos: int) -> tuple[bytes, int] | None:
    got = _uvarint(data, pos)
    if got is None:
        return None
    n, pos = got
    if pos + n > len(data):
        return None
    return data[pos:pos + n], pos + n


def decode(blob: bytes) -> tuple[str, str] | None:
    """(go version, module info text) from the bytes starting at the magic; None if not decodable."""
    if len(blob) < HEADER or not blob.startswith(MAGIC) or not blob[15] & FLAG_INLINE:
        return None
    got = _string(blob, HEADER)
    if got is None:
        return None
    version, pos = got
    got = _string(blob, pos)
    if got is None:
        return None
    mod = got[0]
    if len(mod) >= 33 and mod[-17] == 0x0A:
        mod = mod[16:-16]
    return version.decode("utf-8", "replace"), mod.decode("utf-8", "replace")


def packages(go_version: str, modinfo: str, path: str) -> list[Package]:
    out: list[Package] = []
    if go_version.startswith("go"):
        out.append(Package("go", "stdlib", go_version[2:].split(" ")[0].split("-")[0], path))
    deps: list[tuple[str, str]] = []
    for line in modinfo.splitlines():
        parts = line.split("\t")
        if parts[0] in ("mod", "dep") and len(parts) >= 3:
            deps.append((parts[1], parts[2]))
        elif parts[0] == "=>" and len(parts) >= 3 and deps:
            deps[-1] = (parts[1], parts[2])
    for name, version in deps:
        if version and version != "(devel)":
            out.append(Package("go", name, version, path))
    return out


def is_go_elf(head: bytes) -> bool:
    """The Go linker writes its build id as an ELF note (name "Go", type 4) in the first page of every ELF
    binary it links, internally or with cgo's external linker: other executables are never streamed."""
    return head[:4] == b"\x7fELF" and GO_NOTE in head


def scan(f: IO[bytes], head: bytes | None = None) -> tuple[str, str] | None:
    """Stream a file for the build info; (go version, modinfo) or None. `head`: its first bytes, if read."""
    if head is None:
        head = f.read(HEAD)
    if not is_go_elf(head):
        return None
    tail = b""
    first = True
    while True:
        chunk = head if first else f.read(CHUNK)
        first = False
        if not chunk:
            return None
        buf = tail + chunk
        start = 0
        while (at := buf.find(MAGIC, start)) >= 0:
            blob = buf[at:at + HEADER + MODINFO_CAP]
            while len(blob) < HEADER + MODINFO_CAP:
                more = f.read(CHUNK)
                if not more:
                    break
                blob += more
            found = decode(blob[:HEADER + MODINFO_CAP])
            if found is not None:
                return found
            start = at + 1
            if len(buf) - at < len(blob):  # we read ahead: search on in what was read
                buf = buf[:at] + blob
        tail = buf[-(len(MAGIC) - 1):]


class Reader:
    name = "go"

    def wants(self, path: str, member: Member) -> bool:
        return member.size >= MIN_SIZE and bool(member.mode & 0o111)

    def read(self, path: str, f: IO[bytes], size: int) -> list[Package] | None:
        head = f.read(HEAD)
        if not is_go_elf(head):
            return rust.read(head, f, size, path)  # any other ELF executable: cargo-auditable's section?
        found = scan(f, head)
        return None if found is None else (packages(found[0], found[1], path) or None)
