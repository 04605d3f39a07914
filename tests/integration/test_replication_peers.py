"""Replication to other Berth deployments (peers) over the OCI API: three real `berth serve` processes.

SOURCE (PostgreSQL, auth none, us-east-1) replicates to PEER_WEST (SQLite, --auth iam, us-west-2: the
copy authenticates with SigV4 GetAuthorizationToken and the registry token it returns) and PEER_EU (SQLite,
auth none, eu-west-1). The peers are configured with the real `berth peers add` command. Images are pushed
to the source with skopeo and pulled from the peers with skopeo by digest. A peer killed while an image is
on its way: the status goes IN_PROGRESS -> FAILED (retries, with the failure code) -> COMPLETE after it is
restarted.
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import asyncpg
import pytest

from tests.support.aws import basic, call, client, registry_token
from tests.support.images import UmociImages, run, sha256_digest
from tests.support.oci import OciClient, random_image
from tests.support.servers import BerthServer, require_tool

ACCOUNT = "123456789012"
EAST, WEST, EU = "us-east-1", "us-west-2", "eu-west-1"
KEY, SECRET = "AKIAPEERWESTADMIN000", "peer-west-admin-secret-0123456789abcdef"


@dataclass
class Three:
    source: BerthServer
    west: BerthServer
    eu: BerthServer
    ecr: Any  # the source's ECR client

    def west_token(self) -> str:
        return registry_token(client("ecr", self.west.url, KEY, SECRET, region=WEST))


def berth_cli(server: BerthServer, *args: str, expect: int = 0) -> str:
    cmd = [sys.executable, "-m", "berth", *args, "--data-dir", str(server.data_dir)]
    if server.database_url:
        cmd += ["--database-url", server.database_url]
    # the server's own settings (its master key file among them), as an operator's shell would have them
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=120, env={**os.environ, **server.extra_env})
    assert done.returncode == expect, done.stdout + done.stderr
    return done.stdout + (done.stderr if expect else "")


@pytest.fixture(scope="module")
def three(postgres: Any, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Three]:
    base = tmp_path_factory.mktemp("peers")
    west = BerthServer(base / "west", args=["--auth", "iam"],
                       env={"BERTH_DEFAULT_REGION": WEST, "BERTH_ADMIN_ACCESS_KEY_ID": KEY,
                            "BERTH_ADMIN_SECRET_ACCESS_KEY": SECRET})
    # the west peer comes from the source's config file ([peers.west], its secret in a file); eu from the CLI
    (base / "west.secret").write_text(SECRET + "\n")
    (base / "source.toml").write_text(f'version = 1\n\n[peers.west]\nendpoint = "{west.url}"\nregions = ["{WEST}"]\n'
                                      f'access-key-id = "{KEY}"\nsecret-access-key-file = "{base / "west.secret"}"\n')
    source = BerthServer(base / "source", database_url=postgres.new_database(), env={"BERTH_LOG_LEVEL": "info"},
                         args=["--auth", "none", "--config", str(base / "source.toml")])
    eu = BerthServer(base / "eu", env={"BERTH_DEFAULT_REGION": EU})
    started: list[BerthServer] = []
    try:
        for s in (source, west, eu):
            started.append(s.start())
        berth_cli(source, "peers", "add", "eu", "--endpoint", eu.url, "--access-key-id", "AKIAANYTHINGATALL000",
                  "--secret-access-key", "unused-with-auth-none", "--region", EU, "--account", ACCOUNT)
        ecr = client("ecr", source.url, "AKIAANYTHINGATALL000", "unused", region=EAST)
        out = call(ecr, "PutReplicationConfiguration", {"replicationConfiguration": {"rules": [
            {"destinations": [{"region": WEST, "registryId": ACCOUNT}, {"region": EU, "registryId": ACCOUNT}]},
            {"destinations": [{"region": EU, "registryId": ACCOUNT}], "deleteReplication": {"enabled": True},
             "repositoryFilters": [{"filter": "mirror/", "filterType": "PREFIX_MATCH"}]}]}})
        assert out.error is None, out
        yield Three(source, west, eu, ecr)
    finally:
        for s in started:
            s.stop()


def status_of(t: Three, name: str, digest: str) -> dict[str, dict[str, Any]]:
    out = call(t.ecr, "DescribeImageReplicationStatus", {"repositoryName": name, "imageId": {"imageDigest": digest}})
    assert out.error is None, out
    return {s["region"]: s for s in out.output["replicationStatuses"]}  # type: ignore[index]


def wait_complete(t: Three, name: str, digest: str, regions: tuple[str, ...] = (WEST, EU),
                  timeout: float = 120.0) -> dict[str, dict[str, Any]]:
    deadline = time.monotonic() + timeout
    while True:
        s = status_of(t, name, digest)
        if all(s.get(r, {}).get("status") == "COMPLETE" for r in regions):
            return s
        assert time.monotonic() < deadline, f"not replicated in {timeout}s: {s}"
        time.sleep(0.2)


def copy_details(t: Three, name: str, digest: str) -> dict[str, str]:
    """How each copy went (the status row's detail), read from the source's PostgreSQL database."""
    async def read() -> dict[str, str]:
        conn = await asyncpg.connect(t.source.database_url)
        try:
            rows = await conn.fetch("SELECT dest_region, detail FROM replication_status WHERE repository = $1 "
                                    "AND digest = $2", name, digest)
        finally:
            await conn.close()
        return {r["dest_region"]: r["detail"] for r in rows}

    return asyncio.run(read())


def img_bytes(images: UmociImages, digest: str) -> int:
    doc = images.layout.json(digest)
    return int(doc["config"]["size"]) + sum(int(layer["size"]) for layer in doc["layers"])


async def _stored_peer_secret(url: str, name: str) -> str:
    import asyncpg

    conn = await asyncpg.connect(url)
    try:
        return str(await conn.fetchval("SELECT secret_access_key FROM replication_peers WHERE name = $1", name))
    finally:
        await conn.close()


def test_peers_cli_lists_and_removes(three: Three) -> None:
    listed = berth_cli(three.source, "peers", "list")
    assert "west" in listed and "eu" in listed and three.west.url in listed
    assert SECRET not in listed  # never shown
    rows = {line.split()[1]: line.split()[-2] for line in listed.splitlines() if line.startswith("│ ")}
    assert (rows["west"], rows["eu"]) == ("file", "cli")  # the last column: "config file" or "cli"
    stored = asyncio.run(_stored_peer_secret(three.source.database_url, "west"))
    assert stored.startswith("enc1:") and SECRET not in stored  # sealed with the master key at rest
    # a peer from the config file is the file's: the CLI neither replaces nor removes it
    for args in (["remove", "west"], ["add", "west", "--endpoint", "http://127.0.0.1:9", "--access-key-id", "AKIAX",
                                      "--secret-access-key", "x", "--region", WEST]):
        refused = berth_cli(three.source, "peers", *args, expect=1)
        assert "config file" in refused
    # the rest on a SQLite deployment (the CLI migrates a PostgreSQL database on every call: slower)
    berth_cli(three.west, "peers", "add", "spare", "--endpoint", "http://127.0.0.1:9", "--access-key-id",
              "AKIASPARE00000000000", "--secret-access-key", "x", "--region", "ap-south-1")
    assert "spare" in berth_cli(three.west, "peers", "list")
    berth_cli(three.west, "peers", "remove", "spare")
    assert "spare" not in berth_cli(three.west, "peers", "list")


def test_skopeo_push_to_one_pull_the_same_digests_from_the_others(three: Three, umoci_images: UmociImages,
                                                                   tmp_path: Path) -> None:
    require_tool("skopeo")
    img = umoci_images.app
    src = f"docker://{three.source.host}/prod/app:v1"
    run(["skopeo", "copy", "--dest-tls-verify=false", f"oci:{umoci_images.layout.root}:app", src])
    run(["skopeo", "copy", "--dest-tls-verify=false", "--all",
         f"oci:{umoci_images.layout.root}:{umoci_images.index_tag}", f"docker://{three.source.host}/prod/app:multi"])
    s = wait_complete(three, "prod/app", img.digest)
    assert {r: v["status"] for r, v in s.items()} == {WEST: "COMPLETE", EU: "COMPLETE"}
    wait_complete(three, "prod/app", umoci_images.index_digest)
    # the same layers in a second repository: at the peers they are mounted from prod/app, not sent again
    run(["skopeo", "copy", "--dest-tls-verify=false", f"oci:{umoci_images.layout.root}:app",
         f"docker://{three.source.host}/prod/again:v1"])
    wait_complete(three, "prod/again", img.digest)
    blobs = len(umoci_images.layout.json(img.digest)["layers"]) + 1
    assert copy_details(three, "prod/app", img.digest) == {
        d: f"1 manifests, blobs: {blobs} sent, {img_bytes(umoci_images, img.digest)} bytes sent" for d in (WEST, EU)}
    assert copy_details(three, "prod/again", img.digest) == {
        d: f"1 manifests, blobs: {blobs} mounted, 0 bytes sent" for d in (WEST, EU)}
    token = three.west_token()
    pulls = {"west": ["--src-creds", f"AWS:{token}", f"docker://{three.west.host}/prod/app"],
             "eu": [f"docker://{three.eu.host}/prod/app"]}
    for where, (*creds, ref) in pulls.items():
        raw = run(["skopeo", "inspect", "--raw", "--tls-verify=false", *[c.replace("--src-creds", "--creds")
                                                                         for c in creds], f"{ref}:v1"]).stdout
        assert sha256_digest(raw.encode()) == img.digest, where
        out = tmp_path / where
        run(["skopeo", "copy", "--src-tls-verify=false", *creds, f"{ref}@{img.digest}", f"oci:{out}:v1"])
        index = json.loads((out / "index.json").read_text())
        assert index["manifests"][0]["digest"] == img.digest
        for layer in json.loads((out / "blobs" / "sha256" / img.digest.split(":")[1]).read_text())["layers"]:
            assert sha256_digest((out / "blobs" / "sha256" / layer["digest"].split(":")[1]).read_bytes()) \
                == layer["digest"]
        multi = run(["skopeo", "inspect", "--raw", "--tls-verify=false",
                     *[c.replace("--src-creds", "--creds") for c in creds], f"{ref}:multi"]).stdout
        assert sha256_digest(multi.encode()) == umoci_images.index_digest, where


def test_a_peer_killed_mid_replication_finishes_after_restart(three: Three) -> None:
    image = random_image(layers=2, layer_size=48 * 1024 * 1024)
    seen: list[tuple[str, str | None]] = []

    def note() -> dict[str, Any]:
        s = status_of(three, "late/app", image.digest).get(EU, {})
        if s and (not seen or seen[-1] != (s["status"], s.get("failureCode"))):
            seen.append((s["status"], s.get("failureCode")))
        return s

    with OciClient(three.source.url) as src, OciClient(three.eu.url) as eu:
        for blob in image.blobs:
            assert src.push_blob("late/app", blob).status_code == 201
        assert src.put_manifest("late/app", "v1", image.body).status_code == 201
        note()
        # the copy creates the repository at the peer, then sends 96 MiB: kill the peer once it has begun
        deadline = time.monotonic() + 60
        while eu.tags("late/app").status_code != 200:
            assert time.monotonic() < deadline, seen
            time.sleep(0.005)
        three.eu.kill()
        try:
            deadline = time.monotonic() + 60
            while note().get("status") != "FAILED":
                assert time.monotonic() < deadline, seen
                time.sleep(0.1)
            # the other peer is not held up by this one
            wait_complete(three, "late/app", image.digest, regions=(WEST,))
            time.sleep(2.0)  # a retry or two more while it is down
            note()
        finally:
            three.eu.start()
        deadline = time.monotonic() + 120
        while note().get("status") != "COMPLETE":
            assert time.monotonic() < deadline, seen
            time.sleep(0.2)
    assert seen[0][0] == "IN_PROGRESS", seen
    assert ("FAILED", "DESTINATION_UNAVAILABLE") in seen, seen
    assert seen[-1] == ("COMPLETE", None), seen
    with OciClient(three.eu.url) as eu:
        assert eu.get_manifest("late/app", "v1").content == image.body
        for blob in image.blobs:
            got = eu.get_blob("late/app", sha256_digest(blob))
            assert got.status_code == 200 and got.content == blob


def test_at_a_peer_an_immutable_tag_is_left_out_and_deletes_follow_when_asked(three: Three) -> None:
    eu_ecr = client("ecr", three.eu.url, "AKIAANYTHINGATALL000", "unused", region=EU)
    assert call(eu_ecr, "CreateRepository", {"repositoryName": "locked/app",
                                             "imageTagMutability": "IMMUTABLE"}).error is None
    theirs, ours, kept = random_image(), random_image(), random_image()
    with OciClient(three.source.url) as src, OciClient(three.eu.url) as eu:
        assert eu.push_image("locked/app", theirs, "v1").status_code == 201
        assert src.push_image("locked/app", ours, "v1").status_code == 201
        wait_complete(three, "locked/app", ours.digest)
        assert eu.get_manifest("locked/app", ours.digest).content == ours.body
        assert eu.get_manifest("locked/app", "v1").content == theirs.body
        # deleteReplication (the mirror/ rule, to EU only)
        assert src.push_image("mirror/app", ours, "v1").status_code == 201
        assert src.put_manifest("mirror/app", "v2", ours.body).status_code == 201
        assert src.push_image("mirror/app", kept, "keep").status_code == 201
        wait_complete(three, "mirror/app", ours.digest)
        wait_complete(three, "mirror/app", kept.digest)
        deadline = time.monotonic() + 60
        while sorted(eu.all_tags("mirror/app")) != ["keep", "v1", "v2"]:
            assert time.monotonic() < deadline
            time.sleep(0.1)
        assert src.request("DELETE", "/v2/mirror/app/manifests/v2").status_code == 202
        assert src.request("DELETE", f"/v2/mirror/app/manifests/{ours.digest}").status_code == 202
        while eu.get_manifest("mirror/app", ours.digest).status_code != 404:
            assert time.monotonic() < deadline
            time.sleep(0.1)
        assert eu.all_tags("mirror/app") == ["keep"]
        # WEST has no deleteReplication: its copy stays
        with OciClient(three.west.url) as west:
            west.http.headers["Authorization"] = basic(three.west_token())
            assert west.get_manifest("mirror/app", ours.digest).content == ours.body


def test_config_file_peers_follow_the_file_at_each_start(tmp_path: Path) -> None:
    """A start stores the file's peers (taking over a CLI peer of the same name) and removes the file peers of
    an earlier start that the file no longer names; CLI peers stay."""
    conf = tmp_path / "berth.toml"

    def peer(name: str) -> str:
        return (f'[peers.{name}]\nendpoint = "http://127.0.0.1:9"\nregions = ["ap-south-1"]\n'
                f'access-key-id = "AKIA{name.upper()}"\nsecret-access-key = "s-{name}"\n')

    conf.write_text("version = 1\n" + peer("one"))
    srv = BerthServer(tmp_path / "d", args=["--auth", "none", "--config", str(conf)]).start()
    try:
        berth_cli(srv, "peers", "add", "two", "--endpoint", "http://127.0.0.1:8", "--access-key-id", "AKIACLI",
                  "--secret-access-key", "x", "--region", "ap-south-1")
        berth_cli(srv, "peers", "add", "three", "--endpoint", "http://127.0.0.1:7", "--access-key-id", "AKIACLI3",
                  "--secret-access-key", "x", "--region", "ap-south-1")
        conf.write_text("version = 1\n" + peer("two"))
        srv.restart()
        listed = berth_cli(srv, "peers", "list")
        rows = {line.split()[1]: line for line in listed.splitlines() if line.startswith("│ ")}
        assert sorted(rows) == ["three", "two"]
        assert "AKIATWO" in rows["two"] and "file" in rows["two"] and "cli" in rows["three"]
    finally:
        srv.stop()
