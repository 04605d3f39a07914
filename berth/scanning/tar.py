"""A forward-only tar reader for layer streams: headers parsed with a few slices, bodies skipped without
being copied through Python unless a reader asks for them.

`tarfile` spent ~70% of a scan's Python time building TarInfo objects (checksums, pax records, number
parsing field by field; bench/scan.py). This reads what a scan needs and no more: the name (ustar
prefix, GNU long names, pax `path`/`linkpath`), size (octal or base-256), mode, type and link target.
The archive grammar follows tarfile's reading of it: a bad or missing first header is an error, a bad
header later ends the archive, two zero blocks (or the end of the stream) end it too.
"""

from __future__ import annotations

from collections.abc import Iterator

BLOCK = 512
ZERO = bytes(BLOCK)
META_CAP = 1 << 20  # a pax or GNU long-name record larger than this is not a layer we read
REGULAR = frozenset(b"07\x00")  # "0", "7" (contiguous), NUL (old tar)
SKIP_DATA = frozenset(b"07\x00S")  # types whose size counts data blocks (tarfile: regular and unknown)
KNOWN = frozenset(b"0123456\x00S")


class TarError(ValueError):
    """Not a tar archive, or one cut short."""


class Member:
    __slots__ = ("name", "size", "mode", "type", "linkname")

    def __init__(self, name: str, size: int, mode: int, type_: int, linkname: str) -> None:
        self.name, self.size, self.mode, self.type, self.linkname = name, size, mode, type_, linkname

    def isreg(self) -> bool:
        return self.type in REGULAR

    def isdir(self) -> bool:
        return self.type == 0x35  # "5"

    def issym(self) -> bool:
        return self.type == 0x32  # "2"

    def islnk(self) -> bool:
        return self.type == 0x31  # "1"


def _num(field: bytes) -> int:
    if field[:1] and field[0] & 0x80:  # GNU base-256 (sizes of 8 GiB and more)
        n = int.from_bytes(field[1:], "big")
        return n - (1 << (8 * len(field) - 8)) if field[0] == 0xFF else n
    s = field.split(b"\x00", 1)[0].strip()
    try:
        return int(s, 8) if s else 0
    except ValueError:
        raise TarError(f"bad number field {field!r}") from None


def _str(field: bytes) -> str:
    return field.split(b"\x00", 1)[0].decode("utf-8", "surrogateescape")


def _checksum_ok(h: bytes) -> bool:
    try:
        stored = _num(h[148:156])
    except TarError:
        return False
    unsigned = sum(h) - sum(h[148:156]) + 256
    if stored == unsigned:
        return True
    signed = unsigned - 2 * sum(b for b in h if b > 127) + 2 * sum(b for b in h[148:156] if b > 127)
    return stored == signed


def _pax(data: bytes) -> dict[bytes, bytes]:
    out: dict[bytes, bytes] = {}
    pos = 0
    while pos < len(data):
        sp = data.find(b" ", pos)
        if sp < 0:
            break
        try:
            length = int(data[pos:sp])
        except ValueError:
            raise TarError("bad pax record") from None
        if length <= 0:
            raise TarError("bad pax record")
        key, _, value = data[sp + 1:pos + length - 1].partition(b"=")
        out[key] = value
        pos += length
    return out


class TarStream:
    """The members of a tar archive, read from an iterator of byte chunks (a decompressed layer)."""

    def __init__(self, chunks: Iterator[bytes]) -> None:
        self._chunks = chunks
        self._buf = b""
        self._pos = 0
        self.offset = 0  # bytes of the archive consumed
        self._next = 0  # offset of the next header

    def _take(self, n: int) -> bytes:
        """Up to n bytes (fewer only at the end of the stream)."""
        buf, pos = self._buf, self._pos
        if pos + n <= len(buf):  # the common case: a header inside the current chunk
            self._pos = pos + n
            self.offset += n
            return buf[pos:pos + n]
        parts = [buf[pos:]]
        got = len(parts[0])
        self._buf, self._pos = b"", 0
        while got < n:
            chunk = next(self._chunks, None)
            if chunk is None:
                break
            want = n - got
            if len(chunk) > want:
                parts.append(chunk[:want])
                self._buf, self._pos = chunk, want
                got = n
            else:
                parts.append(chunk)
                got += len(chunk)
        self.offset += got
        return b"".join(parts)

    def _skip(self, n: int) -> None:
        while n > 0:
            left = len(self._buf) - self._pos
            if left >= n:
                self._pos += n
                self.offset += n
                return
            self.offset += left
            n -= left
            chunk = next(self._chunks, None)
            if chunk is None:
                self._buf, self._pos = b"", 0
                return
            self._buf, self._pos = chunk, 0

    def skip_keep(self, end: int, n: int, keep: int) -> list[tuple[int, memoryview]]:
        """Skip up to n bytes of the current member (ending at `end`); the last `keep` of them are returned as
        (offset, view) pieces of the decompressed chunks, without a copy (ELF sections before a table)."""
        n = min(n, end - self.offset)
        keep_from = self.offset + n - keep
        out: list[tuple[int, memoryview]] = []
        while n > 0:
            left = len(self._buf) - self._pos
            if left == 0:
                chunk = next(self._chunks, None)
                if chunk is None:
                    raise TarError("unexpected end of data")
                self._buf, self._pos = chunk, 0
                continue
            step = min(left, n)
            if self.offset + step > keep_from:
                a = max(0, keep_from - self.offset)
                out.append((self.offset + a, memoryview(self._buf)[self._pos + a:self._pos + step]))
            self._pos += step
            self.offset += step
            n -= step
        return out

    def read_body(self, end: int, n: int) -> bytes:
        """Up to n bytes of the current member, whose data ends at offset `end`."""
        n = min(n, end - self.offset)
        if n <= 0:
            return b""
        data = self._take(n)
        if len(data) < n:
            raise TarError("unexpected end of data")
        return data

    def members(self) -> Iterator[tuple[Member, int]]:
        """(member, offset where its data ends) for each member; the caller may read the body with
        `read_body` before asking for the next one, the rest is skipped."""
        first = True
        while True:
            if self.offset < self._next:
                self._skip(self._next - self.offset)
            pax: dict[bytes, bytes] = {}
            long_name = long_link = None
            while True:
                h = self._take(BLOCK)
                if len(h) < BLOCK:
                    if first:
                        raise TarError("empty file" if not h else "truncated header")
                    return
                if h == ZERO:
                    if first:
                        raise TarError("empty file")
                    return
                magic = h[257:263]
                if (first or magic[:5] != b"ustar") and not _checksum_ok(h):
                    if first:
                        raise TarError("bad checksum")
                    return
                first = False
                typ = h[156]
                size = _num(h[124:136])
                padded = (size + BLOCK - 1) & ~(BLOCK - 1)
                if typ in b"xgLK":
                    if size > META_CAP:
                        raise TarError("a pax or long-name record too large")
                    data = self._take(padded)[:size]
                    if len(data) < size:
                        raise TarError("unexpected end of data")
                    if typ == 0x78:  # "x": applies to the next member
                        pax.update(_pax(data))
                    elif typ == 0x4C:  # "L"
                        long_name = _str(data)
                    elif typ == 0x4B:  # "K"
                        long_link = _str(data)
                    continue  # "g" (global): nothing a scan needs
                break
            if b"path" in pax:
                name = pax[b"path"].decode("utf-8", "surrogateescape")
            elif b"GNU.sparse.name" in pax:
                name = pax[b"GNU.sparse.name"].decode("utf-8", "surrogateescape")
            elif long_name is not None:
                name = long_name
            else:
                name = _str(h[0:100])
                if magic == b"ustar\x00" and h[345]:  # POSIX ustar: a prefix for long names
                    name = _str(h[345:500]) + "/" + name
            if b"linkpath" in pax:
                link = pax[b"linkpath"].decode("utf-8", "surrogateescape")
            elif long_link is not None:
                link = long_link
            else:
                link = _str(h[157:257])
            if b"size" in pax:
                try:
                    size = int(pax[b"size"])
                except ValueError:
                    raise TarError("bad pax size") from None
                padded = (size + BLOCK - 1) & ~(BLOCK - 1)
            if typ == 0x53 and h[482]:  # old GNU sparse with extension headers: skip them
                while True:
                    ext = self._take(BLOCK)
                    if len(ext) < BLOCK:
                        raise TarError("unexpected end of data")
                    if not ext[504]:
                        break
            if typ in (0x30, 0) and name.endswith("/"):
                typ = 0x35  # an old tar's directory
            if any(k.startswith(b"GNU.sparse.") for k in pax):
                typ = 0x53  # a sparse file: its stored bytes are not its content
            data_start = self.offset
            self._next = data_start + (padded if typ in SKIP_DATA or typ not in KNOWN else 0)
            yield Member(name, size, _num(h[100:108]) if h[100] else 0, typ, link), data_start + size


class Body:
    """A member's data as a read-only file object (what the inventory readers are given)."""

    def __init__(self, stream: TarStream, end: int, size: int) -> None:
        self._stream = stream
        self._end = end
        self._start = end - size

    def tell(self) -> int:
        return self._stream.offset - self._start

    def skip_keep(self, n: int, keep: int) -> list[tuple[int, memoryview]]:
        """Skip n bytes forward; the last `keep` of them as (offset in the file, view) pieces, not copied."""
        return [(o - self._start, v) for o, v in self._stream.skip_keep(self._end, n, keep)]

    def readable(self) -> bool:
        return True

    def read(self, n: int = -1) -> bytes:
        if n is None or n < 0:
            n = self._end
        return self._stream.read_body(self._end, n)
