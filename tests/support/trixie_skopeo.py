"""Debian 13's skopeo (built with sigstore, unlike Debian 12's), unpacked with its own libraries and run
through its own dynamic loader; the machine's apt state is not touched (private sources, lists, cache).
The recipe measured in /work/shared/TESTING.md."""

from __future__ import annotations

import subprocess
from pathlib import Path

PACKAGES = ("skopeo", "libc6", "libgpgme11t64", "libassuan9", "libgpg-error0", "libsqlite3-0")
ARCHIVE = "http://deb.debian.org/debian"


def archive_uri() -> str:
    for p in [Path("/etc/apt/sources.list"), *Path("/etc/apt/sources.list.d").glob("*.sources")]:
        if p.exists():
            for line in p.read_text().splitlines():
                if line.startswith("URIs:") and "security" not in line:
                    return line.split(":", 1)[1].strip().split()[0]
                if line.startswith("deb ") and "security" not in line:
                    return line.split()[1]
    return ARCHIVE


def unpack(root: Path) -> list[str]:
    """The argv prefix that runs Debian 13's skopeo (unpacked under `root` once, then reused)."""
    prefix = [str(root / "usr/lib/x86_64-linux-gnu/ld-linux-x86-64.so.2"), "--library-path",
              str(root / "usr/lib/x86_64-linux-gnu"), str(root / "usr/bin/skopeo")]
    if (root / "usr/bin/skopeo").exists():
        return prefix
    apt = root.parent / "apt"
    for d in ("lists/partial", "cache/archives/partial", "debs"):
        (apt / d).mkdir(parents=True, exist_ok=True)
    (apt / "sources.list").write_text(f"deb [signed-by=/usr/share/keyrings/debian-archive-keyring.gpg] "
                                      f"{archive_uri()} trixie main\n")
    opts = ["-o", f"Dir::Etc::sourcelist={apt / 'sources.list'}", "-o", "Dir::Etc::sourceparts=/nonexistent",
            "-o", f"Dir::State::lists={apt / 'lists'}", "-o", f"Dir::Cache={apt / 'cache'}",
            "-o", "APT::Get::List-Cleanup=0", "-o", "Debug::NoLocking=1"]
    subprocess.run(["apt-get", *opts, "update", "-qq"], check=True, capture_output=True, timeout=600)
    subprocess.run(["apt-get", *opts, "download", *PACKAGES], check=True, capture_output=True, timeout=600,
                   cwd=apt / "debs")
    root.mkdir(parents=True, exist_ok=True)
    for deb in (apt / "debs").glob("*.deb"):
        subprocess.run(["dpkg-deb", "-x", str(deb), str(root)], check=True, timeout=120)
    return prefix
