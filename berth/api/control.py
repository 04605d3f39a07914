"""POST /: the AWS control plane on the registry's port. ECR (JSON 1.1, X-Amz-Target) or IAM/STS (query)."""

from __future__ import annotations

import logging
import uuid
from typing import Any, Protocol

from berth.api.ecr import errors as ecr_errors
from berth.api.ecr.app import MAX_BODY, EcrApi
from berth.api.ecr.errors import error_body
from berth.api.iam import xml
from berth.api.oci.http import ClientDisconnected, PayloadTooLarge, Receive, Scope, Send, header, read_body
from berth.api.secrets.app import TARGET_PREFIX as SECRETS_TARGET
from berth.api.secrets.app import SecretsApi

log = logging.getLogger("berth.control")


class QueryApi(Protocol):
    async def handle(self, method: str, raw_path: str, query: str, headers: object, body: bytes, client_ip: str,
                     secure: bool, host: str,
                     note: dict[str, Any] | None = None) -> tuple[int, dict[str, str], bytes]: ...


class ControlPlane:
    def __init__(self, ecr: EcrApi, query_api: QueryApi | None = None, secrets: SecretsApi | None = None) -> None:
        self.ecr = ecr
        self.query_api = query_api
        self.secrets = secrets  # Secrets Manager (X-Amz-Target: secretsmanager.<Op>)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        try:
            await self._handle(scope, receive, send)
        except Exception:  # each face answers its own faults; this is the net under them
            request_id = str(uuid.uuid4())
            log.exception("control plane request failed; request id %s", request_id)
            if header(scope, b"x-amz-target") is not None:
                await _send(send, *ecr_errors.fault(request_id))
            else:
                await _send(send, *_query_error(500, "ServiceFailure", "internal error", request_id))

    async def _handle(self, scope: Scope, receive: Receive, send: Send) -> None:
        try:
            body = await read_body(receive, MAX_BODY)
        except PayloadTooLarge:
            await _send(send, *error_body("SerializationException", "request body too large"))
            return
        except ClientDisconnected:  # gone, or (granian says so too) a malformed chunked body: see _cut_short
            await _cut_short(scope, send)
            return
        raw_path = scope.get("raw_path") or scope["path"].encode()
        args = (scope["method"], raw_path.decode("latin-1"), scope.get("query_string", b"").decode("latin-1"),
                scope["headers"], body)
        client_ip = (scope.get("client") or ("",))[0]
        secure = scope.get("scheme") == "https"
        host = header(scope, b"host") or "localhost"
        target = header(scope, b"x-amz-target")
        note = scope.get("berth")  # the access log's (berth/observe), when it runs
        if target is not None and target.startswith(SECRETS_TARGET) and self.secrets is not None:
            result = await self.secrets.handle(*args, target, client_ip, secure, host)
        elif target is not None:
            result = await self.ecr.handle(*args, target, client_ip, secure, host, note)
        elif self.query_api is not None:
            result = await self.query_api.handle(*args, client_ip, secure, host, note)
        else:
            result = error_body("UnknownOperationException", "missing X-Amz-Target")
        await _send(send, *result)


async def unavailable(scope: Scope, send: Send) -> None:
    """503 in the shape of the face asked (ECR JSON or IAM/STS XML): the app has not started (no lifespan
    startup has run) or is shutting down. The body is left unread."""
    request_id = str(uuid.uuid4())
    message = "Berth is not serving: it has not started (or is shutting down); retry shortly"
    if header(scope, b"x-amz-target") is not None:
        await _send(send, *error_body("ServiceUnavailable", message, request_id=request_id))
    else:
        await _send(send, *_query_error(503, "ServiceUnavailable", message, request_id))


async def _cut_short(scope: Scope, send: Send) -> None:
    """400 in the face's shape for a body that ended early or whose chunked encoding is malformed; granian
    reports both as `http.disconnect` on a connection still open. A client really gone drops the answer."""
    message = "the request body ended early or its chunked encoding is malformed"
    if header(scope, b"x-amz-target") is not None:
        result = error_body("SerializationException", message)
    else:
        result = _query_error(400, "MalformedInput", message, str(uuid.uuid4()))
    try:
        await _send(send, *result)
    except Exception:  # noqa: BLE001 - the client has really gone
        log.debug("client gone before an answer")


def _query_error(status: int, code: str, message: str, request_id: str) -> tuple[int, dict[str, str], bytes]:
    headers = {"Content-Type": "text/xml", "x-amzn-RequestId": request_id}
    return status, headers, xml.error_document("iam", code, message, request_id, sender=status < 500)


async def _send(send: Send, status: int, headers: dict[str, str], body: bytes) -> None:
    raw = [(k.lower().encode(), v.encode()) for k, v in headers.items()]
    raw.append((b"content-length", str(len(body)).encode()))
    await send({"type": "http.response.start", "status": status, "headers": raw})
    await send({"type": "http.response.body", "body": body})
