"""A real CNCF distribution registry (Debian `docker-registry`) on 127.0.0.1, open or behind htpasswd
basic auth, stopped by PID; its access log says which requests it served."""

from __future__ import annotations

import subprocess
from pathlib import Path

from tests.support.servers import free_port, require_tool, wait_http

BINARY = "/usr/bin/docker-registry"


class Distribution:
    def __init__(self, root: Path, users: dict[str, str] | None = None, token: TokenService | None = None) -> None:
        self.root = Path(root)
        self.users = users
        self.token = token
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
        if self.token is not None:
            auth = self.token.config()
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


class TokenService:
    """A token service for distribution's `auth: token` (as Docker Hub's): Basic credentials in, a JWT
    out (RS256, the signing certificate in its x5c header, that certificate distribution's root bundle)."""

    def __init__(self, root: Path, users: dict[str, str], service: str = "berth-test-registry") -> None:
        import datetime
        import threading
        from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

        from cryptography import x509
        from cryptography.hazmat.primitives import hashes, serialization
        from cryptography.hazmat.primitives.asymmetric import rsa
        from cryptography.x509.oid import NameOID

        self.users, self.service, self.issued = users, service, 0
        self.key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "berth-test-token-issuer")])
        now = datetime.datetime.now(datetime.UTC)
        self.cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(self.key.public_key())
                     .serial_number(x509.random_serial_number()).not_valid_before(now - datetime.timedelta(days=1))
                     .not_valid_after(now + datetime.timedelta(days=1))
                     .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
                     .sign(self.key, hashes.SHA256()))
        root.mkdir(parents=True, exist_ok=True)
        self.bundle = root / "token-root.pem"
        self.bundle.write_bytes(self.cert.public_bytes(serialization.Encoding.PEM))
        service_ref = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802 - http.server's name
                service_ref._answer(self)

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.realm = f"http://127.0.0.1:{self.server.server_address[1]}/token"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def config(self) -> str:
        return (f"auth:\n  token:\n    realm: {self.realm}\n    service: {self.service}\n"
                f"    issuer: berth-test-issuer\n    rootcertbundle: {self.bundle}\n")

    def _answer(self, h) -> None:  # type: ignore[no-untyped-def]
        import base64
        import json
        import time
        import uuid
        from urllib.parse import parse_qs, urlsplit

        import jwt
        from cryptography.hazmat.primitives import serialization

        auth = h.headers.get("Authorization", "")
        user = None
        if auth.startswith("Basic "):
            name, _, password = base64.b64decode(auth[6:]).decode().partition(":")
            user = name if self.users.get(name) == password else None
        if user is None:
            h.send_response(401)
            h.end_headers()
            return
        query = parse_qs(urlsplit(h.path).query)
        access = []
        for scope in query.get("scope", []):
            kind, _, rest = scope.partition(":")
            repo, _, actions = rest.rpartition(":")
            access.append({"type": kind, "name": repo, "actions": [a for a in actions.split(",") if a]})
        now = int(time.time())
        x5c = base64.b64encode(self.cert.public_bytes(serialization.Encoding.DER)).decode()
        token = jwt.encode({"iss": "berth-test-issuer", "sub": user, "aud": self.service, "exp": now + 300,
                            "nbf": now - 10, "iat": now, "jti": uuid.uuid4().hex, "access": access},
                           self.key, algorithm="RS256", headers={"x5c": [x5c]})
        self.issued += 1
        body = json.dumps({"token": token, "expires_in": 300}).encode()
        h.send_response(200)
        h.send_header("Content-Type", "application/json")
        h.send_header("Content-Length", str(len(body)))
        h.end_headers()
        h.wfile.write(body)

    def close(self) -> None:
        self.server.shutdown()
