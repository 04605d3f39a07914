"""`berth backup` of a running registry while pushes go on, `berth restore` into a new data dir, and the
restored registry serves every image the backup recorded (raw OCI API, and skopeo), with the same
credentials (the master key comes with the backup)."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from tests.support.aws import basic, client, registry_token
from tests.support.oci import OciClient, random_image
from tests.support.servers import BerthServer, require_tool

pytestmark = pytest.mark.integration

KEY, SECRET = "AKIABACKUPADMIN0001", "backup-admin-secret-kf83hf8h3f8h38fh3f8h"
ENV = {"BERTH_ADMIN_ACCESS_KEY_ID": KEY, "BERTH_ADMIN_SECRET_ACCESS_KEY": SECRET}
ACCEPT = ", ".join(["application/vnd.oci.image.manifest.v1+json", "application/vnd.oci.image.index.v1+json",
                    "application/vnd.docker.distribution.manifest.v2+json"])


def _berth(*args: str | Path) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("BERTH_")}
    return subprocess.run([sys.executable, "-m", "berth", *map(str, args)], env=env, capture_output=True, text=True,
                          timeout=300)


def _pusher(srv: BerthServer, token: str, stop: threading.Event, pushed: list[tuple[str, str, str]]) -> None:
    with OciClient(srv.url) as oci:
        oci.http.headers["Authorization"] = basic(token)
        i = 0
        while not stop.is_set():
            img = random_image(layers=2, layer_size=64 * 1024)
            repo = f"backup/app{i % 3}"
            assert oci.push_image(repo, img, f"v{i}").status_code == 201
            pushed.append((repo, f"v{i}", img.digest))
            i += 1


def test_backup_during_pushes_then_restore_and_pull_everything(tmp_path: Path) -> None:
    src = BerthServer(tmp_path / "data", args=["--auth", "iam"], env=ENV).start()
    try:
        token = registry_token(client("ecr", src.url, KEY, SECRET))
        stop = threading.Event()
        pushed: list[tuple[str, str, str]] = []
        threads = [threading.Thread(target=_pusher, args=(src, token, stop, pushed)) for _ in range(2)]
        for t in threads:
            t.start()
        while len(pushed) < 10:
            time.sleep(0.05)
        before = len(pushed)
        r = _berth("backup", tmp_path / "bk", "--data-dir", src.data_dir)
        during = len(pushed) - before
        time.sleep(0.3)
        stop.set()
        for t in threads:
            t.join(60)
        assert r.returncode == 0, r.stderr
        assert "berth: backup" in r.stderr
        r2 = _berth("backup", tmp_path / "bk", "--data-dir", src.data_dir)  # never over an existing backup
        assert r2.returncode == 1 and "not an empty directory" in r2.stderr
    finally:
        src.stop()
    manifest = json.loads((tmp_path / "bk" / "backup.json").read_text())
    recorded = {(i["repository"], t, i["digest"]) for i in manifest["images"] for t in i["tags"]}
    assert len(recorded) >= before and set(pushed) >= recorded  # every recorded image was really pushed
    assert manifest["missingBlobs"] == []
    assert oct((tmp_path / "bk" / "keys" / "master.key").stat().st_mode & 0o777) == "0o600"

    r = _berth("restore", tmp_path / "bk", "--data-dir", tmp_path / "restored", "--verify")
    assert r.returncode == 0, r.stderr
    assert oct((tmp_path / "restored").stat().st_mode & 0o777) == "0o700"
    back = BerthServer(tmp_path / "restored", args=["--auth", "iam"], env=ENV).start()
    try:
        token = registry_token(client("ecr", back.url, KEY, SECRET))  # the old credentials still sign
        with OciClient(back.url) as oci:
            oci.http.headers["Authorization"] = basic(token)
            for repo, tag, digest in sorted(recorded):
                m = oci.http.get(f"/v2/{repo}/manifests/{tag}", headers={"Accept": ACCEPT})
                assert m.status_code == 200, (repo, tag, m.text)
                assert "sha256:" + hashlib.sha256(m.content).hexdigest() == digest
                doc = m.json()
                for d in [doc["config"], *doc["layers"]]:
                    b = oci.get_blob(repo, d["digest"])
                    assert b.status_code == 200 and "sha256:" + hashlib.sha256(b.content).hexdigest() == d["digest"]
        require_tool("skopeo")
        repo, tag, digest = sorted(recorded)[0]
        out = tmp_path / "pulled"
        subprocess.run(["skopeo", "copy", "--src-tls-verify=false", "--src-creds", f"AWS:{token}",
                        f"docker://{back.host}/{repo}:{tag}", f"oci:{out}:x"], check=True, capture_output=True,
                       timeout=120)
        assert json.loads((out / "index.json").read_text())["manifests"]  # pulled, layers and all
        raw = subprocess.run(["skopeo", "inspect", "--raw", "--tls-verify=false", "--creds", f"AWS:{token}",
                              f"docker://{back.host}/{repo}:{tag}"], check=True, capture_output=True,
                             timeout=120).stdout
        assert "sha256:" + hashlib.sha256(raw).hexdigest() == digest
    finally:
        back.stop()
    print(f"backup while {during} pushes completed during it; {len(recorded)} images restored")


def test_restore_refuses_a_damaged_backup(tmp_path: Path) -> None:
    src = BerthServer(tmp_path / "data").start()
    try:
        with OciClient(src.url) as oci:
            assert oci.push_image("r/app", random_image(), "v1").status_code == 201
        assert _berth("backup", tmp_path / "bk", "--data-dir", src.data_dir).returncode == 0
    finally:
        src.stop()
    blob = json.loads((tmp_path / "bk" / "backup.json").read_text())["blobs"][0]["digest"]
    alg, hexpart = blob.split(":")
    (tmp_path / "bk" / "blobs" / alg / hexpart[:2] / hexpart).write_bytes(b"truncated")
    r = _berth("restore", tmp_path / "bk", "--data-dir", tmp_path / "restored")
    assert r.returncode == 1 and f"blob {blob} is missing from the backup or has the wrong size" in r.stderr
    assert not (tmp_path / "restored").exists()
    r = _berth("restore", tmp_path / "nothing", "--data-dir", tmp_path / "restored")
    assert r.returncode == 1 and "not a backup" in r.stderr
