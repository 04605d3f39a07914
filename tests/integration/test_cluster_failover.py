"""Two nodes on one PostgreSQL of their own, restarted under them: /readyz says so, requests answer a
retryable 503 in each face's shape (never the HTTP server's bare 500), the nodes reconnect by themselves,
and nothing acknowledged is lost.

The cluster is this module's own (stopping the session's PostgreSQL would pull it from under others).
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.support.cluster import PushFailed, RoundRobin, push_image_rr, start_together, stop_all, verify_pull
from tests.support.oci import random_image
from tests.support.servers import BerthServer, PostgresCluster

pytestmark = pytest.mark.integration

ECR_TARGET = "AmazonEC2ContainerRegistry_V20150921."


@dataclass
class Pair:
    pg: PostgresCluster
    nodes: list[BerthServer]
    blobs: Path


@pytest.fixture(scope="module")
def pair(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Pair]:
    pg = PostgresCluster().start()
    base = tmp_path_factory.mktemp("failover")
    blobs = base / "blobs"
    blobs.mkdir()
    url = pg.new_database()
    nodes = [BerthServer(base / f"node{i}", database_url=url, args=["--storage-url", f"file://{blobs}"])
             for i in range(2)]
    try:
        failures = start_together(nodes)
        assert failures == [], "\n".join(failures)
        yield Pair(pg, nodes, blobs)
    finally:
        stop_all(nodes)
        pg.stop()


def _wait(cond: Any, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if cond():
            return
        time.sleep(0.1)
    raise AssertionError(f"not within {timeout} s: {what}")


def _ready(node: BerthServer) -> httpx.Response:
    return httpx.get(node.url + "/readyz", timeout=15)


def _ecr(node: BerthServer, op: str, body: dict[str, Any]) -> httpx.Response:
    return httpx.post(node.url + "/", content=json.dumps(body), timeout=15, headers={
        "X-Amz-Target": ECR_TARGET + op, "Content-Type": "application/x-amz-json-1.1"})


def test_while_postgresql_is_down_requests_answer_a_retryable_503_and_the_nodes_come_back(pair: Pair) -> None:
    node = pair.nodes[0]
    img = random_image()
    with RoundRobin(pair.nodes) as rr:
        push_image_rr(rr, "fo/shape", img, "v1")
    assert _ready(node).json() == {"ready": True}
    pair.pg.halt()
    try:
        r = _ready(node)
        assert r.status_code == 503 and r.json()["ready"] is False
        assert "database" in r.json()["reason"], r.json()
        for path in ("/v2/fo/shape/manifests/v1", "/v2/fo/shape/tags/list", "/v2/_catalog",
                     "/v2/fo/other/manifests/latest"):
            got = httpx.get(node.url + path, timeout=15)
            assert got.status_code == 503, (path, got.status_code, got.text)
            assert got.headers["Retry-After"].isdigit()
            assert [e["code"] for e in got.json()["errors"]] == ["UNAVAILABLE"], got.text
        push = httpx.post(node.url + "/v2/fo/shape/blobs/uploads/", timeout=15)
        assert push.status_code == 503 and push.json()["errors"][0]["code"] == "UNAVAILABLE", push.text
        ecr = _ecr(node, "DescribeRepositories", {})
        assert ecr.status_code == 503, ecr.text
        assert ecr.json()["__type"] == "ServiceUnavailable", ecr.text
    finally:
        pair.pg.resume()
    for n in pair.nodes:
        _wait(lambda n=n: _ready(n).status_code == 200, 30, f"{n.url} ready again")
    for n in pair.nodes:
        with httpx.Client(base_url=n.url, timeout=15) as c:
            verify_pull(c, "fo/shape", "v1", img)
    assert _ecr(node, "DescribeRepositories", {}).status_code == 200
    for n in pair.nodes:
        assert "Internal server error" not in n.read_log()


def test_readyz_is_not_ready_while_the_blob_store_is_unreachable(pair: Pair) -> None:
    node = pair.nodes[1]
    assert _ready(node).status_code == 200
    away = pair.blobs.with_name("blobs-away")
    pair.blobs.rename(away)  # the shared volume is gone (unmounted, or its server unreachable)
    try:
        r = _ready(node)
        assert r.status_code == 503 and "storage" in r.json()["reason"], r.text
        assert "database" not in r.json()["reason"]
    finally:
        away.rename(pair.blobs)
    assert _ready(node).status_code == 200


def test_pushes_across_postgresql_restarts_lose_nothing_acknowledged(pair: Pair) -> None:
    """Pushers through both nodes while PostgreSQL is stopped twice (a clean restart, then a crash):
    every push succeeds or fails with 503 (or a 4xx of an upload the restart ended), never a 500;
    pushes succeed again once it is back; every acknowledged image pulls whole from both nodes."""
    acked: list[tuple[str, str, Any]] = []
    refused: list[int] = []
    bad: list[str] = []
    stop = threading.Event()
    lock = threading.Lock()

    def pusher(k: int) -> None:
        with RoundRobin(pair.nodes[k % 2:] + pair.nodes[:k % 2], timeout=60) as rr:
            i = 0
            while not stop.is_set():
                name, ref, img = f"fo/p{k}", f"t{i}", random_image(layers=2, layer_size=64 * 1024)
                i += 1
                try:
                    push_image_rr(rr, name, img, ref, chunks=2 if i % 2 else 1)
                except PushFailed as e:
                    status = e.response.status_code
                    if status >= 500 and (status != 503 or "Retry-After" not in e.response.headers):
                        with lock:
                            bad.append(str(e))
                    with lock:
                        refused.append(status)
                    time.sleep(0.05)
                    continue
                except httpx.HTTPError as e:  # a node must stay up and answer, whatever PostgreSQL does
                    with lock:
                        bad.append(f"{type(e).__name__}: {e}")
                    continue
                with lock:
                    acked.append((name, ref, img))

    threads = [threading.Thread(target=pusher, args=(k,)) for k in range(3)]
    for t in threads:
        t.start()
    try:
        for mode in ("fast", "immediate"):
            _wait(lambda: len(acked) >= 5, 60, "pushes acknowledged before the stop")
            pair.pg.halt(mode)
            time.sleep(2)
            pair.pg.resume()
            before = len(acked)
            _wait(lambda before=before: len(acked) >= before + 5, 60, f"pushes succeed again after a {mode} stop")
    finally:
        stop.set()
        for t in threads:
            t.join(120)
    assert bad == [], bad[:5]
    assert refused, "PostgreSQL went away twice and no push noticed: the test did not test"
    assert 503 in refused
    for n in pair.nodes:
        with httpx.Client(base_url=n.url, timeout=60) as c:
            for name, ref, img in acked:
                verify_pull(c, name, ref, img)
                verify_pull(c, name, img.digest, img)
    for n in pair.nodes:
        assert "Internal server error" not in n.read_log()


def test_pool_size_is_bounded_per_node(pair: Pair) -> None:
    """BERTH_DB_POOL_MAX_SIZE (16 by default) bounds each node's connections, under concurrent load."""
    from tests.support.cluster import query

    url = pair.nodes[0].database_url

    def load() -> None:
        with httpx.Client(base_url=pair.nodes[0].url, timeout=60) as c:
            for _ in range(30):
                c.get("/v2/fo/shape/tags/list")

    threads = [threading.Thread(target=load) for _ in range(40)]
    for t in threads:
        t.start()
    peak = 0
    while any(t.is_alive() for t in threads):
        rows = query(url, "SELECT count(*) AS n FROM pg_stat_activity WHERE datname = current_database() "
                          "AND pid <> pg_backend_pid()")
        peak = max(peak, rows[0]["n"])
        time.sleep(0.05)
    for t in threads:
        t.join()
    # two nodes: at most 16 pooled + 1 listening connection each
    assert peak <= 2 * (16 + 1), peak
