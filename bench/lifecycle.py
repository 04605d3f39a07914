"""Lifecycle evaluation at scale on the embedded default (issue 7): time and peak RSS.

    python bench/lifecycle.py [--repositories 200] [--manifests 20000] [--blobs 100000] [--apply]

A real SQLite metadata store (migrated, synchronous=FULL as served) in a temporary directory, filled with
sqlite3 in bulk: --blobs blobs, --manifests image manifests spread over --repositories repositories (each
manifest one config and four layers, a fifth of them shared across images; a third of the images tagged,
one index per ten images over two children, one signature per twenty), push and pull times spread over a
year. Every repository gets the same four-rule policy (keep 5 release tags, transition what nobody pulled
for 180 days, expire untagged after 14 days, expire archived after a year). Measured: a dry run of every
repository (LifecycleService.run_all(dry_run=True): read the snapshot, evaluate), then, with --apply, a real
run that applies every action (one transaction each). Peak RSS is the process's VmHWM. Targets: under 60 s
and under 300 MiB.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import json
import random
import resource
import sqlite3
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from berth.db.migrate import sqlalchemy_url, upgrade  # noqa: E402
from berth.db.sqlite import SqliteBackend  # noqa: E402
from berth.lifecycle.service import LifecycleService  # noqa: E402

ACCOUNT, REGION = "123456789012", "us-east-1"
NOW = time.time()
DAY = 86400.0
OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_INDEX = "application/vnd.oci.image.index.v1+json"
POLICY = json.dumps({"rules": [
    {"rulePriority": 1, "selection": {"tagStatus": "tagged", "tagPrefixList": ["release-"],
                                      "countType": "imageCountMoreThan", "countNumber": 5},
     "action": {"type": "expire"}},
    {"rulePriority": 2, "selection": {"tagStatus": "tagged", "tagPatternList": ["*"], "countType": "sinceImagePulled",
                                      "countUnit": "days", "countNumber": 180},
     "action": {"type": "transition", "targetStorageClass": "archive"}},
    {"rulePriority": 3, "selection": {"tagStatus": "untagged", "countType": "sinceImagePushed", "countUnit": "days",
                                      "countNumber": 14}, "action": {"type": "expire"}},
    {"rulePriority": 4, "selection": {"tagStatus": "any", "storageClass": "archive",
                                      "countType": "sinceImageTransitioned", "countUnit": "days", "countNumber": 365},
     "action": {"type": "expire"}},
]})


def digest(seed: str) -> str:
    return "sha256:" + hashlib.sha256(seed.encode()).hexdigest()


def fill(path: Path, repositories: int, manifests: int, blobs: int) -> dict[str, int]:
    rnd = random.Random(7)
    conn = sqlite3.connect(path)
    conn.execute("PRAGMA journal_mode=WAL")
    blob_digests = [digest(f"blob-{i}") for i in range(blobs)]
    conn.executemany("INSERT INTO blobs (digest, size, created_at) VALUES (?, ?, ?)",
                     [(d, 1000 + i, NOW) for i, d in enumerate(blob_digests)])
    per_repo = manifests // repositories
    blobs_per_repo = blobs // repositories
    counts = {"manifests": 0, "tags": 0, "indexes": 0, "referrers": 0, "links": 0}
    for r in range(repositories):
        cur = conn.execute("INSERT INTO repositories (account_id, region, name, created_at) VALUES (?, ?, ?, ?)",
                           (ACCOUNT, REGION, f"team/app-{r:03d}", NOW - 400 * DAY))
        repo_id = cur.lastrowid
        mine = blob_digests[r * blobs_per_repo:(r + 1) * blobs_per_repo]
        conn.executemany("INSERT INTO repository_blobs (repository_id, digest, created_at) VALUES (?, ?, ?)",
                         [(repo_id, d, NOW) for d in mine])
        counts["links"] += len(mine)
        rows, refs, tags = [], [], []
        images: list[str] = []
        for m in range(per_repo):
            pushed = NOW - rnd.uniform(0, 365) * DAY
            pulled = None if rnd.random() < 0.3 else pushed + rnd.uniform(0, NOW - pushed) * 0.999
            d = digest(f"m-{r}-{m}")
            kind = "index" if m % 10 == 9 and len(images) >= 2 else ("sig" if m % 20 == 3 and images else "image")
            subject = images[-1] if kind == "sig" else None
            media = OCI_INDEX if kind == "index" else OCI_MANIFEST
            rows.append((repo_id, d, media, None, subject, None, b"{}", 5000, pushed, pulled))
            if kind == "index":
                refs += [(repo_id, d, c, "manifest") for c in images[-2:]]
                counts["indexes"] += 1
            else:
                layers = rnd.sample(mine, 5)
                refs += [(repo_id, d, layers[0], "config")] + [(repo_id, d, x, "layer") for x in layers[1:]]
                counts["referrers"] += kind == "sig"
                if kind == "image":
                    images.append(d)
            if kind != "sig" and m % 3 == 0:
                tags.append((repo_id, f"release-{m}" if m % 2 else f"build-{m}", d, pushed))
        conn.executemany("INSERT INTO manifests (repository_id, digest, media_type, artifact_type, subject_digest, "
                         "annotations, body, image_size, pushed_at, last_pulled_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, "
                         "?, ?)", rows)
        conn.executemany("INSERT OR IGNORE INTO manifest_refs (repository_id, manifest_digest, child_digest, kind) "
                         "VALUES (?, ?, ?, ?)", refs)
        conn.executemany("INSERT INTO tags (repository_id, name, digest, updated_at) VALUES (?, ?, ?, ?)", tags)
        conn.execute("INSERT INTO lifecycle_policies (repository_id, policy_text, updated_at) VALUES (?, ?, ?)",
                     (repo_id, POLICY, NOW))
        counts["manifests"] += len(rows)
        counts["tags"] += len(tags)
    conn.commit()
    conn.close()
    return counts


def peak_rss_mib() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


async def measure(path: Path, apply: bool) -> list[tuple[str, float, int, float]]:
    db = SqliteBackend(path)
    out = []
    try:
        service = LifecycleService(db, clock=lambda: NOW)
        start = time.perf_counter()
        dry = await service.run_all(dry_run=True)
        out.append(("evaluate all repositories (dry run)", time.perf_counter() - start, len(dry), peak_rss_mib()))
        if apply:
            start = time.perf_counter()
            done = await service.run_all()
            applied = sum(o.result in ("expired", "transitioned") for o in done)
            out.append(("apply every action", time.perf_counter() - start, applied, peak_rss_mib()))
    finally:
        await db.close()
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--repositories", type=int, default=200)
    p.add_argument("--manifests", type=int, default=20_000)
    p.add_argument("--blobs", type=int, default=100_000)
    p.add_argument("--apply", action="store_true", help="also apply every action (one transaction each)")
    args = p.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "berth.db"
        upgrade(sqlalchemy_url("", path))
        start = time.perf_counter()
        counts = fill(path, args.repositories, args.manifests, args.blobs)
        print(f"filled in {time.perf_counter() - start:.1f} s: {args.repositories} repositories, {args.blobs} blobs, "
              + ", ".join(f"{v} {k}" for k, v in counts.items()))
        rows = asyncio.run(measure(path, args.apply))
    print(f"{'step':<40} {'seconds':>8} {'actions':>8} {'peak RSS MiB':>13}")
    for name, seconds, actions, rss in rows:
        print(f"{name:<40} {seconds:>8.2f} {actions:>8} {rss:>13.1f}")
    print("targets: under 60 s and under 300 MiB")


if __name__ == "__main__":
    main()
