"""Minimal ASGI plumbing for the hot path: headers, bodies, responses. No framework objects."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable
from typing import Any

from berth.registry.errors import ManifestTooLarge

Scope = dict[str, Any]
Receive = Callable[[], Awaitable[dict[str, Any]]]
Send = Callable[[dict[str, Any]], Awaitable[None]]

API_VERSION = (b"docker-distribution-api-version", b"registry/2.0")
DRAIN_LIMIT = 256 << 10  # as Go's net/http: a larger unread body is not worth reading to keep the connection
DRAIN_SECONDS = 2.0


class ClientDisconnected(Exception):
    pass


PayloadTooLarge = ManifestTooLarge


def header(scope: Scope, name: bytes) -> str | None:
    for k, v in scope["headers"]:
        if k == name:
            return v.decode("latin-1")
    return None


class Body:
    """The request's `receive`, noting when its body has ended. An error answered before the body was read
    drains a small one first: unread bytes make the server close the connection, and a close with unread
    bytes is a reset that can destroy the answer on its way (a keep-alive client then sees a disconnect)."""

    __slots__ = ("_receive", "_declared", "ended")

    def __init__(self, receive: Receive, headers: dict[bytes, bytes]) -> None:
        self._receive = receive
        length = headers.get(b"content-length")
        self._declared = int(length) if length is not None and length.strip().isdigit() else None
        self.ended = b"transfer-encoding" not in headers and not self._declared

    async def __call__(self) -> dict[str, Any]:
        msg = await self._receive()
        if msg["type"] == "http.disconnect" or not msg.get("more_body", False):
            self.ended = True
        return msg

    async def drain(self, limit: int = DRAIN_LIMIT, seconds: float = DRAIN_SECONDS) -> None:
        """Read and drop the rest of a body declared (or, chunked, found) no longer than `limit` bytes."""
        if self.ended or (self._declared or 0) > limit:
            return

        async def drop() -> None:
            n = 0
            while not self.ended and n <= limit:
                n += len((await self()).get("body", b""))

        try:
            await asyncio.wait_for(drop(), seconds)
        except TimeoutError:  # a client that stops sending: the server's close is all that is left
            pass


async def body_chunks(receive: Receive) -> AsyncIterator[bytes]:
    while True:
        msg = await receive()
        if msg["type"] == "http.disconnect":
            raise ClientDisconnected
        body = msg.get("body", b"")
        if body:
            yield body
        if not msg.get("more_body", False):
            return


async def read_body(receive: Receive, limit: int) -> bytes:
    parts: list[bytes] = []
    size = 0
    async for chunk in body_chunks(receive):
        size += len(chunk)
        if size > limit:
            raise PayloadTooLarge(f"body larger than {limit} bytes")
        parts.append(chunk)
    return b"".join(parts)


def encode_headers(headers: Iterable[tuple[str, str]], length: int | None) -> list[tuple[bytes, bytes]]:
    out = [API_VERSION]
    out += [(k.lower().encode("latin-1"), v.encode("latin-1")) for k, v in headers]
    if length is not None:
        out.append((b"content-length", str(length).encode()))
    return out


async def respond(send: Send, status: int, headers: Iterable[tuple[str, str]] = (), body: bytes = b"",
                  head: bool = False, length: int | None = None) -> None:
    await respond_encoded(send, status, encode_headers(headers, len(body) if length is None else length), body, head)


async def respond_encoded(send: Send, status: int, headers: list[tuple[bytes, bytes]], body: bytes,
                          head: bool = False) -> None:
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": b"" if head else body})


async def respond_file(send: Send, status: int, headers: Iterable[tuple[str, str]], length: int, path: str) -> None:
    """The whole file at `path` as the body, sent by the server itself (the ASGI pathsend extension)."""
    await send({"type": "http.response.start", "status": status, "headers": encode_headers(headers, length)})
    await send({"type": "http.response.pathsend", "path": path})


Chunks = AsyncIterator[bytes] | AsyncIterator[bytearray]  # a bytearray chunk may be reused once sent


async def respond_stream(send: Send, status: int, headers: Iterable[tuple[str, str]], length: int,
                         chunks: Chunks, first: bytes | bytearray = b"") -> None:
    """`first`, then the rest of `chunks`. Read `first` before calling: a body that cannot be read at all
    then fails before the status line, while it can still be answered with an error."""
    await send({"type": "http.response.start", "status": status, "headers": encode_headers(headers, length)})
    if first:
        await send({"type": "http.response.body", "body": first, "more_body": True})
    async for chunk in chunks:
        await send({"type": "http.response.body", "body": chunk, "more_body": True})
    await send({"type": "http.response.body", "body": b""})
