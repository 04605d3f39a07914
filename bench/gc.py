"""A full garbage collection on a large registry, on the embedded default (SQLite + filesystem).

    python bench/gc.py [--blobs 100000] [--manifests 20000] [--repositories 200] [--garbage 0.2]

Builds, in a temporary directory, a migrated data dir with --repositories repositories of
--manifests / --repositories image manifests each (a config and 4 layers, most layers shared across
images and repositories), --blobs blobs in total, every one a real file under blobs/ and a row in the
metadata, linked two hours ago. A fraction --garbage of the blobs is referenced by no manifest (images
deleted), and 1% of the files have no row at all (a crash left them). Then it runs the real CLI, each
in a fresh process that reports its own peak RSS (VmHWM):

1. `berth gc --dry-run --json`   (walk + mark + sweep, nothing written)
2. `berth gc --json`             (the collection: deletes the garbage, records the unrecorded files)
3. `berth gc --json` again       (nothing left to do: the steady-state cost of the periodic job)

and prints time, peak RSS and what each freed. Targets (issue 7): under 60 s and under 300 MiB.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import sqlite3
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from berth.db.migrate import sqlalchemy_url, upgrade  # noqa: E402

ACCOUNT, REGION = "123456789012", "us-east-1"
OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
LAYERS_PER_IMAGE = 4


def digest(rng: random.Random) -> str:
    return "sha256:" + rng.getrandbits(256).to_bytes(32, "big").hex()


def populate(data: Path, blobs: int, manifests: int, repositories: int, garbage: float, seed: int = 1) -> dict:
    rng = random.Random(seed)
    db_path = data / "berth.db"
    upgrade(sqlalchemy_url("", db_path))
    then = time.time() - 2 * 3600
    all_blobs = [digest(rng) for _ in range(blobs)]
    n_garbage = int(blobs * garbage)
    configs_needed = manifests
    live = all_blobs[n_garbage:]
    configs, layers = live[:configs_needed], live[configs_needed:]
    if len(layers) < LAYERS_PER_IMAGE:
        raise SystemExit("too few blobs for that many manifests")
    conn = sqlite3.connect(db_path)
    conn.execute("PRAGMA synchronous=OFF")
    conn.execute("BEGIN")
    conn.executemany("INSERT INTO repositories (account_id, region, name, created_at) VALUES (?, ?, ?, ?)",
                     [(ACCOUNT, REGION, f"team-{i // 20}/app-{i}", then) for i in range(repositories)])
    repo_ids = [r[0] for r in conn.execute("SELECT id FROM repositories ORDER BY id")]
    size = 512
    conn.executemany("INSERT INTO blobs (digest, size, created_at) VALUES (?, ?, ?)",
                     [(d, size, then) for d in all_blobs])
    conn.executemany("INSERT INTO blob_gc (digest, linked_at) VALUES (?, ?)", [(d, then) for d in all_blobs])
    links: set[tuple[int, str]] = set()
    refs: list[tuple[int, str, str, str]] = []
    rows: list[tuple] = []
    per_repo = manifests // repositories
    used_layers = 0
    for m in range(manifests):
        repo = repo_ids[m // per_repo % repositories]
        config = configs[m]
        # every layer is used at least once (in order), then the rest are drawn from what is used already
        chosen = []
        for _ in range(LAYERS_PER_IMAGE):
            if used_layers < len(layers):
                chosen.append(layers[used_layers])
                used_layers += 1
            else:
                chosen.append(layers[rng.randrange(len(layers))])
        body = json.dumps({"schemaVersion": 2, "mediaType": OCI_MANIFEST,
                           "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": config,
                                      "size": size},
                           "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar", "digest": d,
                                       "size": size} for d in chosen]}).encode()
        mdigest = digest(rng)
        rows.append((repo, mdigest, OCI_MANIFEST, body, size * 5, then))
        for kind, d in [("config", config), *(("layer", d) for d in chosen)]:
            links.add((repo, d))
            refs.append((repo, mdigest, d, kind))
    for i, d in enumerate(all_blobs[:n_garbage]):  # garbage stays linked to a repository (images deleted)
        links.add((repo_ids[i % repositories], d))
    conn.executemany("INSERT INTO manifests (repository_id, digest, media_type, body, image_size, pushed_at) "
                     "VALUES (?, ?, ?, ?, ?, ?)", rows)
    conn.executemany("INSERT OR IGNORE INTO manifest_refs (repository_id, manifest_digest, child_digest, kind) "
                     "VALUES (?, ?, ?, ?)", refs)
    conn.executemany("INSERT INTO repository_blobs (repository_id, digest, created_at) VALUES (?, ?, ?)",
                     [(r, d, then) for r, d in links])
    conn.execute("COMMIT")
    conn.close()
    unrecorded = [digest(rng) for _ in range(blobs // 100)]
    payload = b"x" * size
    root = data / "blobs" / "sha256"
    for i in range(256):
        (root / f"{i:02x}").mkdir(parents=True, exist_ok=True)
    for d in all_blobs + unrecorded:
        hexpart = d.split(":")[1]
        fd = os.open(f"{root}/{hexpart[:2]}/{hexpart}", os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
        os.write(fd, payload)
        os.close(fd)
    return {"blobs": blobs, "garbage": n_garbage, "unrecorded": len(unrecorded), "manifests": manifests,
            "repositories": repositories, "refs": len(refs), "links": len(links)}


def gc(data: Path, *args: str) -> tuple[float, float, dict]:
    """One `berth gc --json` process: (seconds, its peak RSS in MiB, its report)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("BERTH_")}
    env["PYTHONPATH"] = str(ROOT)
    started = time.monotonic()
    with tempfile.NamedTemporaryFile("w+") as hwm:
        env["BENCH_HWM"] = hwm.name
        proc = subprocess.run([sys.executable, "-c", LAUNCH, "gc", "--json", "--data-dir", str(data), *args],
                              env=env, capture_output=True, text=True, cwd=ROOT, timeout=3600)
        seconds = time.monotonic() - started
        if proc.returncode != 0:
            raise SystemExit(proc.stderr)
        kib = int(hwm.read().split()[0])
    return seconds, kib / 1024, json.loads(proc.stdout)


# `berth …` that writes its own VmHWM (the peak RSS of its address space, from exec on) to $BENCH_HWM at exit;
# the kernel's rusage would count the benchmark's own RSS at fork time.
LAUNCH = """
import atexit, os, sys
def hwm():
    with open("/proc/self/status") as f:
        peak = next(line.split()[1] for line in f if line.startswith("VmHWM:"))
    with open(os.environ["BENCH_HWM"], "w") as out:
        out.write(peak)
atexit.register(hwm)
sys.argv = ["berth", *sys.argv[1:]]
from berth.cli import main
main()
"""


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--blobs", type=int, default=100_000)
    ap.add_argument("--manifests", type=int, default=20_000)
    ap.add_argument("--repositories", type=int, default=200)
    ap.add_argument("--garbage", type=float, default=0.2)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="berth-bench-gc-") as tmp:
        data = Path(tmp) / "data"
        data.mkdir()
        started = time.monotonic()
        shape = populate(data, args.blobs, args.manifests, args.repositories, args.garbage)
        print(f"populated in {time.monotonic() - started:.1f} s: {shape}")
        rows = []
        for label, extra in (("dry run", ["--dry-run"]), ("collection", []), ("again (nothing to do)", [])):
            seconds, peak, report = gc(data, *extra)
            rows.append((label, seconds, peak, report))
            print(f"{label:24} {seconds:7.1f} s  peak RSS {peak:6.1f} MiB  freed {report['objects']} objects "
                  f"({report['bytes']} B): {report['freed']}; walked {report['walked']}, "
                  f"newly unrecorded {report['newlyUnrecorded']}, in-process {report['seconds']:.1f} s")
        report = rows[1][3]
        assert report["freed"]["unreferenced"]["objects"] == shape["garbage"], report
        left = sum(1 for _ in (data / "blobs").rglob("*") if _.is_file())
        print(f"files left in storage: {left} (expected {shape['blobs'] - shape['garbage'] + shape['unrecorded']}: "
              "the unrecorded ones go once unrecorded for the grace period)")


if __name__ == "__main__":
    main()
