"""An image's inventory: stream its layers (bottom to top) through the readers; what survives is inside."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import replace

from berth.scanning import layers
from berth.scanning.layers import RawReader, Tree
from berth.scanning.model import Inventory, OsRelease, Package
from berth.scanning.readers import collectors, npm, osrelease


class _Counting:
    def __init__(self, raw: RawReader) -> None:
        self.raw = raw
        self.n = 0

    def read(self, n: int) -> bytes:
        data = self.raw.read(n)
        self.n += len(data)
        return data


def read_inventory(layer_digests: Sequence[str], open_blob: Callable[[str], RawReader]) -> Inventory:
    """Blocking (run it on a worker thread). `open_blob(digest)` opens a layer's bytes, e.g. BlobStore.open;
    the reader is closed here if it has `close`."""
    tree = Tree()
    readers = collectors()
    total = 0
    for i, digest in enumerate(layer_digests):
        raw = open_blob(digest)
        counting = _Counting(raw)
        try:
            layers.read_layer(tree, i, digest, counting, readers, symlink_wanted=lambda p: p in osrelease.PATHS)
        finally:
            close = getattr(raw, "close", None)
            if close is not None:
                close()
        total += counting.n
    os_release: OsRelease | None = None
    for path in osrelease.PATHS:
        entry = tree.get(path)
        if entry is not None and isinstance(entry.result, OsRelease):
            os_release = entry.result
            break
    packages: list[Package] = []
    for path, entry in sorted(tree.entries.items()):
        if isinstance(entry.result, list) and path.endswith(npm.LOCKS):
            base = path.rsplit("/", 1)[0] + "/" if "/" in path else ""
            # a locked package the image also installs is reported once, from its package.json
            packages.extend(replace(p, path=path, layer=entry.layer_digest, source=None) for p in entry.result
                            if f"{base}{p.source}/package.json" not in tree.entries)
        elif isinstance(entry.result, list):
            # the path it survives at (a hard link's, not its target's), keeping "!/inner" of nested archives
            packages.extend(replace(p, path=path + p.path[len(p.path.split("!/")[0]):], layer=entry.layer_digest)
                            for p in entry.result)
    return Inventory(os_release, packages, tree.files_seen, total)
