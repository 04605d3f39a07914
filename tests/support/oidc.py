"""An OpenID Connect issuer on 127.0.0.1 for web-identity tests: its own RSA keys, discovery
document and JWKS, and tokens signed with them (PyJWT)."""

from __future__ import annotations

import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import jwt
from cryptography.hazmat.primitives.asymmetric import rsa

AUDIENCE = "sts.amazonaws.com"
SUBJECT = "repo:example/app:ref:refs/heads/main"


class Issuer:
    """An OpenID Connect issuer on 127.0.0.1: discovery, JWKS, and tokens signed with its keys."""

    def __init__(self) -> None:
        self.keys: dict[str, Any] = {}
        self.rotate()
        issuer = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802 - the stdlib's name
                if self.path == "/.well-known/openid-configuration":
                    body = {"issuer": issuer.url, "jwks_uri": f"{issuer.url}/jwks",
                            "id_token_signing_alg_values_supported": ["RS256"]}
                elif self.path == "/jwks":
                    body = issuer.jwks()
                else:
                    self.send_error(404)
                    return
                data = json.dumps(body).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *args: Any) -> None:
                pass

        self.http = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.http.server_address[1]}"
        self.thread = threading.Thread(target=self.http.serve_forever, daemon=True)
        self.thread.start()

    def jwks(self) -> dict[str, Any]:
        return {"keys": [dict(json.loads(jwt.algorithms.RSAAlgorithm.to_jwk(k.public_key())), kid=kid, use="sig",
                              alg="RS256") for kid, k in self.keys.items()]}

    def rotate(self) -> str:
        kid = f"key-{len(self.keys) + 1}"
        self.keys[kid] = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        return kid

    def token(self, kid: str = "key-1", key: Any = None, **claims: Any) -> str:
        now = int(time.time())
        body = {"iss": self.url, "sub": SUBJECT, "aud": AUDIENCE, "iat": now, "exp": now + 300, **claims}
        return jwt.encode(body, key or self.keys[kid], algorithm="RS256", headers={"kid": kid})

    def close(self) -> None:
        self.http.shutdown()
        self.http.server_close()
