"""POST /: the AWS control plane on the registry's port. ECR (JSON 1.1, X-Amz-Target) or IAM/STS (query)."""

from __future__ import annotations

from typing import Protocol

from berth.api.ecr.app import MAX_BODY, EcrApi
from berth.api.ecr.errors import error_body
from berth.api.oci.http import ClientDisconnected, PayloadTooLarge, Receive, Scope, Send, header, read_body


class QueryApi(Protocol):
    async def handle(self, method: str, raw_path: str, query: str, headers: object, body: bytes, client_ip: str,
                     secure: bool, host: str) -> tuple[int, dict[str, str], bytes]: ...


class ControlPlane:
    def __init__(self, ecr: EcrApi, query_api: QueryApi | None = None) -> None:
        self.ecr = ecr
        self.query_api = query_api

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        try:
            body = await read_body(receive, MAX_BODY)
        except PayloadTooLarge:
            await _send(send, *error_body("SerializationException", "request body too large"))
            return
        except ClientDisconnected:
            return
        raw_path = scope.get("raw_path") or scope["path"].encode()
        args = (scope["method"], raw_path.decode("latin-1"), scope.get("query_string", b"").decode("latin-1"),
                scope["headers"], body)
        client_ip = (scope.get("client") or ("",))[0]
        secure = scope.get("scheme") == "https"
        host = header(scope, b"host") or "localhost"
        target = header(scope, b"x-amz-target")
        if target is not None:
            result = await self.ecr.handle(*args, target, client_ip, secure, host)
        elif self.query_api is not None:
            result = await self.query_api.handle(*args, client_ip, secure, host)
        else:
            result = error_body("UnknownOperationException", "missing X-Amz-Target")
        await _send(send, *result)


async def _send(send: Send, status: int, headers: dict[str, str], body: bytes) -> None:
    raw = [(k.lower().encode(), v.encode()) for k, v in headers.items()]
    raw.append((b"content-length", str(len(body)).encode()))
    await send({"type": "http.response.start", "status": status, "headers": raw})
    await send({"type": "http.response.body", "body": body})
