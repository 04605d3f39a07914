"""Read an image's layers as streams, applying whiteouts, and keep only what the inventory readers want.

Each layer is decompressed (gzip, zstd or none, told by its magic bytes, not its media type) and read
by berth/scanning/tar.py as a forward-only stream: nothing is written to disk and nothing is read twice;
the body of a file no reader wants is skipped without being copied. A reader (see
berth/scanning/readers.py) says which paths it wants; a wanted file is handed to it as a capped stream
and only its parsed result (a few package records) is kept. Results are keyed by path, so a later layer
that replaces, whites out (`.wh.<name>`) or hides (`.wh..wh..opq`) a path drops what lower layers said.
Memory is bounded by the readers' caps and the number of packages found, never by a layer's size.
"""

from __future__ import annotations

import posixpath
import queue
import threading
import zlib
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import IO, Any, Protocol, cast

from berth.scanning.tar import Body, Member, TarError, TarStream

try:  # ISA-L's inflate: ~2x zlib's here (bench/scan.py); zlib as the fallback
    from isal import igzip_lib
    from isal import isal_zlib as inflate
except ImportError:  # pragma: no cover - isal is a dependency; keep zlib working without it
    igzip_lib = None  # type: ignore[assignment]
    inflate = zlib  # type: ignore[misc]

BAD_LAYER: tuple[type[BaseException], ...] = (TarError, EOFError, zlib.error, getattr(inflate, "error", zlib.error))
READ_SIZE = 256 * 1024  # compressed bytes per read: the inflater's output stays in cache (~10% faster than 1 MiB)
WHITEOUT = ".wh."
OPAQUE = ".wh..wh..opq"


class LayerFormatError(ValueError):
    """A layer that is not a (compressed) tar archive."""


class RawReader(Protocol):
    def read(self, n: int) -> bytes: ...


def _gunzip() -> Any:
    if igzip_lib is not None:  # igzip's own decompressor: ~10% less CPU than its zlib-compatible one
        return igzip_lib.IgzipDecompressor(flag=igzip_lib.DECOMP_GZIP)
    return zlib.decompressobj(16 + zlib.MAX_WBITS)


def inflated(raw: RawReader) -> Iterator[bytes]:
    """The decompressed bytes of a layer (gzip, zstd or plain, told by its magic), in chunks."""
    head = raw.read(READ_SIZE)
    decoder: Any = None
    gz = head[:2] == b"\x1f\x8b"
    if gz:
        decoder = _gunzip()
    elif head[:4] == b"\x28\xb5\x2f\xfd":
        import zstandard

        decoder = zstandard.ZstdDecompressor().decompressobj()
    data = head
    while data:
        if decoder is None:
            yield data
        else:
            if gz and decoder.eof:  # a gzip member ended with the previous read: another may follow
                decoder = _gunzip()
            out = decoder.decompress(data)
            # gzip members may be concatenated: restart on what follows the end of one
            while gz and decoder.eof and decoder.unused_data:
                rest = decoder.unused_data
                decoder = _gunzip()
                out += decoder.decompress(rest)
            if out:
                yield out
        data = raw.read(READ_SIZE)


class Prefetch:
    """Run an iterator of chunks on its own thread, `depth` chunks ahead (inflate releases the GIL, so the
    decompression of a layer overlaps the parsing of its tar headers). Errors are raised to the consumer;
    `close` stops the thread."""

    _END = object()

    def __init__(self, chunks: Iterator[bytes], depth: int = 4) -> None:
        self._q: queue.Queue[Any] = queue.Queue(depth)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, args=(chunks,), name="layer-inflate", daemon=True)
        self._thread.start()

    def _put(self, item: Any) -> bool:
        while not self._stop.is_set():
            try:
                self._q.put(item, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def _run(self, chunks: Iterator[bytes]) -> None:
        try:
            for c in chunks:
                if not self._put(c):
                    return
            self._put(self._END)
        except BaseException as e:  # handed to the consumer
            self._put(e)

    def __iter__(self) -> Prefetch:
        return self

    def __next__(self) -> bytes:
        item = self._q.get()
        if item is self._END:
            self._q.put(self._END)
            raise StopIteration
        if isinstance(item, BaseException):
            raise item
        return item  # type: ignore[no-any-return]

    def close(self) -> None:
        self._stop.set()
        self._thread.join()


@dataclass(frozen=True, slots=True)
class Entry:
    """What is known about one path: the layer that put it there (index, digest) and a reader's result."""

    layer: int
    layer_digest: str
    reader: str
    result: Any


class Collector(Protocol):
    name: str

    def wants(self, path: str, member: Member) -> bool: ...

    def read(self, path: str, f: IO[bytes], size: int) -> Any:
        """Parse the file (read at most what it needs from `f`); its result, or None for nothing."""


class Tree:
    """The surviving results by path, across layers, with OCI whiteout semantics.

    A whiteout or opaque marker in layer i hides paths from layers below i only, whatever the order
    of the entries inside layer i (the OCI image spec's rule). `_under` indexes the entries below each
    directory, so that a whiteout touches only what it hides, never a scan of every entry."""

    def __init__(self) -> None:
        self.entries: dict[str, Entry] = {}
        self.symlinks: dict[str, tuple[int, str]] = {}  # path -> (layer, target), for os-release and the like
        self._under: dict[str, set[str]] = {}
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
                self._under.setdefault(d, set()).add(path)
        self.entries[path] = entry

    def _remove(self, path: str) -> None:
        del self.entries[path]
        for d in self._parents(path):
            below = self._under[d]
            below.discard(path)
            if not below:
                del self._under[d]

    def _drop(self, path: str, layer: int, include_self: bool) -> None:
        if include_self:
            e = self.entries.get(path)
            if e is not None and e.layer < layer:
                self._remove(path)
            s = self.symlinks.get(path)
            if s is not None and s[0] < layer:
                del self.symlinks[path]
        below = self._under.get(path)
        if below:
            for p in [p for p in below if self.entries[p].layer < layer]:
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
    chunks = Prefetch(inflated(raw))
    try:
        _read_tar(tree, layer, digest, TarStream(chunks), collectors, symlink_wanted)
    except BAD_LAYER as e:
        raise LayerFormatError(f"layer {digest} is not a readable tar archive: {e}") from None
    except Exception as e:
        if type(e).__name__ == "ZstdError":
            raise LayerFormatError(f"layer {digest}: bad zstd data: {e}") from None
        raise
    finally:
        chunks.close()


def _read_tar(tree: Tree, layer: int, digest: str, tar: TarStream, collectors: list[Collector],
              symlink_wanted: Callable[[str], bool]) -> None:
    seen_here: dict[str, Entry] = {}
    for member, end in tar.members():
        path = normalise(member.name)
        if not path:
            continue
        base, _, leaf = path.rpartition("/")
        if leaf.startswith(WHITEOUT):
            if leaf == OPAQUE:
                tree.opaque(base, layer)
            else:
                tree.whiteout(f"{base}/{leaf[len(WHITEOUT):]}" if base else leaf[len(WHITEOUT):], layer)
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
                result = c.read(path, cast(IO[bytes], Body(tar, end, member.size)), member.size)
                if result is not None:
                    entry = Entry(layer, digest, c.name, result)
                    tree.add(path, entry)
                    seen_here[path] = entry
                break
