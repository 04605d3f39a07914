"""The access log and request ids: one ASGI middleware around the whole app.

Every HTTP response carries `X-Request-Id` (the AWS faces' own `x-amzn-RequestId` when they set one,
so both name the same request). One line per request goes to stderr: a JSON object, or the common log
format with `--log-format text`. The edges tell it who asked and what was denied through
`scope["berth"]` (a dict this middleware puts there: principal, account, operation, denied); they
never import this package.

The line costs little on the request path (bench/access_log.py): the fields a client repeats (remote,
principal, account, method, path, route) are escaped once and kept as one string, the time stamp's
second once a second, and lines are written in batches, once per event-loop turn (a burst of finished
requests is one write, an idle server's line is out at once).
"""

from __future__ import annotations

import asyncio
import itertools
import json
import logging
import sys
import time
import uuid
from collections.abc import Callable
from typing import Any

from berth.observe.metrics import Metrics

Scope = dict[str, Any]
App = Callable[..., Any]
TARGET_PREFIX = "AmazonEC2ContainerRegistry_V20150921."
STATIC_CACHE = 4096  # distinct (remote, principal, account, method, path, route) kept pre-escaped


def face_and_route(scope: Scope, note: dict[str, Any]) -> tuple[str, str]:
    """(face, route or operation): low-cardinality names for the log and the metrics."""
    path: str = scope["path"]
    if path.startswith("/v2"):
        rest = path[4:]
        if not rest:
            return "oci", "base"
        if rest == "_catalog":
            return "oci", "catalog"
        for kind in ("/blobs/uploads", "/manifests/", "/blobs/", "/tags/list", "/referrers/"):
            if kind in rest:
                return "oci", kind.strip("/").replace("/", "_")
        return "oci", "other"
    if path == "/" and "operation" in note:
        return note.get("face", "ecr"), note["operation"]
    if path == "/":
        return "aws", "unknown"
    if path in ("/metrics", "/healthz", "/readyz"):
        return "web", path[1:]
    return "web", "other"


class Observe:
    """Request id, access log line and request metrics for every HTTP request."""

    def __init__(self, app: App, metrics: Metrics | None, log_format: str = "json", access_log: bool = True,
                 write: Callable[[str], Any] | None = None) -> None:
        self.app = app
        self.metrics = metrics
        self.text = log_format == "text"
        self.access_log = access_log
        self.write = write or sys.stderr.write
        # request ids: a random per-process prefix and a counter, UUID-shaped; uuid4() per request costs a
        # getrandom() call, measurable on the manifest GET path
        self._prefix = str(uuid.uuid4())[:24]
        self._ids = itertools.count(1)
        self._second = -1
        self._stamp = ""
        self._static: dict[tuple[Any, ...], str] = {}
        self._pending: list[str] = []  # lines of this event-loop turn, written by _flush

    def _emit(self, line: str) -> None:
        pending = self._pending
        pending.append(line)
        if len(pending) == 1:
            try:
                asyncio.get_running_loop().call_soon(self._flush)
            except RuntimeError:  # no loop (a direct call): at once
                self._flush()

    def _flush(self) -> None:
        lines, self._pending = self._pending, []
        if lines:
            try:
                self.write("".join(lines))
            except Exception:  # noqa: BLE001 - stderr gone: the lines are lost, requests are not
                logging.getLogger("berth.observe").debug("%d access log lines lost", len(lines), exc_info=True)

    def __getattr__(self, name: str) -> Any:  # the wrapped app's own attributes (its startup, its settings)
        return getattr(self.app, name)

    async def __call__(self, scope: Scope, receive: Callable[..., Any], send: Callable[..., Any]) -> None:
        if scope["type"] != "http":
            if scope["type"] == "lifespan":  # the last turn's lines out before the server stops
                async def flushing_send(msg: dict[str, Any]) -> None:
                    if msg["type"] == "lifespan.shutdown.complete":
                        self._flush()
                    await send(msg)

                return await self.app(scope, receive, flushing_send)
            return await self.app(scope, receive, send)
        started = time.perf_counter()
        note: dict[str, Any] = {}
        scope["berth"] = note
        state: list[Any] = [0, 0, 0, "", ()]  # status, bytes in, bytes out, request id, response headers

        async def counting_receive() -> dict[str, Any]:
            msg = await receive()
            body = msg.get("body")
            if body:
                state[1] += len(body)
            return msg  # type: ignore[no-any-return]

        async def tagging_send(msg: dict[str, Any]) -> None:
            if msg["type"] == "http.response.body":
                state[2] += len(msg.get("body", b""))
            elif msg["type"] == "http.response.pathsend":  # the server sends the file: its length was announced
                state[2] += next((int(v) for k, v in state[4] if k == b"content-length"), 0)
            elif msg["type"] == "http.response.start":
                state[0] = msg["status"]
                headers = state[4] = msg.get("headers") or []
                rid = None
                for k, v in headers:
                    if k == b"x-amzn-requestid" or k == b"x-request-id":
                        rid = v
                        if k == b"x-request-id":
                            break
                else:  # no X-Request-Id yet: the AWS face's id, else a new one. The list may be an edge's cache.
                    if rid is None:
                        rid = f"{self._prefix}{next(self._ids):012x}".encode()
                    msg["headers"] = [*headers, (b"x-request-id", rid)]
                state[3] = rid.decode("latin-1")
            await send(msg)

        try:
            await self.app(scope, counting_receive, tagging_send)
        finally:
            try:
                self._finish(scope, note, state, time.perf_counter() - started)
            except Exception:  # noqa: BLE001 - a log or metrics failure (stderr gone) never fails a request
                logging.getLogger("berth.observe").debug("access log line lost", exc_info=True)

    def _finish(self, scope: Scope, note: dict[str, Any], state: list[Any], seconds: float) -> None:
        status, bytes_in, bytes_out, rid, _ = state
        if "operation" not in note and scope["path"] == "/":
            target = _header(scope, b"x-amz-target")
            if target is not None and target.startswith(TARGET_PREFIX):
                note["operation"], note["face"] = target[len(TARGET_PREFIX):], "ecr"
        face, route = face_and_route(scope, note)
        if self.metrics is not None:
            self.metrics.request(face, route, scope["method"], status, seconds, bytes_in, bytes_out,
                                 note.get("denied"))
        if not self.access_log:
            return
        client = scope.get("client") or ("-", 0)
        if self.text:
            self._emit(_common_log(scope, client[0], note, status, bytes_out, rid, seconds) + "\n")
            return
        # by hand: json.dumps of a whole record is most of the log's cost; strings are escaped by _q
        principal, account, denied = note.get("principal"), note.get("account"), note.get("denied")
        key = (client[0], principal, account, scope["method"], scope["path"], face, route)
        static = self._static.get(key)
        if static is None:
            static = (f'"remote":{_q(client[0])},"principal":{_q(principal)},"account":{_q(account)},'
                      f'"method":{_q(scope["method"])},"path":{_q(scope["path"])},"face":"{face}",'
                      f'"operation":{_q(route)}')
            if len(self._static) >= STATIC_CACHE:
                self._static.clear()
            self._static[key] = static
        self._emit(f'{{"time":"{self._now()}","request_id":"{rid}",{static},"status":{status},'
                   f'"bytes_in":{bytes_in},"bytes_out":{bytes_out},"duration_ms":{seconds * 1000:.3f}'
                   + (f',"denied_action":{_q(denied)}}}\n' if denied else "}\n"))

    def _now(self) -> str:
        ms = int(time.time() * 1000)
        second, ms = divmod(ms, 1000)
        if second != self._second:
            self._second, self._stamp = second, time.strftime("%Y-%m-%dT%H:%M:%S.", time.gmtime(second))
        return f"{self._stamp}{ms:03d}Z"


def _q(value: Any) -> str:
    if value is None:
        return "null"
    if value.isascii() and value.isprintable() and '"' not in value and "\\" not in value:
        return f'"{value}"'  # nothing to escape: the common case, without json.dumps' call
    return json.dumps(value)  # ASCII: a lone surrogate in a path is \\ud800, never an encoding error


def _header(scope: Scope, name: bytes) -> str | None:
    for k, v in scope["headers"]:
        if k == name:
            return v.decode("latin-1")
    return None


def _common_log(scope: Scope, remote: str, note: dict[str, Any], status: int, bytes_out: int, rid: str,
                seconds: float) -> str:
    """NCSA common log format, then the request id, the duration, and a denied action if any."""
    when = time.strftime("%d/%b/%Y:%H:%M:%S +0000", time.gmtime())
    qs = scope.get("query_string", b"")
    target = scope["path"] + ("?" + _masked_query(qs.decode("latin-1")) if qs else "")
    user = note.get("principal") or "-"
    op = note.get("operation")
    extra = f" op={op}" if op else ""
    if "denied" in note:
        extra += f" denied={note['denied']}"
    return (f'{remote} - {user} [{when}] "{scope["method"]} {target} HTTP/{scope.get("http_version", "1.1")}" '
            f"{status} {bytes_out or '-'} rid={rid} ms={seconds * 1000:.1f}{extra}")


_SECRET_PARAMS = ("signature", "credential", "token", "security", "password", "secret")


def _masked_query(qs: str) -> str:
    """The query with the values of credential-bearing parameters (presigned URLs, download tokens) masked."""
    if not any(p in qs.lower() for p in _SECRET_PARAMS):
        return qs
    out = []
    for part in qs.split("&"):
        name, eq, _ = part.partition("=")
        out.append(f"{name}=***" if eq and any(p in name.lower() for p in _SECRET_PARAMS) else part)
    return "&".join(out)
