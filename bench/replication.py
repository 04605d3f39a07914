"""Replication latency: a 1 GiB, 10-layer image pushed to one deployment, timed until another has it.

    python bench/replication.py [--rounds 3] [--layers 10] [--layer-mib 102]

Each round starts a fresh destination deployment (`berth serve`, SQLite, region us-west-2) and a fresh
source (us-east-1, which also serves eu-west-1), configures the peer with `berth peers add`, and one
rule with two destinations: us-west-2 at the peer (copied over /v2, every byte sent) and eu-west-1 of the
source deployment itself (blobs linked, nothing copied). The image is
pushed over /v2 (streamed from files), then DescribeImageReplicationStatus is polled every 20 ms; the
figure is the time from the manifest PUT's 201 to COMPLETE at each destination. The layers are random,
so nothing is deduplicated. All servers listen on 127.0.0.1 and are stopped by PID.

Measured here (2 shared cores, load 6-9 from other work): see the commit message that adds this file.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import httpx  # noqa: E402

from tests.support.aws import call, client  # noqa: E402
from tests.support.servers import BerthServer  # noqa: E402

ACCOUNT = "123456789012"
CHUNK = 1 << 20


def make_layers(work: Path, layers: int, size: int) -> list[tuple[Path, str, int]]:
    out = []
    for i in range(layers):
        path = work / f"layer{i}"
        h = hashlib.sha256()
        with open(path, "wb") as f:
            left = size
            while left:
                block = os.urandom(min(CHUNK * 4, left))
                h.update(block)
                f.write(block)
                left -= len(block)
        out.append((path, "sha256:" + h.hexdigest(), size))
    return out


def stream(path: Path):  # type: ignore[no-untyped-def]
    with open(path, "rb") as f:
        while block := f.read(CHUNK):
            yield block


def push(url: str, name: str, layers: list[tuple[Path, str, int]]) -> tuple[str, float, float]:
    """Push the image; (digest, seconds for the blobs, the moment the manifest PUT answered 201)."""
    config = json.dumps({"architecture": "amd64", "os": "linux",
                         "rootfs": {"type": "layers", "diff_ids": [d for _, d, _ in layers]}}).encode()
    config_digest = "sha256:" + hashlib.sha256(config).hexdigest()
    start = time.monotonic()
    with httpx.Client(base_url=url, timeout=600) as c:
        for path, digest, size in layers:
            r = c.post(f"/v2/{name}/blobs/uploads/", params={"digest": digest}, content=stream(path),
                       headers={"Content-Type": "application/octet-stream", "Content-Length": str(size)})
            assert r.status_code == 201, (r.status_code, r.text)
        r = c.post(f"/v2/{name}/blobs/uploads/", params={"digest": config_digest}, content=config)
        assert r.status_code == 201, r.text
        blobs_done = time.monotonic() - start
        manifest = json.dumps({
            "schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": config_digest,
                       "size": len(config)},
            "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar", "digest": d, "size": s}
                       for _, d, s in layers]}).encode()
        r = c.put(f"/v2/{name}/manifests/v1", content=manifest,
                  headers={"Content-Type": "application/vnd.oci.image.manifest.v1+json"})
        assert r.status_code == 201, r.text
        pushed_at = time.monotonic()
    return "sha256:" + hashlib.sha256(manifest).hexdigest(), blobs_done, pushed_at


def berth_cli(server: BerthServer, *args: str) -> None:
    subprocess.run([sys.executable, "-m", "berth", *args, "--data-dir", str(server.data_dir)], check=True,
                   capture_output=True, timeout=120)


def one_round(work: Path, layers: list[tuple[Path, str, int]]) -> dict[str, float]:
    env = {"PYTHONPATH": str(ROOT)}
    work.mkdir(parents=True)
    dest = BerthServer(work / "dest", env={**env, "BERTH_DEFAULT_REGION": "us-west-2"})
    source = BerthServer(work / "source", env={**env, "BERTH_REGIONS": "eu-west-1"})
    try:
        dest.start()
        source.start()
        berth_cli(source, "peers", "add", "dest", "--endpoint", dest.url, "--access-key-id", "AKIABENCH00000000000",
                  "--secret-access-key", "unused", "--region", "us-west-2", "--account", ACCOUNT)
        ecr = client("ecr", source.url, "AKIABENCH00000000000", "unused")
        out = call(ecr, "PutReplicationConfiguration", {"replicationConfiguration": {"rules": [{"destinations": [
            {"region": "us-west-2", "registryId": ACCOUNT}, {"region": "eu-west-1", "registryId": ACCOUNT}]}]}})
        assert out.error is None, out
        digest, blobs_seconds, pushed_at = push(source.url, "bench/big", layers)
        done: dict[str, float] = {}
        while len(done) < 2:
            got = call(ecr, "DescribeImageReplicationStatus",
                       {"repositoryName": "bench/big", "imageId": {"imageDigest": digest}}).output
            assert got is not None
            for s in got["replicationStatuses"]:
                key = "peer" if s["region"] == "us-west-2" else "local"
                if s["status"] == "COMPLETE" and key not in done:
                    done[key] = time.monotonic() - pushed_at
                assert s["status"] != "FAILED" or time.monotonic() - pushed_at < 600, s
            time.sleep(0.02)
        r = httpx.head(f"{dest.url}/v2/bench/big/manifests/v1",
                       headers={"Accept": "application/vnd.oci.image.manifest.v1+json"})
        assert r.status_code == 200 and r.headers["Docker-Content-Digest"] == digest
        return {"push": blobs_seconds, **done}
    finally:
        source.stop()
        dest.stop()


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--layers", type=int, default=10)
    p.add_argument("--layer-mib", type=int, default=102)  # 10 x 102.4 MiB ~ 1 GiB
    a = p.parse_args()
    size = a.layer_mib * CHUNK + (CHUNK * 2 // 5 if a.layer_mib == 102 else 0)
    with tempfile.TemporaryDirectory(prefix="berth-bench-repl-") as tmp:
        work = Path(tmp)
        layers = make_layers(work, a.layers, size)
        total = sum(s for _, _, s in layers)
        print(f"image: {a.layers} layers, {total / 2**30:.3f} GiB")
        results = []
        for i in range(a.rounds):
            r = one_round(work / f"round{i}", layers)
            results.append(r)
            print(f"round {i + 1}: push {r['push']:.2f}s ({total / r['push'] / 1e6:.0f} MB/s); after the push: "
                  f"peer COMPLETE in {r['peer']:.2f}s ({total / r['peer'] / 1e6:.0f} MB/s), "
                  f"same deployment COMPLETE in {r['local']:.3f}s")
        for key in ("peer", "local"):
            values = [r[key] for r in results]
            print(f"{key}: median {statistics.median(values):.3f}s, min {min(values):.3f}s, max {max(values):.3f}s")


if __name__ == "__main__":
    main()
