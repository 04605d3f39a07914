"""The audit records of /v2 writes: a push, a blob upload, a delete, whichever client made it.

Wraps the OCI face for PUT/POST/PATCH/DELETE only (reads pass straight through), and records what it
answered: the ECR action the write maps to (PutImage, InitiateLayerUpload, UploadLayerPart,
CompleteLayerUpload, BatchDeleteImage, …), who (the registry token's principal), from where, and the
OCI error code of a refusal. A write that succeeds is recorded before its response starts, so every
acknowledged write has its record; a refusal after its body (which holds its error code).
"""

from __future__ import annotations

import json
import re
from typing import Any
from urllib.parse import parse_qsl

from berth.api.auth import Authenticator
from berth.api.oci.http import Receive, Scope, Send, header
from berth.audit import AuditNote, AuditTrail

WRITES = frozenset({"PUT", "POST", "PATCH", "DELETE"})
_HOST = re.compile(r"(\d{12})\.dkr\.ecr\.([a-z0-9-]+)\.")
_ERROR_BODY = 4096


def event_of(method: str, path: str, query: str) -> tuple[str, dict[str, Any]]:
    """(ECR event name, request parameters) of a /v2 write."""
    rest = path[4:] if path.startswith("/v2/") else ""
    for marker in ("/manifests/", "/blobs/uploads", "/blobs/"):
        name, sep, ref = rest.rpartition(marker)
        if not sep:
            continue
        params: dict[str, Any] = {"repositoryName": name}
        if marker == "/manifests/":
            params["imageTag" if ":" not in ref else "imageDigest"] = ref
            return ("PutImage" if method == "PUT" else "BatchDeleteImage"), params
        if marker == "/blobs/uploads":
            upload = ref.strip("/")
            if upload:
                params["uploadId"] = upload
            q = dict(parse_qsl(query))
            if "mount" in q:
                params["mount"], params["from"] = q["mount"][:200], q.get("from", "")[:300]
            if "digest" in q:
                params["layerDigest"] = q["digest"][:200]
            if method == "POST" and "digest" in q:  # a monolithic upload: complete in one request
                return "CompleteLayerUpload", params
            return {"POST": "InitiateLayerUpload", "PATCH": "UploadLayerPart", "PUT": "CompleteLayerUpload",
                    "DELETE": "AbortLayerUpload"}.get(method, method), params
        params["layerDigest"] = ref
        return "DeleteLayer", params
    return f"{method} {path[:200]}", {}


class AuditedWrites:
    def __init__(self, trail: AuditTrail, authn: Authenticator, default_account: str, default_region: str) -> None:
        self.trail = trail
        self.authn = authn
        self.default_account = default_account
        self.default_region = default_region

    async def __call__(self, face: Any, scope: Scope, receive: Receive, send: Send) -> None:
        method = scope["method"]
        if method not in WRITES:
            await face(scope, receive, send)
            return
        status = 0
        answer: dict[str, str] = {}
        body = bytearray()
        recorded = False

        async def watch(message: Any) -> None:
            nonlocal status, recorded
            if message["type"] == "http.response.start":
                status = int(message["status"])
                for k, v in message.get("headers", ()):
                    if k.lower() in (b"docker-content-digest", b"docker-upload-uuid"):
                        answer[k.decode().lower()] = v.decode("latin-1")
                if status < 400:  # a write acknowledged: its record is committed before the client hears so
                    recorded = True
                    await self._record(scope, status, answer, b"")
            elif message["type"] == "http.response.body" and status >= 400 and len(body) < _ERROR_BODY:
                body.extend(message.get("body", b"")[:_ERROR_BODY])
            await send(message)

        try:
            await face(scope, receive, watch)
        finally:
            if not recorded:  # a refusal (its error code is in the body), or no answer at all
                await self._record(scope, status, answer, bytes(body))

    async def _record(self, scope: Scope, status: int, answer: dict[str, str], body: bytes) -> None:
        client = scope.get("client") or ("",)
        note = AuditNote("ecr.amazonaws.com", str(client[0]), header(scope, b"user-agent") or "")
        name, params = event_of(scope["method"], scope["path"], scope.get("query_string", b"").decode("latin-1"))
        note.event_name, note.request_parameters = name, params
        host = header(scope, b"host") or ""
        m = _HOST.match(host)
        note.account, note.region = (m.group(1), m.group(2)) if m else (self.default_account, self.default_region)
        params["registryId"] = note.account
        principal = self.authn.registry_principal(header(scope, b"authorization"))
        if principal is not None:
            note.caller(principal)
            note.account = note.account if m else principal.account
        if status >= 400 or status == 0:
            note.error_code, note.error_message = _oci_error(status, body)
        else:
            note.response_elements = {"imageDigest" if name == "PutImage" else "digest":
                                      answer.get("docker-content-digest"),
                                      "uploadId": answer.get("docker-upload-uuid")}
        await self.trail.record(note)


def _oci_error(status: int, body: bytes) -> tuple[str, str | None]:
    try:
        err = json.loads(body)["errors"][0]
        return str(err.get("code") or status), str(err.get("message") or "")[:1024]
    except (ValueError, KeyError, IndexError, TypeError):
        return ("ClientDisconnected" if status == 0 else str(status)), None
