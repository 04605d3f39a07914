"""Debian 13's skopeo (built with sigstore, unlike Debian 12's), unpacked with its own libraries and run
through its own dynamic loader; the machine's apt state is not touched (private sources, lists, cache).
The recipe measured in /work/shared/TESTING.md."""

from __future__ import annotations

from pathlib import Path

from tests.support import trixie_debs

PACKAGES = ("skopeo", "libc6", "libgpgme11t64", "libassuan9", "libgpg-error0", "libsqlite3-0")


def unpack(root: Path) -> list[str]:
    """The argv prefix that runs Debian 13's skopeo (unpacked under `root` once, then reused)."""
    trixie_debs.unpack(root, PACKAGES)
    return argv(root)


def argv(root: Path) -> list[str]:
    """The argv prefix that runs Debian 13's skopeo from a root `PACKAGES` are unpacked in."""
    return [str(root / "usr/lib/x86_64-linux-gnu/ld-linux-x86-64.so.2"), "--library-path",
            str(root / "usr/lib/x86_64-linux-gnu"), str(root / "usr/bin/skopeo")]
