"""Three `berth serve` nodes on one PostgreSQL and one Ceph radosgw behave as one registry.

A round-robin client sends each request to the next node (a load balancer without affinity): uploads
started on one node continue on the next and complete on the third; a tag moved through one node is
served by the others on their next request (LISTEN/NOTIFY invalidation, no TTL); a node SIGKILLed in the
middle of the pushes and restarted loses nothing acknowledged; registry tokens and GetDownloadUrlForLayer
URLs issued by one node verify on every node; with two `berth worker` processes as well, periodic jobs are
enqueued once per due time across the cluster and no job runs twice.
"""

from __future__ import annotations

import base64
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.support import aws
from tests.support.ceph import CephCluster
from tests.support.cluster import (
    PushFailed,
    RoundRobin,
    RoundRobinProxy,
    Worker,
    push_image_rr,
    query,
    start_together,
    stop_all,
    verify_pull,
)
from tests.support.images import OciLayout, UmociImages, image_closure, read_rootfs, run
from tests.support.oci import OCI_INDEX, OCI_MANIFEST, random_image, sha256
from tests.support.servers import BerthServer, PostgresCluster, require_tool

pytestmark = pytest.mark.integration

KEY_ID, SECRET = "AKIACLUSTERADMIN0001", "cluster-admin-secret-0123456789abcdefghij"
NODES = 3


@dataclass
class Cluster:
    nodes: list[BerthServer]
    database: str
    bucket: str
    token: str  # a registry token issued by node 0
    storage_url: str
    env: dict[str, str]

    @property
    def auth(self) -> dict[str, str]:
        return {"Authorization": "Basic " + base64.b64encode(f"AWS:{self.token}".encode()).decode()}

    def rr(self, timeout: float = 120.0) -> RoundRobin:
        rr = RoundRobin(self.nodes, timeout)
        for c in rr.clients:
            c.headers.update(self.auth)
        return rr

    def client(self, i: int, timeout: float = 120.0) -> httpx.Client:
        return httpx.Client(base_url=self.nodes[i].url, headers=self.auth, timeout=timeout)


@pytest.fixture(scope="module")
def cluster(postgres: PostgresCluster, ceph: CephCluster,
            tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    bucket = ceph.new_bucket("cluster")
    database = postgres.new_database()
    base = tmp_path_factory.mktemp("cluster")
    storage = f"s3://{bucket}/registry?endpoint={ceph.endpoint}&region={ceph.region}"
    env = {"AWS_ACCESS_KEY_ID": ceph.access_key, "AWS_SECRET_ACCESS_KEY": ceph.secret_key,
           "BERTH_ADMIN_ACCESS_KEY_ID": KEY_ID, "BERTH_ADMIN_SECRET_ACCESS_KEY": SECRET}
    nodes = [BerthServer(base / f"node{i}", database_url=database, env=env,
                         args=["--auth", "iam", "--storage-url", storage]) for i in range(NODES)]
    try:
        failures = start_together(nodes)
        assert failures == [], "\n".join(failures)
        ecr = aws.client("ecr", nodes[0].url, KEY_ID, SECRET)
        token = base64.b64decode(ecr.get_authorization_token()["authorizationData"][0]["authorizationToken"])
        yield Cluster(nodes, database, bucket, token.decode().split(":", 1)[1], storage, env)
    finally:
        stop_all(nodes)


def _manifest(c: httpx.Client, name: str, ref: str) -> httpx.Response:
    return c.get(f"/v2/{name}/manifests/{ref}", headers={"Accept": f"{OCI_MANIFEST}, {OCI_INDEX}"})


def test_a_tag_moved_through_one_node_is_served_by_the_others_on_their_next_request(cluster: Cluster) -> None:
    a, b, c = (cluster.client(i) for i in range(NODES))
    images = [random_image(layers=1, layer_size=256) for _ in range(2)]
    with cluster.rr() as rr:
        for img in images:
            push_image_rr(rr, "cl/moving", img, img.digest)
    stale = 0
    for i in range(100):
        img = images[i % 2]
        for node in (b, c):  # both hold the old value in their caches (a hit, not a read of the database)
            assert _manifest(node, "cl/moving", "latest").status_code in (200, 404)
            _manifest(node, "cl/moving", "latest")
        r = a.put("/v2/cl/moving/manifests/latest", content=img.body, headers={"Content-Type": img.media_type})
        assert r.status_code == 201, r.text
        for node in (b, c):
            got = _manifest(node, "cl/moving", "latest")
            assert got.status_code == 200, got.text
            if got.headers["Docker-Content-Digest"] != img.digest:
                stale += 1
    assert stale == 0, f"{stale} of 200 reads right after a move through another node served the old digest"
    # a tag deleted through one node is gone on the others
    assert a.delete(f"/v2/cl/moving/manifests/{images[1].digest}").status_code == 202
    for node in (b, c):
        assert _manifest(node, "cl/moving", images[1].digest).status_code == 404
    for x in (a, b, c):
        x.close()


def test_round_robin_pushes_and_pulls_through_every_node_survive_a_node_killed_mid_run(cluster: Cluster) -> None:
    """Three pushers, each request to the next node, multi-layer images, every other one in chunks spread over
    the nodes; node 2 SIGKILLed while they push and started again. Every acknowledged image pulls whole from
    every node; a push that met the dead node failed (a connection error), none was acknowledged half-stored."""
    acked: list[tuple[str, str, Any]] = []
    failed: list[str] = []
    bad: list[str] = []
    stop = threading.Event()
    lock = threading.Lock()

    def pusher(k: int) -> None:
        with cluster.rr() as rr:
            i = 0
            while not stop.is_set():
                img = random_image(layers=3, layer_size=(96 + 32 * k) * 1024)
                name, ref = f"cl/rr{k}", f"v{i}"
                i += 1
                try:
                    push_image_rr(rr, name, img, ref, chunks=3 if i % 2 else 1)
                except PushFailed as e:
                    with lock:
                        (bad if e.response.status_code >= 500 and e.response.status_code != 503 else failed).append(
                            str(e))
                    continue
                except httpx.TransportError as e:  # the killed node: its connections refused or cut
                    with lock:
                        failed.append(f"{type(e).__name__}: {e}")
                    continue
                with lock:
                    acked.append((name, ref, img))

    threads = [threading.Thread(target=pusher, args=(k,)) for k in range(3)]
    for t in threads:
        t.start()
    victim = cluster.nodes[2]
    try:
        deadline = time.monotonic() + 120
        while len(acked) < 6 and time.monotonic() < deadline:
            time.sleep(0.1)
        victim.kill()
        time.sleep(1.0)
        killed_at = len(acked)
        victim.start(90)
        deadline = time.monotonic() + 120
        while len(acked) < killed_at + 6 and time.monotonic() < deadline:
            time.sleep(0.1)
    finally:
        stop.set()
        for t in threads:
            t.join(180)
    assert bad == [], bad[:5]
    assert len(acked) >= killed_at + 6, (len(acked), killed_at, failed[:5])
    for i in range(NODES):
        with cluster.client(i) as node:
            for name, ref, img in acked:
                verify_pull(node, name, ref, img)
                verify_pull(node, name, img.digest, img)


def test_tokens_and_download_urls_issued_by_one_node_verify_on_every_node(cluster: Cluster) -> None:
    img = random_image(layers=1, layer_size=4096)
    with cluster.rr() as rr:
        push_image_rr(rr, "cl/auth", img, "v1")
    for i in range(NODES):  # the token came from node 0
        with cluster.client(i) as node:
            verify_pull(node, "cl/auth", "v1", img)
    ecr = aws.client("ecr", cluster.nodes[1].url, KEY_ID, SECRET)
    layer = sha256(img.layers[0])
    url = httpx.URL(ecr.get_download_url_for_layer(repositoryName="cl/auth", layerDigest=layer)["downloadUrl"])
    issued_for = cluster.nodes[1].host  # behind a load balancer every node is reached by that one name
    for node in cluster.nodes:
        r = httpx.get(node.url + url.raw_path.decode(), headers={"Host": issued_for}, timeout=60,
                      follow_redirects=True)
        assert r.status_code == 200, (node.url, r.status_code, r.text[:300])
        assert sha256(r.content) == layer
    forged = url.raw_path.decode().replace(layer[-8:], "00000000")
    assert httpx.get(cluster.nodes[2].url + forged, headers={"Host": issued_for}, timeout=60).status_code in (401, 403)


def test_two_workers_and_three_nodes_run_each_periodic_job_once_and_no_job_twice(cluster: Cluster,
                                                                                  tmp_path: Path) -> None:
    """Five processes tick the schedules (three nodes with their in-process workers, two `berth worker`s).
    The schedules are made due again and again (their interval is an hour); each time exactly one job is
    enqueued per kind, and every job ran exactly once."""
    workers = [Worker(tmp_path / f"w{i}", cluster.database,
                      env={k: v for k, v in cluster.env.items() if k.startswith("AWS_")},
                      args=["--storage-url", cluster.storage_url]).start() for i in range(2)]
    try:
        time.sleep(3)  # every process has ticked at least once
        kinds = [r["kind"] for r in query(cluster.database, "SELECT kind FROM periodic ORDER BY kind")]
        assert kinds, "no periodic schedules"
        before = {k: _count(cluster.database, k) for k in kinds}
        rounds = 6
        for _ in range(rounds):
            query(cluster.database, "UPDATE periodic SET next_run = $1", time.time() - 1)
            time.sleep(2.5)  # every process ticks (TICK = 1 s) while it is due
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and query(
                cluster.database, "SELECT id FROM jobs WHERE state IN ('queued', 'running') AND kind = ANY($1)",
                kinds):
            time.sleep(0.2)
        for k in kinds:
            assert _count(cluster.database, k) - before[k] == rounds, (k, before[k], _count(cluster.database, k))
        owners = {r["last_owner"] for r in query(cluster.database, "SELECT last_owner FROM periodic")}
        assert owners  # some process won each round
        twice = query(cluster.database, "SELECT id, kind, attempts, state FROM jobs WHERE kind = ANY($1) AND "
                                        "(attempts <> 1 OR state <> 'done')", kinds)
        assert twice == [], twice
        for w in workers:
            assert w.proc is not None and w.proc.poll() is None, w.log.read_text()[-2000:]
    finally:
        stop_all(workers)


def _count(url: str, kind: str) -> int:
    return int(query(url, "SELECT count(*) AS n FROM jobs WHERE kind = $1", kind)[0]["n"])


def test_skopeo_through_a_round_robin_proxy_pushes_and_pulls_a_multilayer_image(
        cluster: Cluster, umoci_images: UmociImages, tmp_path: Path) -> None:
    """skopeo's own requests (blob checks, uploads, mounts, the manifest), each to the next node."""
    require_tool("skopeo")
    img = umoci_images.app
    creds = f"AWS:{cluster.token}"
    with RoundRobinProxy(cluster.nodes) as proxy:
        ref = f"docker://{proxy.host}/cl/skopeo:v1"
        run(["skopeo", "copy", "--dest-tls-verify=false", "--dest-creds", creds, f"oci:{img.layout.root}:app", ref],
            timeout=300)
        out = OciLayout(tmp_path / "pulled")
        run(["skopeo", "copy", "--src-tls-verify=false", "--src-creds", creds, ref, f"oci:{out.root}:v1"],
            timeout=300)
        assert {p for p in proxy.served} == {n.port for n in cluster.nodes}  # every node took part
    assert out.digest("v1") == img.digest
    assert image_closure(out, img.digest) == image_closure(img.layout, img.digest)
    assert read_rootfs(out, img.digest) == img.files


def test_every_node_reports_not_ready_while_the_object_store_is_down(cluster: Cluster, ceph: CephCluster) -> None:
    """A load balancer stops sending traffic to nodes whose object store is unreachable, and resumes after."""
    for node in cluster.nodes:
        assert httpx.get(node.url + "/readyz", timeout=15).status_code == 200
    ceph.stop_rgw()
    try:
        for node in cluster.nodes:
            r = httpx.get(node.url + "/readyz", timeout=15)
            assert r.status_code == 503, r.text
            assert "storage" in r.json()["reason"] and "database" not in r.json()["reason"], r.text
    finally:
        ceph.start_rgw()
    for node in cluster.nodes:
        deadline = time.monotonic() + 30
        while httpx.get(node.url + "/readyz", timeout=15).status_code != 200:
            assert time.monotonic() < deadline, f"{node.url} not ready again"
            time.sleep(0.2)
