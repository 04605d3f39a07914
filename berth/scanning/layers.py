"""Read an image's layers as streams, applying whiteouts, and keep only what the inventory readers want.

Each layer is decompressed (gzip, zstd or none, told by its magic bytes, not its media type) and read
through `tarfile` in stream mode: nothing is written to disk and nothing is seeked. A reader (see
berth/scanning/readers.py) says which paths it wants; a wanted file is handed to it as a capped stream
and only its parsed result (a few package records) is kept. Results are keyed by path, so a later layer
that replaces, whites out (`.wh.<name>`) or hides (`.wh..wh..opq`) a path drops what lower layers said.
Memory is bounded by the readers' caps and the number of packages found, never by a layer's size.
"""

from __future__ import annotations

import posixpath
import tarfile
import zlib
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import IO, Any, Protocol

READ_SIZE = 1 << 20
WHITEOUT = ".wh."
OPAQUE = ".wh..wh..opq"


class LayerFormatError(ValueError):
    """A layer that is not a (compressed) tar archive."""


class RawReader(Protocol):
    def read(self, n: int) -> bytes: ...


class _Decompressed:
    """A read-only file object over a raw blob reader, decompressing gzip or zstd as it goes."""

    def __init__(self, raw: RawReader) -> None:
        self._raw = raw
        head = raw.read(READ_SIZE)
        self._pending = b""
        self._eof = False
        self._decoder: Any = None
        if head[:2] == b"\x1f\x8b":
            self._decoder = zlib.decompressobj(16 + zlib.MAX_WBITS)
        elif head[:4] == b"\x28\xb5\x2f\xfd":
            import zstandard

            self._decoder = zstandard.ZstdDecompressor().decompressobj()
        self._buf = self._decode(head)
        self._pos = 0

    def _decode(self, data: bytes) -> bytes:
        if self._decoder is None:
            return data
        out: bytes = self._decoder.decompress(data)
        # gzip members may be concatenated: restart on what follows the end of one
        while isinstance(self._decoder, type(zlib.decompressobj())) and self._decoder.eof \
                and self._decoder.unused_data:
            rest = self._decoder.unused_data
            self._decoder = zlib.decompressobj(16 + zlib.MAX_WBITS)
            out += self._decoder.decompress(rest)
        return out

    def read(self, n: int = -1) -> bytes:
        if n is None or n < 0:
            n = 1 << 62
        while len(self._buf) - self._pos < n and not self._eof:
            raw = self._raw.read(READ_SIZE)
            if not raw:
                self._eof = True
                break
            chunk = self._decode(raw)
            if chunk:
                self._buf = self._buf[self._pos:] + chunk
                self._pos = 0
        out = self._buf[self._pos:self._pos + n]
        self._pos += len(out)
        if self._pos >= len(self._buf):
            self._buf, self._pos = b"", 0
        return out


@dataclass(frozen=True, slots=True)
class Entry:
    """What is known about one path: the layer that put it there (index, digest) and a reader's result."""

    layer: int
    layer_digest: str
    reader: str
    result: Any


class Collector(Protocol):
    name: str

    def wants(self, path: str, member: tarfile.TarInfo) -> bool: ...

    def read(self, path: str, f: IO[bytes], size: int) -> Any:
        """Parse the file (read at most what it needs from `f`); its result, or None for nothing."""


class Tree:
    """The surviving results by path, across layers, with OCI whiteout semantics.

    A whiteout or opaque marker in layer i hides paths from layers below i only, whatever the order
    of the entries inside layer i (the OCI image spec's rule). `_dirs` counts the entries below each
    directory, so that the per-member checks are dictionary look-ups, not scans."""

    def __init__(self) -> None:
        self.entries: dict[str, Entry] = {}
        self.symlinks: dict[str, tuple[int, str]] = {}  # path -> (layer, target), for os-release and the like
        self._dirs: dict[str, int] = {}
        self.files_seen = 0

    @staticmethod
    def _parents(path: str) -> Iterator[str]:
        while "/" in path:
            path = path.rsplit("/", 1)[0]
            yield path
        yield ""

    def add(self, path: str, entry: Entry) -> None:
        if path not in self.entries:
            for d in self._parents(path):
                self._dirs[d] = self._dirs.get(d, 0) + 1
        self.entries[path] = entry

    def _remove(self, path: str) -> None:
        del self.entries[path]
        for d in self._parents(path):
            n = self._dirs[d] - 1
            if n:
                self._dirs[d] = n
            else:
                del self._dirs[d]

    def _drop(self, path: str, layer: int, include_self: bool) -> None:
        if include_self:
            e = self.entries.get(path)
            if e is not None and e.layer < layer:
                self._remove(path)
            s = self.symlinks.get(path)
            if s is not None and s[0] < layer:
                del self.symlinks[path]
        if path in self._dirs:
            start = path + "/" if path else ""
            for p in [p for p, e in self.entries.items() if p.startswith(start) and e.layer < layer]:
                self._remove(p)
        if self.symlinks:
            start = path + "/" if path else ""
            for p in [p for p, s in self.symlinks.items() if p.startswith(start) and s[0] < layer]:
                del self.symlinks[p]

    def whiteout(self, path: str, layer: int) -> None:
        self._drop(path, layer, include_self=True)

    def opaque(self, directory: str, layer: int) -> None:
        self._drop(directory, layer, include_self=False)

    def replace(self, path: str, layer: int) -> None:
        """A non-directory entry at `path` in `layer`: what lower layers had there (and below, if it was a
        directory) is gone."""
        self._drop(path, layer, include_self=True)

    def resolve(self, path: str, depth: int = 8) -> str:
        """Follow symlinks recorded for `path` (relative or absolute targets)."""
        while depth and path in self.symlinks:
            target = self.symlinks[path][1]
            base = posixpath.dirname(path)
            path = normalise(target if target.startswith("/") else posixpath.join(base, target))
            depth -= 1
        return path

    def get(self, path: str) -> Entry | None:
        return self.entries.get(self.resolve(path))

    def by_reader(self, reader: str) -> Iterator[tuple[str, Entry]]:
        for p, e in self.entries.items():
            if e.reader == reader:
                yield p, e


def normalise(name: str) -> str:
    p = posixpath.normpath("/" + name).lstrip("/")
    return "" if p == "." else p


def read_layer(tree: Tree, layer: int, digest: str, raw: RawReader, collectors: Iterable[Collector],
               symlink_wanted: Callable[[str], bool] = lambda p: False) -> None:
    """Apply one layer's tar stream to `tree`."""
    collectors = list(collectors)
    f = _Decompressed(raw)
    try:
        tar = tarfile.open(fileobj=f, mode="r|", bufsize=READ_SIZE)  # type: ignore[call-overload]
    except tarfile.TarError as e:
        raise LayerFormatError(f"layer {digest} is not a tar archive: {e}") from None
    seen_here: dict[str, Entry] = {}
    try:
        for member in tar:
            path = normalise(member.name)
            if not path:
                continue
            base, leaf = posixpath.split(path)
            if leaf == OPAQUE:
                tree.opaque(base, layer)
                continue
            if leaf.startswith(WHITEOUT):
                tree.whiteout(posixpath.join(base, leaf[len(WHITEOUT):]), layer)
                continue
            if not member.isdir():
                tree.replace(path, layer)
            if member.issym():
                if symlink_wanted(path):
                    tree.symlinks[path] = (layer, member.linkname)
                continue
            if member.islnk():  # a hard link to an earlier member of this layer: same content
                target = seen_here.get(normalise(member.linkname))
                if target is not None:
                    tree.add(path, Entry(layer, digest, target.reader, target.result))
                continue
            if not member.isreg():
                continue
            tree.files_seen += 1
            for c in collectors:
                if c.wants(path, member):
                    fileobj = tar.extractfile(member)
                    if fileobj is None:
                        break
                    result = c.read(path, fileobj, member.size)
                    if result is not None:
                        entry = Entry(layer, digest, c.name, result)
                        tree.add(path, entry)
                        seen_here[path] = entry
                    break
    except (tarfile.TarError, EOFError, zlib.error) as e:
        raise LayerFormatError(f"layer {digest} is not a readable tar archive: {e}") from None
    except Exception as e:
        if type(e).__name__ == "ZstdError":
            raise LayerFormatError(f"layer {digest}: bad zstd data: {e}") from None
        raise
    finally:
        tar.close()
