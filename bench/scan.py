"""Scanner benchmark: scan time and peak RSS for an image of about 500 MB with thousands of packages, and
matching time against a database of 100,000 advisories.

    python bench/scan.py [--work DIR] [--os-mb 250] [--py-mb 200] [--npm 3000] [--py-synth 1500]
                         [--advisories 100000] [--rounds 3]

The image (built once in --work, then reused): layer 1 is this machine's real dpkg status (every package
installed here), /etc/os-release and real binaries and libraries from /usr/bin and /usr/lib (ELF files the
Go reader must stream through), gzip; layer 2 is the real site-packages of Berth's venv (real dist-info),
plus generated npm packages and Python dist-info folders, gzip; layer 3 (zstd) deletes a few of them with
whiteouts. Each scan runs in a fresh child process (`--child`), so its peak RSS (ru_maxrss) is the scan's
alone plus the interpreter. The advisories are generated OSV records, a third naming packages of the image,
imported from per-ecosystem zip archives into a fresh SQLite store, then matched against the inventory.

Targets (issue 8): the scan streams at >= 100 MB/s of layer data and stays under 200 MiB.

Measured here (2 shared cores; image 141 MB compressed, 504 MB of tar, 18,051 files, 5,093 packages), median
of 5 child runs, old and new code alternated at load 8-10: CPU per scan 1.14-1.17 s = 121-124 MB of
compressed layer data per CPU-second (before berth/scanning/tar.py: 1.95-2.39 s = 59-72 MB/CPU-s), of which
ISA-L inflate ~0.9 s; wall 2.4-2.5 s at that load (before: 2.8-9.4 s), best round 1.2 s (116 MB/s); peak
RSS 54-56 MiB (before: 78-92 MiB). The scan is now bound by inflate, which runs on its own thread beside
the tar parsing. 100,000 advisories: import 18.7 s at load 5.5 (45-138 s at load 9-15), re-import of the
same data (all unchanged) 18.7 s; matching the image (33,334 candidate entries, 21,280 findings) 5.1 s
wall, 0.84 s fetch + 1.44 s CPU match.
"""

from __future__ import annotations

import argparse
import asyncio
import gzip
import io
import json
import os
import random
import resource
import statistics
import subprocess
import sys
import tarfile
import tempfile
import time
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def _add_bytes(t: tarfile.TarFile, name: str, data: bytes, mode: int = 0o644) -> None:
    info = tarfile.TarInfo(name)
    info.size, info.mode, info.mtime = len(data), mode, 1_700_000_000
    t.addfile(info, io.BytesIO(data))


def _add_tree(t: tarfile.TarFile, src: Path, prefix: str, budget: int) -> int:
    used = 0
    for dirpath, dirs, files in os.walk(src):
        dirs.sort()
        for f in sorted(files):
            p = Path(dirpath) / f
            if p.is_symlink() or not p.is_file():
                continue
            size = p.stat().st_size
            if used + size > budget:
                continue
            t.add(p, arcname=f"{prefix}/{p.relative_to(src)}", recursive=False)
            used += size
    return used


def build(work: Path, os_mb: int, py_mb: int, npm: int, py_synth: int) -> list[Path]:
    layers = [work / "layer0.tar.gz", work / "layer1.tar.gz", work / "layer2.tar.zst"]
    if all(p.exists() for p in layers):
        return layers
    work.mkdir(parents=True, exist_ok=True)
    rng = random.Random(8)
    with gzip.open(layers[0], "wb", compresslevel=6) as gz, tarfile.open(fileobj=gz, mode="w|") as t:
        _add_bytes(t, "etc/os-release", Path("/etc/os-release").read_bytes())
        _add_bytes(t, "var/lib/dpkg/status", Path("/var/lib/dpkg/status").read_bytes())
        used = _add_tree(t, Path("/usr/bin"), "usr/bin", os_mb << 19)
        _add_tree(t, Path("/usr/lib/x86_64-linux-gnu"), "usr/lib/x86_64-linux-gnu", (os_mb << 20) - used)
    import site

    site_dir = Path(next(p for p in site.getsitepackages() if p.endswith("site-packages")))
    with gzip.open(layers[1], "wb", compresslevel=6) as gz, tarfile.open(fileobj=gz, mode="w|") as t:
        _add_tree(t, site_dir, "usr/local/lib/python3.11/site-packages", py_mb << 20)
        for i in range(npm):
            name = f"pkg-{i:05d}"
            _add_bytes(t, f"srv/app/node_modules/{name}/package.json",
                       json.dumps({"name": name, "version": f"1.{i % 40}.{i % 7}", "main": "index.js",
                                   "description": "x" * 200}).encode())
            _add_bytes(t, f"srv/app/node_modules/{name}/index.js", os.urandom(512).hex().encode())
        for i in range(py_synth):
            _add_bytes(t, f"opt/py/lib/synth{i}-2.{i % 30}.dist-info/METADATA",
                       f"Metadata-Version: 2.1\nName: synth{i}\nVersion: 2.{i % 30}\n\n{'d' * rng.randint(100, 4000)}"
                       .encode())
    import zstandard

    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as t:
        for i in range(0, npm, 10):
            _add_bytes(t, f"srv/app/node_modules/.wh.pkg-{i:05d}", b"")
    layers[2].write_bytes(zstandard.ZstdCompressor().compress(buf.getvalue()))
    return layers


def child(layers: list[str], out: str) -> None:
    from berth.scanning.inventory import read_inventory

    t0, c0 = time.perf_counter(), time.process_time()
    inv = read_inventory(layers, lambda p: open(p, "rb"))
    elapsed, cpu = time.perf_counter() - t0, time.process_time() - c0
    rss_kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    Path(out).write_text(json.dumps({"seconds": elapsed, "cpu": cpu, "rss_mib": rss_kib / 1024,
                                     "inventory": inv.to_json()}))


def advisories(work: Path, inventory: dict, n: int) -> list[Path]:
    """n generated OSV records in per-ecosystem zip archives; a third name packages of the image."""
    rng = random.Random(100_000)
    pkgs = inventory["packages"]
    eco_of = {"dpkg": "Debian:12", "python": "PyPI", "npm": "npm", "go": "Go"}
    archives: dict[str, zipfile.ZipFile] = {}
    paths = []
    for i in range(n):
        if i % 3 == 0 and pkgs:
            p = rng.choice(pkgs)
            eco, name = eco_of.get(p["kind"], "PyPI"), (p.get("source") or p["name"])
        else:
            eco = rng.choice(["Debian:12", "Debian:11", "PyPI", "npm", "Go"])
            name = f"other-{rng.randint(0, 50_000)}"
        if eco not in archives:
            paths.append(work / f"osv-{eco.replace(':', '-')}.zip")
            archives[eco] = zipfile.ZipFile(paths[-1], "w", zipfile.ZIP_DEFLATED)
        fixed = f"{rng.randint(0, 3)}.{rng.randint(0, 40)}.{rng.randint(0, 9)}"
        doc = {"id": f"BENCH-{i:06d}", "modified": "2024-01-01T00:00:00Z", "aliases": [f"CVE-2099-{i:06d}"],
               "summary": "generated", "severity": [{"type": "CVSS_V3",
                                                     "score": "CVSS:3.1/AV:N/AC:L/PR:N/UI:N/S:U/C:H/I:N/A:N"}],
               "affected": [{"package": {"ecosystem": eco, "name": name},
                             "ranges": [{"type": "ECOSYSTEM", "events": [{"introduced": "0"}, {"fixed": fixed}]}]}]}
        archives[eco].writestr(f"BENCH-{i:06d}.json", json.dumps(doc))
    for z in archives.values():
        z.close()
    return paths


async def match_bench(work: Path, inventory: dict, n: int) -> dict[str, float]:
    from berth.db import scanning as qs
    from berth.db.migrate import sqlalchemy_url, upgrade
    from berth.db.sqlite import SqliteBackend
    from berth.scanning import matching
    from berth.scanning.model import Inventory
    from berth.scanning.vulndb import import_paths

    db_path = work / "vulndb.sqlite"
    if db_path.exists():
        db_path.unlink()
    upgrade(sqlalchemy_url("", db_path))
    archives = advisories(work, inventory, n)
    db = SqliteBackend(db_path)
    try:
        t0 = time.perf_counter()
        report = await import_paths(db, archives)
        imported = time.perf_counter() - t0
        t0 = time.perf_counter()
        again = await import_paths(db, archives)
        reimported = time.perf_counter() - t0
        inv = Inventory.from_json(inventory)
        t0 = time.perf_counter()
        rows = await db.read(qs.affected_for, matching.pairs(inv, True))
        found = matching.find(inv, rows, enhanced=True)
        matched = time.perf_counter() - t0
    finally:
        await db.close()
    return {"records": report.read, "import_s": imported, "reimport_unchanged_s": reimported,
            "unchanged": again.unchanged, "candidates": len(rows), "findings": len(found), "match_s": matched}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--work", type=Path, default=Path(tempfile.gettempdir()) / "berth-bench-scan")
    ap.add_argument("--os-mb", type=int, default=250)
    ap.add_argument("--py-mb", type=int, default=200)
    ap.add_argument("--npm", type=int, default=3000)
    ap.add_argument("--py-synth", type=int, default=1500)
    ap.add_argument("--advisories", type=int, default=100_000)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--child", nargs="+")
    args = ap.parse_args()
    if args.child:
        child(args.child[1:], args.child[0])
        return
    t0 = time.perf_counter()
    layers = build(args.work, args.os_mb, args.py_mb, args.npm, args.py_synth)
    compressed = sum(p.stat().st_size for p in layers)
    print(f"image: {len(layers)} layers, {compressed / 1e6:.0f} MB compressed (built/reused in "
          f"{time.perf_counter() - t0:.0f} s)")
    results = []
    out = args.work / "child.json"
    for _ in range(args.rounds):
        subprocess.run([sys.executable, __file__, "--child", str(out), *map(str, layers)], check=True,
                       env={**os.environ, "PYTHONPATH": str(ROOT)})
        results.append(json.loads(out.read_text()))
    inv = results[-1]["inventory"]
    kinds: dict[str, int] = {}
    for p in inv["packages"]:
        kinds[p["kind"]] = kinds.get(p["kind"], 0) + 1
    secs = [r["seconds"] for r in results]
    cpus = [r["cpu"] for r in results]
    rss = [r["rss_mib"] for r in results]
    med = statistics.median(secs)
    print(f"packages: {len(inv['packages'])} {kinds}; files seen {inv['filesSeen']}")
    print(f"scan: median {med:.2f} s over {args.rounds} rounds (spread {min(secs):.2f}-{max(secs):.2f}) = "
          f"{compressed / 1e6 / med:.0f} MB/s of compressed layer data; peak RSS {max(rss):.0f} MiB "
          f"(targets: >= 100 MB/s, < 200 MiB)")
    cpu = statistics.median(cpus)
    print(f"scan CPU time: median {cpu:.2f} s = {compressed / 1e6 / cpu:.0f} MB/s of compressed layer data per "
          f"core (wall time above includes waiting for a "
          f"core on this shared machine; load {os.getloadavg()[0]:.1f})")
    if args.advisories:
        m = asyncio.run(match_bench(args.work, inv, args.advisories))
        print(f"vulndb: imported {m['records']} advisories in {m['import_s']:.1f} s; the same again (unchanged "
              f"{m['unchanged']}) in {m['reimport_unchanged_s']:.1f} s")
        print(f"match: {m['candidates']} candidate entries, {m['findings']} findings in {m['match_s']:.2f} s")


if __name__ == "__main__":
    main()
