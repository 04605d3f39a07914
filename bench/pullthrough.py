"""The pull-through cache's first pull against a direct pull from the upstream, with skopeo.

    python bench/pullthrough.py [--size-mib 1024] [--layers 10] [--rounds 1] [--client skopeo|http]
                                [--baseline SRC]

Rounds rotate the order of the direct and the first pull (interleaved); the per-round ratios are printed.
--baseline SRC: a directory holding another `berth` package (e.g. `git archive <commit> berth | tar -x -C SRC`)
whose first pull is measured in the same rounds ("base-first", on its own fresh Berth): before and after, side
by side on the same machine load.

CNCF distribution (Debian `docker-registry`) is the upstream; Berth is the cache, with a pull-through rule
for it. An image of `--layers` random layers (`--size-mib` in all) is built as an OCI layout and pushed
with skopeo to distribution, and directly to Berth. Then, with skopeo into a fresh OCI layout each time:
  direct     from distribution
  first      through Berth's cache (nothing cached: every blob streams from the upstream while it is stored)
  second     through Berth's cache again (all cached)
  own        the same image pushed to Berth directly (Berth's own pull speed)
Targets: first within 1.3x of direct; second about own. Each round starts a fresh Berth (an empty cache).
Every pull is checked (skopeo verifies each digest; the manifest digest is compared; --client http checks
every blob's length). Writes bench/results/pullthrough-<client>.md.
"""

from __future__ import annotations

import argparse
import gzip
import hashlib
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from run import Berth, Distribution, Failed  # noqa: E402

MiB = 1 << 20
LAYER = "application/vnd.oci.image.layer.v1.tar+gzip"
MANIFEST = "application/vnd.oci.image.manifest.v1+json"


def _blob(layout: Path, data_writer, gzipped: bool = False) -> tuple[str, int]:  # type: ignore[no-untyped-def]
    """Write a blob into the layout. A layer is a gzip stream of stored (level 0) blocks: skopeo sees it is
    compressed and copies it as it is (it would compress an uncompressed one on its way to a registry)."""
    tmp = layout / "blobs" / "tmp"
    with open(tmp, "wb") as f:
        out = gzip.GzipFile(fileobj=f, mode="wb", compresslevel=0, mtime=0) if gzipped else f
        for chunk in data_writer():
            out.write(chunk)
        if gzipped:
            out.close()
    h = hashlib.sha256()
    with open(tmp, "rb") as f:
        while chunk := f.read(8 * MiB):
            h.update(chunk)
    size = tmp.stat().st_size
    digest = h.hexdigest()
    tmp.rename(layout / "blobs" / "sha256" / digest)
    return f"sha256:{digest}", size


def build_layout(root: Path, size_mib: int, layers: int) -> str:
    """An OCI layout tagged `img` with `layers` random layers; its manifest digest."""
    (root / "blobs" / "sha256").mkdir(parents=True)
    (root / "oci-layout").write_text('{"imageLayoutVersion": "1.0.0"}')
    per = size_mib * MiB // layers
    descs = []
    for _ in range(layers):
        digest, size = _blob(root, lambda: (os.urandom(min(8 * MiB, per - o)) for o in range(0, per, 8 * MiB)), True)
        descs.append({"mediaType": LAYER, "digest": digest, "size": size})
    config = json.dumps({"architecture": "amd64", "os": "linux",
                         "rootfs": {"type": "layers", "diff_ids": [d["digest"] for d in descs]}}).encode()
    cdigest, csize = _blob(root, lambda: iter([config]))
    manifest = json.dumps({"schemaVersion": 2, "mediaType": MANIFEST,
                           "config": {"mediaType": "application/vnd.oci.image.config.v1+json",
                                      "digest": cdigest, "size": csize}, "layers": descs}).encode()
    mdigest, msize = _blob(root, lambda: iter([manifest]))
    (root / "index.json").write_text(json.dumps({"schemaVersion": 2, "manifests": [
        {"mediaType": MANIFEST, "digest": mdigest, "size": msize,
         "annotations": {"org.opencontainers.image.ref.name": "img"}}]}))
    return mdigest


def skopeo(*args: str) -> None:
    proc = subprocess.run(["skopeo", *args], capture_output=True, text=True, timeout=1800)
    if proc.returncode != 0:
        raise Failed(f"skopeo {' '.join(args)}: {proc.stderr.strip()[-500:]}")


def pull(host: str, ref: str, out: Path, digest: str) -> float:
    shutil.rmtree(out, ignore_errors=True)
    start = time.perf_counter()
    skopeo("copy", "--src-tls-verify=false", f"docker://{host}/{ref}", f"oci:{out}:x")
    took = time.perf_counter() - start
    got = json.loads((out / "index.json").read_text())["manifests"][0]["digest"]
    if got != digest:
        raise Failed(f"pulled {got}, expected {digest}")
    shutil.rmtree(out, ignore_errors=True)
    return took


def raw_pull(host: str, ref: str, out: Path, digest: str) -> float:
    """The manifest, then every blob over plain HTTP, 4 at a time, read and counted (not hashed): the
    servers' speed without skopeo's (it verifies and writes every byte, ~100 MB/s here)."""
    import http.client
    from concurrent.futures import ThreadPoolExecutor

    name, tag = ref.rsplit(":", 1)
    hostname, port = host.split(":")
    start = time.perf_counter()
    c = http.client.HTTPConnection(hostname, int(port), timeout=300)
    c.request("GET", f"/v2/{name}/manifests/{tag}", headers={"Accept": MANIFEST})
    r = c.getresponse()
    body = r.read()
    if r.status != 200 or "sha256:" + hashlib.sha256(body).hexdigest() != digest:
        raise Failed(f"manifest {ref}: {r.status}")
    doc = json.loads(body)

    def blob(d: dict) -> int:
        conn = http.client.HTTPConnection(hostname, int(port), timeout=300)
        conn.request("GET", f"/v2/{name}/blobs/{d['digest']}")
        resp = conn.getresponse()
        n = 0
        while chunk := resp.read(MiB):
            n += len(chunk)
        conn.close()
        if resp.status != 200 or n != d["size"]:
            raise Failed(f"blob {d['digest']}: {resp.status}, {n} of {d['size']} bytes")
        return n

    with ThreadPoolExecutor(4) as pool:
        list(pool.map(blob, [doc["config"], *doc["layers"]]))
    return time.perf_counter() - start


def wait_cached(berth: Berth, repo: str, digest: str, timeout: float = 120.0) -> None:
    import boto3

    ecr = boto3.client("ecr", endpoint_url=f"http://127.0.0.1:{berth.port}", region_name="us-east-1",
                       aws_access_key_id=berth.KEY, aws_secret_access_key=berth.SECRET)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            found = ecr.describe_images(repositoryName=repo)["imageDetails"]
        except ecr.exceptions.RepositoryNotFoundException:
            found = []
        if any(i["imageDigest"] == digest for i in found):
            return
        time.sleep(0.2)
    raise Failed(f"{repo}@{digest} was not stored within {timeout:.0f} s")


class BaselineBerth(Berth):
    """Berth from another source tree (PYTHONPATH), to measure a change against what it changes."""

    def __init__(self, tmp: Path, src: Path, name: str) -> None:
        super().__init__(tmp, workers=1, name=name)
        self.src = src

    def command(self) -> tuple[list[str], dict[str, str]]:
        cmd, env = super().command()
        return cmd, {**env, "PYTHONPATH": str(self.src)}


def with_rule(berth: Berth, upstream: Distribution) -> Berth:
    import boto3

    berth.start()
    boto3.client("ecr", endpoint_url=f"http://127.0.0.1:{berth.port}", region_name="us-east-1",
                 aws_access_key_id=berth.KEY, aws_secret_access_key=berth.SECRET
                 ).create_pull_through_cache_rule(ecrRepositoryPrefix="hub",
                                                  upstreamRegistryUrl=f"127.0.0.1:{upstream.port}")
    return berth


def timed(which: str, port: int, ref: str, berth: Berth, upstream: Distribution, fetch, out: Path,  # type: ignore[no-untyped-def]
          digest: str, rows: dict[str, list[float]], cpu: dict[str, list[tuple[float, float]]]) -> None:
    """One pull: its time, and the CPU seconds the servers spent on it (for the first pull, until stored)."""
    before = berth.cpu_seconds(), upstream.cpu_seconds()
    rows[which].append(fetch(f"127.0.0.1:{port}", ref, out, digest))
    if which in ("first", "base-first"):
        wait_cached(berth, "hub/library/img", digest)
        if upstream.cpu_seconds() - before[1] < 0.05:
            raise Failed("the first pull took no blob from the upstream: it measured a cache hit")
    cpu[which].append((berth.cpu_seconds() - before[0], upstream.cpu_seconds() - before[1]))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--size-mib", type=int, default=1024)
    ap.add_argument("--layers", type=int, default=10)
    ap.add_argument("--rounds", type=int, default=1)
    ap.add_argument("--client", choices=("skopeo", "http"), default="skopeo",
                    help="skopeo copy into an OCI layout, or plain HTTP GETs (4 blobs at a time, not hashed)")
    ap.add_argument("--baseline", type=Path, help="a source tree with the berth package to compare with")
    args = ap.parse_args()
    fetch = pull if args.client == "skopeo" else raw_pull
    tmp = Path(tempfile.mkdtemp(prefix="berth-bench-ptc-"))
    rows: dict[str, list[float]] = {"direct": [], "first": [], "second": [], "own": []}
    if args.baseline is not None:
        rows["base-first"] = []
    cpu: dict[str, list[tuple[float, float]]] = {k: [] for k in rows}  # (Berth, distribution) CPU s per pull
    upstream = Distribution("distribution", tmp)
    servers = [upstream]
    try:
        digest = build_layout(tmp / "layout", args.size_mib, args.layers)
        upstream.start()
        skopeo("copy", "--dest-tls-verify=false", f"oci:{tmp / 'layout'}:img",
               f"docker://127.0.0.1:{upstream.port}/library/img:1")
        for round_ in range(args.rounds):
            berth = with_rule(Berth(tmp, workers=1, name=f"berth{round_}"), upstream)
            servers.append(berth)
            base = None
            if args.baseline is not None:
                base = with_rule(BaselineBerth(tmp, args.baseline.resolve(), f"base{round_}"), upstream)
                servers.append(base)
            out = tmp / "out"
            order = ["direct", "first"] + (["base-first"] if base is not None else [])
            shift = round_ % len(order)  # interleaved: each pull takes each place in turn
            for which in order[shift:] + order[:shift]:
                if which == "direct":
                    timed(which, upstream.port, "library/img:1", berth, upstream, fetch, out, digest, rows, cpu)
                else:
                    server = berth if which == "first" else base
                    assert server is not None
                    timed(which, server.port, "hub/library/img:1", server, upstream, fetch, out, digest, rows, cpu)
            if base is not None:
                base.stop()
            timed("second", berth.port, "hub/library/img:1", berth, upstream, fetch, out, digest, rows, cpu)
            # Only now the same image pushed to Berth directly: pushed before, its blobs (one content-addressed
            # store) would already be there and the "first" pull would never fetch a blob from the upstream.
            skopeo("copy", "--dest-tls-verify=false", f"oci:{tmp / 'layout'}:img",
                   f"docker://127.0.0.1:{berth.port}/own/img:1")
            timed("own", berth.port, "own/img:1", berth, upstream, fetch, out, digest, rows, cpu)
            berth.stop()
    finally:
        for s in servers:
            s.stop()
        shutil.rmtree(tmp, ignore_errors=True)
    med = {k: statistics.median(v) for k, v in rows.items()}
    mb = args.size_mib * MiB / 1e6
    lines = [f"# Pull-through cache: {args.size_mib} MiB in {args.layers} layers, {args.client}, "
             f"median of {args.rounds} round(s)", "",
             "| pull | seconds | MB/s | vs direct | target |", "|---|---|---|---|---|"]
    targets = {"direct": "", "first": "<= 1.30x direct", "second": "~ own", "own": "", "base-first": "baseline"}
    for k in rows:
        lines.append(f"| {k} | {med[k]:.2f} | {mb / med[k]:.0f} | {med[k] / med['direct']:.2f}x | {targets[k]} |")
    ratios = [f / d for f, d in zip(rows["first"], rows["direct"], strict=True)]
    if args.baseline is not None:
        base_ratios = [f / d for f, d in zip(rows["base-first"], rows["direct"], strict=True)]
    lines += ["", f"first / direct = {med['first'] / med['direct']:.2f} (target 1.30); "
              f"second / own = {med['second'] / med['own']:.2f}", "",
              f"per round, first / direct: {', '.join(f'{r:.2f}' for r in ratios)} (median "
              f"{statistics.median(ratios):.2f}, min {min(ratios):.2f}, max {max(ratios):.2f})",
              *([f"per round, base-first / direct: {', '.join(f'{r:.2f}' for r in base_ratios)} (median "
                 f"{statistics.median(base_ratios):.2f})"] if args.baseline is not None else []),
              "seconds per round: " + "; ".join(f"{k} " + " ".join(f"{x:.2f}" for x in v) for k, v in rows.items()),
              "server CPU seconds per pull (median; Berth + distribution): " + "; ".join(
                  f"{k} {statistics.median(b for b, _ in v):.2f} + {statistics.median(d for _, d in v):.2f}"
                  for k, v in cpu.items()),
              "Berth CPU seconds per round: " + "; ".join(
                  f"{k} " + " ".join(f"{b:.2f}" for b, _ in cpu[k]) for k in ("first", "base-first") if k in cpu),
              f"load average at the end: {' '.join(f'{x:.1f}' for x in os.getloadavg())}"]
    text = "\n".join(lines) + "\n"
    print(text)
    results = Path(__file__).resolve().parent / "results"
    results.mkdir(exist_ok=True)
    (results / f"pullthrough-{args.client}{'-vs-baseline' if args.baseline else ''}.md").write_text(text)


if __name__ == "__main__":
    main()
