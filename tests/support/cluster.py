"""Several `berth serve` nodes (and `berth worker`s) on one database: start together, talk to in turn."""

from __future__ import annotations

import itertools
import os
import signal
import subprocess
import sys
import threading
from collections.abc import Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import asyncpg
import httpx

from tests.support.servers import BerthServer


def start_together(nodes: Sequence[BerthServer], timeout: float = 90.0) -> list[str]:
    """Start every node at the same moment; the error of each that failed to come up (empty: all serve)."""
    def one(node: BerthServer) -> str:
        try:
            node.start(timeout)
        except Exception as e:  # noqa: BLE001 - reported with the node's log
            return f"{node.url}: {type(e).__name__}: {e}\n{node.read_log()[-3000:]}"
        return ""

    with ThreadPoolExecutor(len(nodes)) as pool:
        return [e for e in pool.map(one, nodes) if e]


def stop_all(nodes: Iterable[BerthServer | Worker]) -> None:
    for node in nodes:
        node.stop()


async def _query(url: str, sql: str, *args: Any) -> list[Any]:
    conn = await asyncpg.connect(url)
    try:
        return list(await conn.fetch(sql, *args))
    finally:
        await conn.close()


def query(url: str, sql: str, *args: Any) -> list[Any]:
    """Rows of one statement on the cluster's database (a test's own view, outside Berth)."""
    import asyncio

    return asyncio.run(_query(url, sql, *args))


class RoundRobin:
    """A raw HTTP client that sends each request to the next node (what a load balancer does)."""

    def __init__(self, nodes: Sequence[BerthServer], timeout: float = 60.0) -> None:
        self.nodes = list(nodes)
        self._next = itertools.cycle(range(len(self.nodes)))
        self.clients = [httpx.Client(base_url=n.url, timeout=timeout) for n in self.nodes]

    def node(self) -> httpx.Client:
        return self.clients[next(self._next)]

    def request(self, method: str, url: str, **kw: Any) -> httpx.Response:
        """`url` may be a Location from another node: only its path and query are kept."""
        parsed = httpx.URL(url)
        target = parsed.raw_path.decode() if parsed.is_absolute_url else url
        return self.node().request(method, target, **kw)

    def close(self) -> None:
        for c in self.clients:
            c.close()

    def __enter__(self) -> RoundRobin:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class Worker:
    """One `berth worker` process on the cluster's database and storage."""

    def __init__(self, data_dir: Path, database_url: str, env: dict[str, str] | None = None,
                 args: Sequence[str] = ()) -> None:
        self.data_dir = data_dir
        self.database_url = database_url
        self.env = dict(env or {})
        self.args = list(args)
        self.proc: subprocess.Popen[bytes] | None = None
        self.log = data_dir.parent / f"worker-{data_dir.name}.log"

    def start(self) -> Worker:
        cmd = [sys.executable, "-m", "berth", "worker", "--data-dir", str(self.data_dir), "--database-url",
               self.database_url, *self.args]
        with open(self.log, "ab") as log:
            self.proc = subprocess.Popen(cmd, env={**os.environ, **self.env}, stdout=log, stderr=subprocess.STDOUT,
                                         start_new_session=True)
        return self

    def stop(self) -> None:
        if self.proc is None:
            return
        try:
            os.killpg(self.proc.pid, signal.SIGTERM)
        except ProcessLookupError:
            pass
        try:
            self.proc.wait(15)
        except subprocess.TimeoutExpired:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(10)
        self.proc = None


class PushFailed(Exception):
    """A push the registry refused or could not take; `response` is the answer that ended it."""

    def __init__(self, response: httpx.Response) -> None:
        super().__init__(f"{response.request.method} {response.request.url.path}: {response.status_code} "
                         f"{response.text[:300]}")
        self.response = response


def _expect(r: httpx.Response, status: int) -> httpx.Response:
    if r.status_code != status:
        raise PushFailed(r)
    return r


def push_blob_rr(rr: RoundRobin, name: str, data: bytes, chunks: int = 1) -> None:
    """POST on one node, each PATCH on the next, the closing PUT on the next again."""
    from tests.support.oci import sha256

    location = _expect(rr.request("POST", f"/v2/{name}/blobs/uploads/"), 202).headers["Location"]
    size = max(len(data) // chunks, 1)
    for start in range(0, len(data), size) if chunks > 1 else ():
        part = data[start:start + size]
        r = _expect(rr.request("PATCH", location, content=part, headers={
            "Content-Type": "application/octet-stream", "Content-Range": f"{start}-{start + len(part) - 1}"}), 202)
        location = r.headers["Location"]
    body = b"" if chunks > 1 else data
    _expect(rr.request("PUT", location, params={"digest": sha256(data)}, content=body,
                       headers={"Content-Type": "application/octet-stream"}), 201)


def push_image_rr(rr: RoundRobin, name: str, image: Any, ref: str, chunks: int = 1) -> str:
    """Every blob, then the manifest, each request to the next node; the manifest's digest when acknowledged
    (201). Raises PushFailed with the answer that stopped it."""
    for data in image.blobs:
        push_blob_rr(rr, name, data, chunks)
    r = _expect(rr.request("PUT", f"/v2/{name}/manifests/{ref}", content=image.body,
                           headers={"Content-Type": image.media_type}), 201)
    return str(r.headers["Docker-Content-Digest"])


def verify_pull(node: httpx.Client, name: str, ref: str, image: Any) -> None:
    """The manifest by `ref` and every blob it names, byte for byte, from this node."""
    from tests.support.oci import OCI_INDEX, OCI_MANIFEST, sha256

    r = node.get(f"/v2/{name}/manifests/{ref}", headers={"Accept": f"{OCI_MANIFEST}, {OCI_INDEX}"})
    assert r.status_code == 200, (node.base_url, name, ref, r.status_code, r.text[:300])
    assert r.content == image.body, (node.base_url, name, ref)
    for data in image.blobs:
        b = node.get(f"/v2/{name}/blobs/{sha256(data)}", follow_redirects=True)
        assert b.status_code == 200, (node.base_url, name, b.status_code, b.text[:300])
        assert sha256(b.content) == sha256(data), (node.base_url, name)


class RoundRobinProxy:
    """A loopback HTTP proxy that sends each request to the next node (what a load balancer without affinity
    does), for real clients such as skopeo. Bodies are buffered: test images only."""

    def __init__(self, nodes: Sequence[BerthServer]) -> None:
        import http.client
        import http.server

        ports = itertools.cycle([n.port for n in nodes])
        lock = threading.Lock()
        hop = {"connection", "keep-alive", "transfer-encoding", "content-length", "proxy-connection"}
        self.served: list[int] = []  # the node port of each request, in order

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: Any) -> None:
                pass

            def _body(self) -> bytes:
                if "chunked" in self.headers.get("Transfer-Encoding", "").lower():
                    out = bytearray()
                    while True:
                        size = int(self.rfile.readline().split(b";")[0].strip(), 16)
                        if size == 0:
                            while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                                pass
                            return bytes(out)
                        out += self.rfile.read(size)
                        self.rfile.readline()
                return self.rfile.read(int(self.headers.get("Content-Length") or 0))

            def forward(self) -> None:
                body = self._body()
                with lock:
                    port = next(ports)
                    outer.served.append(port)
                conn = http.client.HTTPConnection("127.0.0.1", port, timeout=300)
                try:
                    headers = {k: v for k, v in self.headers.items() if k.lower() not in hop}
                    headers["Content-Length"] = str(len(body))
                    conn.request(self.command, self.path, body=body, headers=headers)
                    resp = conn.getresponse()
                    data = resp.read()
                finally:
                    conn.close()
                self.send_response(resp.status)
                for k, v in resp.getheaders():
                    if k.lower() not in hop:
                        self.send_header(k, v)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                if self.command != "HEAD":
                    self.wfile.write(data)

            do_GET = do_HEAD = do_POST = do_PUT = do_PATCH = do_DELETE = forward

        outer = self
        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.port = self.server.server_address[1]
        self.host = f"127.0.0.1:{self.port}"
        self._thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self) -> RoundRobinProxy:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()
