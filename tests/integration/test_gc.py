"""Garbage collection against a real `berth serve`, with real clients (skopeo, the aws CLI) and `berth gc`.

- A layer an image uses cannot be deleted over /v2 (it answered 202 and left the image's layer 404).
- End to end: push with skopeo, delete with the aws CLI and skopeo, `berth gc`: the bytes on disk fall by
  exactly what no remaining image uses, and what remains pulls byte for byte.
- The proof of online safety: collections run in a loop (the server's periodic job every second and
  `berth gc` processes beside it) while three clients push, pull, re-tag and delete overlapping images;
  then every acknowledged image is pulled and every digest verified. Errors must be zero.
"""

from __future__ import annotations

import json
import os
import random
import sqlite3
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import asyncpg
import pytest

from tests.support.aws import aws_cli
from tests.support.images import UmociImages, run
from tests.support.oci import OCI_MANIFEST, OciClient, assert_error, dumps, sha256
from tests.support.servers import BerthServer, require_tool

pytestmark = pytest.mark.integration

FAKETIME = "/usr/lib/x86_64-linux-gnu/faketime/libfaketime.so.1"
OCI_CONFIG = "application/vnd.oci.image.config.v1+json"
OCI_LAYER = "application/vnd.oci.image.layer.v1.tar"


def berth_gc(server: BerthServer, *args: str, env: dict[str, str] | None = None) -> dict[str, Any]:
    """`berth gc --json`: its report."""
    cmd = [sys.executable, "-m", "berth", "gc", "--json", "--data-dir", str(server.data_dir), *args]
    if server.database_url:
        cmd += ["--database-url", server.database_url]
    proc = subprocess.run(cmd, env={**os.environ, **server.extra_env, "COLUMNS": "200", **(env or {})},
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr + proc.stdout
    report: dict[str, Any] = json.loads(proc.stdout)
    return report


def blob_bytes(data_dir: Path) -> int:
    return sum(p.stat().st_size for p in (data_dir / "blobs").rglob("*") if p.is_file())


def test_a_layer_an_image_uses_cannot_be_deleted(berth: BerthServer) -> None:
    config, layer = dumps({"os": "linux", "n": os.urandom(4).hex()}), os.urandom(4096)
    body = dumps({"schemaVersion": 2, "mediaType": OCI_MANIFEST,
                  "config": {"mediaType": OCI_CONFIG, "digest": sha256(config), "size": len(config)},
                  "layers": [{"mediaType": OCI_LAYER, "digest": sha256(layer), "size": len(layer)}]})
    with OciClient(berth.url) as c:
        for data in (config, layer):
            assert c.push_blob("gc/refused", data).status_code == 201
        assert c.put_manifest("gc/refused", "v1", body).status_code == 201
        r = c.request("DELETE", f"/v2/gc/refused/blobs/{sha256(layer)}")
        assert_error(r, 405, "UNSUPPORTED")
        assert sha256(body) in r.text  # names the manifest that uses it
        assert c.get_blob("gc/refused", sha256(layer)).content == layer  # the image still pulls
        assert c.request("DELETE", f"/v2/gc/refused/manifests/{sha256(body)}").status_code == 202
        assert c.request("DELETE", f"/v2/gc/refused/blobs/{sha256(layer)}").status_code == 202
        assert c.get_blob("gc/refused", sha256(layer)).status_code == 404


def test_delete_with_aws_cli_and_skopeo_then_berth_gc_frees_the_bytes(umoci_images: UmociImages,
                                                                        tmp_path: Path) -> None:
    require_tool("skopeo")
    server = BerthServer(tmp_path / "data").start()
    try:
        img = umoci_images
        base = f"docker://{server.host}"
        for repo, tag in (("e2e/app", img.app.tag), ("e2e/tiny", img.amd64.tag), ("e2e/tiny", img.arm64.tag)):
            run(["skopeo", "copy", "--dest-tls-verify=false", f"oci:{img.layout.root}:{tag}", f"{base}/{repo}:{tag}"])
        run(["skopeo", "copy", "--dest-tls-verify=false", "--all", f"oci:{img.layout.root}:{img.index_tag}",
             f"{base}/e2e/multi:{img.index_tag}"])
        before = blob_bytes(server.data_dir)
        app_blobs = {d["digest"]: d["size"] for d in
                     [img.layout.json(img.app.digest)["config"], *img.layout.json(img.app.digest)["layers"]]}

        # the aws CLI deletes the app image by tag; skopeo deletes one tiny image by digest
        out = json.loads(aws_cli(server.url, "AKIAANY", "any-secret", tmp_path, "ecr", "batch-delete-image",
                                 "--repository-name", "e2e/app", "--image-ids", f"imageTag={img.app.tag}"))
        assert out["failures"] == [] and out["imageIds"][0]["imageDigest"] == img.app.digest
        run(["skopeo", "delete", "--tls-verify=false", f"{base}/e2e/tiny@{img.arm64.digest}"])

        dry = berth_gc(server, "--dry-run", env={"LD_PRELOAD": FAKETIME, "FAKETIME": "+2h"})
        assert dry["dryRun"] and dry["freed"]["unreferenced"] == {"objects": len(app_blobs),
                                                                   "bytes": sum(app_blobs.values())}
        assert blob_bytes(server.data_dir) == before
        within_grace = berth_gc(server)  # everything was linked a moment ago: nothing goes yet
        assert within_grace["objects"] == 0 and blob_bytes(server.data_dir) == before, within_grace
        # two hours later (libfaketime), with the default grace period and pin hold
        report = berth_gc(server, env={"LD_PRELOAD": FAKETIME, "FAKETIME": "+2h"})
        after = blob_bytes(server.data_dir)
        # the app image's blobs are its own; the tiny arm64 image shares its blobs with the index's child
        assert before - after == sum(app_blobs.values()), report
        assert report["freed"]["unreferenced"] == dry["freed"]["unreferenced"], report
        for repo, ref in (("e2e/tiny", img.amd64.tag), ("e2e/multi", img.index_tag)):
            dest = tmp_path / f"pulled-{ref}"
            run(["skopeo", "copy", "--src-tls-verify=false", "--all", f"{base}/{repo}:{ref}", f"oci:{dest}:x"])
        print(f"berth gc freed {before - after} bytes ({len(app_blobs)} blobs) of {before}: {report}")
    finally:
        server.stop()


# the proof: collections in a loop under three pushing and pulling clients

@dataclass
class Tally:
    pushed: int = 0
    pulled: int = 0
    deleted: int = 0
    errors: list[str] = field(default_factory=list)
    images: dict[str, tuple[str, bytes, list[bytes]]] = field(default_factory=dict)  # digest -> repo, body, blobs
    lock: threading.Lock = field(default_factory=threading.Lock)


POOL = [os.urandom(random.Random(i).randint(2_000, 60_000)) for i in range(16)]  # layers the clients share


def client(url: str, n: int, until: float, tally: Tally) -> None:
    rng = random.Random(n)
    mine: list[str] = []
    with OciClient(url) as c:
        i = 0
        while time.monotonic() < until:
            i += 1
            repo = f"stress/{rng.choice('ab')}"
            layers = rng.sample(POOL, rng.randint(1, 3)) + ([os.urandom(3000)] if rng.random() < 0.3 else [])
            config = dumps({"os": "linux", "client": n, "i": i, "nonce": os.urandom(4).hex()})
            blobs = [config, *layers]
            body = dumps({"schemaVersion": 2, "mediaType": OCI_MANIFEST,
                          "config": {"mediaType": OCI_CONFIG, "digest": sha256(config), "size": len(config)},
                          "layers": [{"mediaType": OCI_LAYER, "digest": sha256(b), "size": len(b)} for b in layers]})
            try:
                for b in blobs:  # as real clients do: HEAD first, upload only what is missing
                    if c.request("HEAD", f"/v2/{repo}/blobs/{sha256(b)}").status_code == 200:
                        continue
                    how = rng.choice([c.push_blob, c.push_blob_post_put, c.push_blob_chunked])
                    r = how(repo, b)
                    if r.status_code != 201:
                        raise AssertionError(f"upload {r.status_code} {r.text[:200]}")
                tag = f"c{n}-{rng.randint(0, 5)}"  # tags are re-pointed: the old image stays, untagged
                r = c.put_manifest(repo, tag, body)
                if r.status_code != 201:
                    raise AssertionError(f"manifest push {r.status_code} {r.text[:200]}")
                with tally.lock:
                    tally.pushed += 1
                    tally.images[sha256(body)] = (repo, body, blobs)
                mine.append(sha256(body))
                # pull one acknowledged image (any client's) and check every digest
                with tally.lock:
                    digest = rng.choice(list(tally.images))
                    prepo, pbody, pblobs = tally.images[digest]
                pull(c, prepo, digest, pbody, pblobs)
                with tally.lock:
                    tally.pulled += 1
                if len(mine) > 4 and rng.random() < 0.4:  # delete one of its own: garbage for the collector
                    victim = mine.pop(rng.randrange(len(mine)))
                    with tally.lock:
                        vrepo = tally.images.pop(victim)[0]
                    r = c.request("DELETE", f"/v2/{vrepo}/manifests/{victim}")
                    if r.status_code != 202:
                        raise AssertionError(f"delete {r.status_code} {r.text[:200]}")
                    with tally.lock:
                        tally.deleted += 1
            except Exception as e:  # noqa: BLE001 - every failure is counted and reported
                with tally.lock:
                    tally.errors.append(f"client {n} op {i}: {e}")


def pull(c: OciClient, repo: str, digest: str, body: bytes, blobs: list[bytes]) -> None:
    r = c.get_manifest(repo, digest)
    if r.status_code != 200 or sha256(r.content) != digest or r.content != body:
        raise AssertionError(f"pull of manifest {digest}: {r.status_code} {r.text[:200]}")
    for b in blobs:
        got = c.get_blob(repo, sha256(b))
        if got.status_code != 200 or sha256(got.content) != sha256(b):
            raise AssertionError(f"pull of blob {sha256(b)} of {digest}: {got.status_code} {got.text[:200]}")


def collections_done(server: BerthServer) -> int:
    sql = "SELECT COUNT(*) FROM jobs WHERE kind = 'gc.collect' AND state = 'done'"
    if server.database_url:
        async def count() -> int:
            conn = await asyncpg.connect(server.database_url)
            try:
                return int(await conn.fetchval(sql))
            finally:
                await conn.close()
        import asyncio
        return asyncio.run(count())
    conn = sqlite3.connect(server.data_dir / "berth.db")
    try:
        return int(conn.execute(sql).fetchone()[0])
    finally:
        conn.close()


@pytest.fixture(params=["sqlite", "postgres"])
def stressed(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[BerthServer]:
    """A server whose periodic collection runs every second, with a 10 s grace period and pin hold."""
    url = request.getfixturevalue("postgres").new_database() if request.param == "postgres" else ""
    env = {"BERTH_GC_INTERVAL_SECONDS": "1", "BERTH_GC_GRACE_SECONDS": "10", "BERTH_GC_PIN_HOLD_SECONDS": "10"}
    server = BerthServer(tmp_path / "data", database_url=url, env=env).start()
    try:
        yield server
    finally:
        server.stop()


def test_collections_in_a_loop_never_break_a_push_or_a_pull(stressed: BerthServer) -> None:
    seconds = float(os.environ.get("GC_STRESS_SECONDS", "30" if os.environ.get("CI") else "60"))
    tally = Tally()
    until = time.monotonic() + seconds
    clients = [threading.Thread(target=client, args=(stressed.url, n, until, tally)) for n in range(3)]
    for t in clients:
        t.start()
    cli_runs = 0
    freed_by_cli = 0
    while time.monotonic() < until:  # beside the server's own collections: `berth gc` processes
        cli_runs += 1
        freed_by_cli += berth_gc(stressed)["objects"]
    for t in clients:
        t.join()
    collections = collections_done(stressed) + cli_runs
    freeing = [line for line in stressed.read_log().splitlines() if "gc: freed" in line]
    freed_in_server = sum(int(line.split("gc: freed ")[1].split()[0]) for line in freeing)
    # every acknowledged image, once more, digest by digest
    final_errors: list[str] = []
    with OciClient(stressed.url) as c:
        for digest, (repo, body, blobs) in tally.images.items():
            try:
                pull(c, repo, digest, body, blobs)
            except AssertionError as e:
                final_errors.append(str(e))
    # and the collector did collect: garbage left by the deletes is gone once past the grace period
    after = berth_gc(stressed, env={"LD_PRELOAD": FAKETIME, "FAKETIME": "+1h"})
    with OciClient(stressed.url) as c:
        for digest, (repo, body, blobs) in tally.images.items():
            try:
                pull(c, repo, digest, body, blobs)
            except AssertionError as e:
                final_errors.append(f"after the last collection: {e}")
    summary = (f"{seconds:.0f} s: {tally.pushed} images pushed, {tally.pulled} pulled while collecting, "
               f"{tally.deleted} deleted, {len(tally.images)} verified at the end; {collections} collections "
               f"({collections - cli_runs} periodic in the server, {len(freeing)} of which freed {freed_in_server} "
               f"objects; {cli_runs} `berth gc`, which freed {freed_by_cli}); errors {len(tally.errors)} during, "
               f"{len(final_errors)} after")
    print(summary)
    print(after)
    assert not tally.errors, f"{summary}; first: {tally.errors[:3]}"
    assert not final_errors, f"{summary}; first: {final_errors[:3]}"
    assert tally.pushed >= 30 and tally.deleted >= 5 and collections >= 10, summary
    assert freed_in_server + freed_by_cli > 0, summary


def test_berth_gc_on_s3_frees_the_objects_of_a_deleted_image(ceph: Any, postgres: Any, tmp_path: Path) -> None:
    """PostgreSQL + S3 (a real radosgw): delete one of two images sharing a layer; `berth gc` spares them
    within the grace period, and with none deletes exactly the deleted image's own objects from the bucket;
    the other image still pulls."""
    from tests.support.oci import random_image

    bucket = ceph.new_bucket("gc")
    url = f"s3://{bucket}/reg?endpoint={ceph.endpoint}&region={ceph.region}"
    env = {"AWS_ACCESS_KEY_ID": ceph.access_key, "AWS_SECRET_ACCESS_KEY": ceph.secret_key}
    server = BerthServer(tmp_path / "data", database_url=postgres.new_database(), env=env,
                         args=["--storage-url", url]).start()
    s3 = ceph.client()

    def keys() -> set[str]:
        pages = s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix="reg/blobs/")
        return {o["Key"].rsplit("/", 1)[1] for page in pages for o in page.get("Contents", [])}

    try:
        kept, gone = random_image(layers=2), random_image(layers=1)
        gone.layers.append(kept.layers[0])  # shared: it must stay
        gone = type(gone)(gone.config, gone.layers, gone.media_type, dumps({
            "schemaVersion": 2, "mediaType": OCI_MANIFEST,
            "config": {"mediaType": OCI_CONFIG, "digest": sha256(gone.config), "size": len(gone.config)},
            "layers": [{"mediaType": OCI_LAYER, "digest": sha256(b), "size": len(b)} for b in gone.layers]}))
        with OciClient(server.url) as c:
            assert c.push_image("s3/app", kept, "kept").status_code == 201
            assert c.push_image("s3/app", gone, "gone").status_code == 201
            assert c.request("DELETE", f"/v2/s3/app/manifests/{gone.digest}").status_code == 202
            before = keys()
            assert berth_gc(server, "--storage-url", url)["objects"] == 0  # within the grace period
            # (libfaketime would skew the S3 signatures: radosgw refuses them) nothing is pushing: no grace
            report = berth_gc(server, "--storage-url", url, "--grace", "0", env={"BERTH_GC_PIN_HOLD_SECONDS": "0"})
            own = {sha256(gone.config).split(":")[1], sha256(gone.layers[0]).split(":")[1]}
            assert report["freed"]["unreferenced"]["objects"] == 2, report
            assert before - keys() == own
            pull(c, "s3/app", kept.digest, kept.body, kept.blobs)
    finally:
        server.stop()
