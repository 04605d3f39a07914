"""Debian 13 (or unstable) packages fetched and unpacked for a test, used by tests/support/trixie_skopeo.py: private apt
sources, lists and cache (the machine's apt state is not touched), `apt-get download`, `dpkg-deb -x`."""

from __future__ import annotations

import subprocess
from pathlib import Path

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


def unpack(root: Path, packages: tuple[str, ...], suite: str = "trixie") -> Path:
    """`root` with the packages of Debian `suite` unpacked into it (once; reused while root exists)."""
    done = root / ".unpacked"
    if done.exists():
        return root
    apt = root.parent / f"{root.name}-apt"
    for d in ("lists/partial", "cache/archives/partial", "debs"):
        (apt / d).mkdir(parents=True, exist_ok=True)
    (apt / "sources.list").write_text(f"deb [signed-by=/usr/share/keyrings/debian-archive-keyring.gpg] "
                                      f"{archive_uri()} {suite} main\n")
    opts = ["-o", f"Dir::Etc::sourcelist={apt / 'sources.list'}", "-o", "Dir::Etc::sourceparts=/nonexistent",
            "-o", f"Dir::State::lists={apt / 'lists'}", "-o", f"Dir::Cache={apt / 'cache'}",
            "-o", "APT::Get::List-Cleanup=0", "-o", "Debug::NoLocking=1",
            "-o", "Acquire::Languages=none"]  # no Translation-* lists: only Packages is read
    subprocess.run(["apt-get", *opts, "update", "-qq"], check=True, capture_output=True, timeout=600)
    subprocess.run(["apt-get", *opts, "download", *packages], check=True, capture_output=True, timeout=600,
                   cwd=apt / "debs")
    root.mkdir(parents=True, exist_ok=True)
    for deb in (apt / "debs").glob("*.deb"):
        subprocess.run(["dpkg-deb", "-x", str(deb), str(root)], check=True, timeout=120)
    done.write_text("")
    return root
