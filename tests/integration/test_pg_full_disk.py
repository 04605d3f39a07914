"""A full disk under PostgreSQL, while a real `berth serve` takes pushes and ECR calls (issue 11).

A cluster of its own, its data directory and its WAL each on a small tmpfs this module mounts (root).
What PostgreSQL does, found here:
- the data disk full: a write that must extend a table or an index fails with SQLSTATE 53100
  (disk_full, "could not extend file"), the server stays up. Berth answers OCI 507 and ECR
  ServerException, saying so; the request's transaction is rolled back whole.
- the WAL disk full: the writer PANICs, the server restarts, and its recovery cannot write WAL either,
  so the server stops. Berth answers OCI 503 UNAVAILABLE and ECR ServiceUnavailable (the database is
  away), each with Retry-After, until the operator frees space and starts PostgreSQL again.
Both times Berth recovers without a restart, and every acknowledged image still pulls.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.support.oci import OciClient, random_image, sha256
from tests.support.servers import PG_BIN, BerthServer, PostgresCluster, unavailable

pytestmark = pytest.mark.integration

TARGET = "AmazonEC2ContainerRegistry_V20150921."


class SmallDiskCluster(PostgresCluster):
    """PostgresCluster with data/ and its WAL on two tmpfs mounts of their own (1 MB WAL segments)."""

    def __init__(self) -> None:
        super().__init__(options="-c max_wal_size=4MB -c min_wal_size=2MB")
        self.data = self.dir / "data"
        self.wal = self.dir / "wal"

    def start(self) -> SmallDiskCluster:
        if os.geteuid() != 0:
            unavailable("mounting a tmpfs needs root")
        shutil.chown(self.dir, "postgres", "postgres")
        for mount, size in ((self.data, "64m"), (self.wal, "24m")):
            mount.mkdir()
            r = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size},mode=0700,uid=postgres,gid=postgres",
                                "tmpfs", str(mount)], capture_output=True)
            if r.returncode != 0:
                unavailable(f"cannot mount a tmpfs: {r.stderr.decode()}")
        subprocess.run(self._as_postgres(str(PG_BIN / "initdb"), "-D", str(self.data), f"--waldir={self.wal}/w",
                                         "--wal-segsize=1", "-U", "postgres", "--auth=trust", "-E", "UTF8",
                                         "--locale=C.UTF-8"), check=True, capture_output=True)
        return self.resume()  # type: ignore[return-value]

    def running(self) -> bool:
        r = subprocess.run(self._as_postgres(str(PG_BIN / "pg_ctl"), "-D", str(self.data), "status"),
                           capture_output=True)
        return r.returncode == 0

    def stop(self) -> None:
        subprocess.run(self._as_postgres(str(PG_BIN / "pg_ctl"), "-D", str(self.data), "-m", "immediate", "stop"),
                       capture_output=True)
        for mount in (self.data, self.wal):
            subprocess.run(["umount", "-l", str(mount)], capture_output=True)
        shutil.rmtree(self.dir, ignore_errors=True)


def fill(mount: Path) -> Path:
    """Write a file until the disk is full, to the last block."""
    filler = mount / "filler"
    with open(filler, "wb", buffering=0) as f:
        try:
            while True:
                f.write(b"\0" * 4096)
        except OSError:
            pass
    return filler


@pytest.fixture(scope="module")
def cluster() -> Iterator[SmallDiskCluster]:
    c = SmallDiskCluster()
    try:
        yield c.start()
    finally:
        c.stop()


@pytest.fixture(scope="module")
def server(cluster: SmallDiskCluster, tmp_path_factory: pytest.TempPathFactory) -> Iterator[BerthServer]:
    srv = BerthServer(tmp_path_factory.mktemp("pgfull") / "data", database_url=cluster.url).start()
    try:
        yield srv
    finally:
        srv.stop()


def ecr(url: str, op: str, body: dict) -> httpx.Response:
    return httpx.post(url + "/", content=json.dumps(body).encode(), timeout=30,
                      headers={"X-Amz-Target": TARGET + op, "Content-Type": "application/x-amz-json-1.1"})


def push(oci: OciClient, name: str, tag: str) -> tuple[httpx.Response, object]:
    """Push a small image blob by blob; the first answer that is not 201, else the manifest's."""
    image = random_image(layers=1, layer_size=256)
    for data in image.blobs:
        r = oci.push_blob(name, data)
        if r.status_code != 201:
            return r, image
    return oci.put_manifest(name, tag, image.body, image.media_type), image


def assert_oci_refused(r: httpx.Response, status: int, code: str, words: str) -> None:
    assert r.status_code == status, (r.status_code, r.text[:300])
    err = r.json()["errors"][0]
    assert err["code"] == code and words in err["message"], err
    assert int(r.headers["Retry-After"]) > 0


def assert_ecr_refused(r: httpx.Response, status: int, kind: str, words: str) -> None:
    assert r.status_code == status, (r.status_code, r.text[:300])
    assert r.json()["__type"] == kind and words in r.json()["message"], r.text[:300]


def all_pull(oci: OciClient, acked: dict[str, object]) -> None:
    for tag, image in acked.items():
        r = oci.get_manifest("full/app", tag)
        assert r.status_code == 200 and r.content == image.body, (tag, r.status_code)  # type: ignore[attr-defined]
        for data in image.blobs:  # type: ignore[attr-defined]
            assert oci.get_blob("full/app", sha256(data)).content == data


def test_data_disk_full_then_wal_disk_full(cluster: SmallDiskCluster, server: BerthServer) -> None:
    acked: dict[str, object] = {}
    with OciClient(server.url) as oci:
        r, image = push(oci, "full/app", "before")
        assert r.status_code == 201, r.text
        acked["before"] = image

        # 1. the data disk: pushes and CreateRepository until each face has been refused (53100)
        filler = fill(cluster.data)
        oci_refused = ecr_refused = 0
        for i in range(400):
            if not oci_refused:
                r, image = push(oci, "full/app", f"t{i}")
                if r.status_code == 201:
                    acked[f"t{i}"] = image
                else:
                    assert_oci_refused(r, 507, "UNKNOWN", "insufficient storage")
                    oci_refused += 1
                    # nothing half-written: the refused push's tag does not exist
                    assert oci.get_manifest("full/app", f"t{i}").status_code == 404
            if not ecr_refused:
                name = f"full/r{i}-{uuid.uuid4().hex}"
                e = ecr(server.url, "CreateRepository", {"repositoryName": name})
                if e.status_code != 200:
                    assert_ecr_refused(e, 500, "ServerException", "insufficient storage")
                    ecr_refused += 1
                    d = ecr(server.url, "DescribeRepositories", {"repositoryNames": [name]})
                    assert d.json().get("__type") == "RepositoryNotFoundException", d.text
            if oci_refused and ecr_refused:
                break
        assert oci_refused and ecr_refused, (oci_refused, ecr_refused)
        all_pull(oci, acked)  # reads go on while the disk is full
        # space is freed: the same server takes pushes again
        filler.unlink()
        r, image = push(oci, "full/app", "after-data")
        assert r.status_code == 201, r.text
        acked["after-data"] = image
        assert ecr(server.url, "CreateRepository", {"repositoryName": "full/after-data"}).status_code == 200

        # 2. the WAL disk: a large write PANICs the server, whose recovery then cannot write WAL
        filler = fill(cluster.wal)
        big = subprocess.run(cluster._as_postgres(str(PG_BIN / "psql"), "-h", "127.0.0.1", "-p", str(cluster.port),
                                                  "-U", "postgres", "-c", "CREATE TABLE scratch AS SELECT "
                                                  "repeat('x', 500) AS x FROM generate_series(1, 40000)"),
                             capture_output=True, text=True)
        assert big.returncode != 0, big.stdout
        r, _ = push(oci, "full/app", "during-wal")
        assert_oci_refused(r, 503, "UNAVAILABLE", "metadata database unavailable")
        assert oci.get_manifest("full/app", "during-wal").status_code in (404, 503)
        e = ecr(server.url, "CreateRepository", {"repositoryName": "full/during-wal"})
        assert_ecr_refused(e, 503, "ServiceUnavailable", "metadata database unavailable")
        assert not cluster.running()  # PostgreSQL stopped itself: freeing space is not enough
        filler.unlink()
        cluster.resume()  # the operator starts it again; Berth keeps running
        r, image = push(oci, "full/app", "after-wal")
        assert r.status_code == 201, r.text
        acked["after-wal"] = image
        all_pull(oci, acked)
        for name in ("full/after-data", "full/during-wal"):
            d = ecr(server.url, "DescribeRepositories", {"repositoryNames": [name]})
            assert (d.status_code == 200) == (name == "full/after-data"), d.text

    log = server.read_log()
    loud = [json.loads(ln) for ln in log.splitlines() if '"level":"critical"' in ln]
    full = [x for x in loud if "insufficient storage" in x["message"]]
    assert 1 <= len(full) <= 2, log[-3000:]  # once per face (OCI, ECR), not once per request
    for x in full:
        assert "53100" in x["message"] or "could not extend file" in x["message"], x
    lines = [json.loads(ln) for ln in log.splitlines() if ln.startswith("{")]
    faces = [x for x in lines if x.get("logger") in ("berth.oci", "berth.ecr") or x.get("face") == "oci"]
    assert not [x for x in faces if "exc" in x or x.get("status") == 500], faces  # no fault, no traceback
    assert "Traceback" not in "\n".join(ln for ln in log.splitlines() if not ln.startswith("{")), log[-3000:]
