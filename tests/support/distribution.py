"""A real CNCF distribution registry (Debian `docker-registry`) on 127.0.0.1, open or behind htpasswd
basic auth, stopped by PID; its access log says which requests it served."""

from __future__ import annotations

import subprocess
from pathlib import Path

from tests.support.servers import free_port, require_tool, wait_http

BINARY = "/usr/bin/docker-registry"


class Distribution:
    def __init__(self, root: Path, users: dict[str, str] | None = None) -> None:
        self.root = Path(root)
        self.users = users
        self.port = free_port()
        self.host = f"127.0.0.1:{self.port}"
        self.url = f"http://{self.host}"
        self.log = self.root / "registry.log"
        self.proc: subprocess.Popen | None = None

    def _config(self) -> Path:
        self.root.mkdir(parents=True, exist_ok=True)
        auth = ""
        if self.users is not None:
            import bcrypt

            lines = [f"{u}:{bcrypt.hashpw(p.encode(), bcrypt.gensalt(rounds=4)).decode()}"
                     for u, p in self.users.items()]
            (self.root / "htpasswd").write_text("\n".join(lines) + "\n")
            auth = f"auth:\n  htpasswd:\n    realm: berth-test\n    path: {self.root / 'htpasswd'}\n"
        config = self.root / "config.yml"
        config.write_text(
            "version: 0.1\nlog:\n  level: info\n  accesslog:\n    disabled: false\n"
            f"storage:\n  filesystem:\n    rootdirectory: {self.root / 'data'}\n  delete:\n    enabled: true\n"
            f"http:\n  addr: {self.host}\n{auth}")
        return config

    def start(self) -> Distribution:
        require_tool(BINARY)
        config = self._config()
        with open(self.log, "ab") as log:
            self.proc = subprocess.Popen([BINARY, "serve", str(config)], stdout=log, stderr=subprocess.STDOUT,
                                         start_new_session=True)
        try:
            wait_http(self.url + "/v2/", 30.0, self.proc)
        except BaseException:
            self.stop()
            raise
        return self

    def stop(self) -> None:
        if self.proc is None:
            return
        self.proc.terminate()
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(10)
        self.proc = None

    def served(self, needle: str) -> int:
        """How many requests of the access log contain `needle` (e.g. 'GET /v2/x/blobs/sha256:...')."""
        text = self.log.read_text(errors="replace") if self.log.exists() else ""
        return sum(1 for line in text.splitlines() if needle in line and '"' in line)


class GatedProxy:
    """A TCP proxy on 127.0.0.1 in front of `target` that, on each connection, holds the upstream's bytes
    after the first `limit` until `release()`: a slow upstream whose pace the test decides."""

    def __init__(self, target_port: int, limit: int) -> None:
        import socket
        import threading

        self.target_port = target_port
        self.limit = limit
        self.gate = threading.Event()
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(16)
        self.port = self.sock.getsockname()[1]
        self.host = f"127.0.0.1:{self.port}"
        self._closed = False
        threading.Thread(target=self._accept, daemon=True).start()

    def release(self) -> None:
        self.gate.set()

    def close(self) -> None:
        self._closed = True
        self.gate.set()
        self.sock.close()

    def _accept(self) -> None:
        import socket
        import threading

        while not self._closed:
            try:
                client, _ = self.sock.accept()
            except OSError:
                return
            upstream = socket.create_connection(("127.0.0.1", self.target_port))
            threading.Thread(target=self._pipe, args=(client, upstream, False), daemon=True).start()
            threading.Thread(target=self._pipe, args=(upstream, client, True), daemon=True).start()

    def _pipe(self, src, dst, gated: bool) -> None:  # type: ignore[no-untyped-def]
        sent = 0
        try:
            while data := src.recv(65536):
                if gated and sent + len(data) > self.limit:
                    self.gate.wait()
                dst.sendall(data)
                sent += len(data)
        except OSError:
            pass
        finally:
            for s in (src, dst):
                try:
                    s.shutdown(2)
                except OSError:
                    pass
