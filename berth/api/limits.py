"""Request rate limits per account and per principal: token buckets, off unless configured.

A request is charged once its caller is known (a verified registry token on /v2; a verified
signature on the control plane), to its account's bucket and its principal's bucket; when either is
empty it is refused — OCI `429 TOOMANYREQUESTS`, AWS `ThrottlingException` (ECR) or `Throttling`
(IAM, STS) — with `Retry-After`, the seconds until a token is back.

The worker processes of one node share their buckets (SharedTable: a small file in the data dir,
mapped into each worker, changed under an fcntl lock, one lock per request), so `--workers N` allows
the configured rate, not N times it. Nodes do not share them: N nodes allow N times the rate (size
the rates per node, README "Rate limits"). CLOCK_MONOTONIC is one clock for every process of a host.
"""

from __future__ import annotations

import fcntl
import hashlib
import math
import mmap
import os
import struct
import time
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager, nullcontext
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from berth.api.oci.errors import error_body
from berth.api.oci.http import Send
from berth.iam.authz import Principal

MAX_BUCKETS = 100_000  # more keys than this: the oldest-touched half is dropped (they were full or near)


@dataclass(frozen=True)
class Rate:
    per_second: float
    burst: float  # the bucket's size: this many at once after a quiet spell

    @classmethod
    def of(cls, per_second: float, burst: float = 0) -> Rate | None:
        """None (no limit) for a rate of 0; a burst of 0 means twice the rate (at least 1)."""
        if per_second <= 0:
            return None
        return cls(float(per_second), float(burst) if burst > 0 else max(1.0, 2.0 * per_second))


class Store(Protocol):
    def get(self, key: str) -> tuple[float, float] | None: ...
    def put(self, key: str, tokens: float, when: float) -> None: ...


class LocalStore:
    """This process's buckets (tests; a server uses SharedTable)."""

    def __init__(self) -> None:
        self._buckets: dict[str, tuple[float, float]] = {}  # key -> (tokens, when)

    def get(self, key: str) -> tuple[float, float] | None:
        return self._buckets.get(key)

    def put(self, key: str, tokens: float, when: float) -> None:
        if len(self._buckets) >= MAX_BUCKETS:
            keep = sorted(self._buckets.items(), key=lambda kv: kv[1][1])[MAX_BUCKETS // 2:]
            self._buckets = dict(keep)
        self._buckets[key] = (tokens, when)


_SLOT = struct.Struct("<Qdd")  # key hash (0: empty), tokens, when
SLOTS = 1 << 16  # 1.5 MB; a key whose probe window is full takes the slot touched longest ago
PROBES = 8


class SharedTable:
    """Buckets in a file every worker process of a node maps: an open-addressing table of key hashes.

    A lost slot (a reboot, an eviction) is a full bucket again: never a refusal that should not be."""

    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.lockf(fd, fcntl.LOCK_EX)
            if os.fstat(fd).st_size != SLOTS * _SLOT.size:  # new (or another layout): start empty
                os.ftruncate(fd, 0)
                os.ftruncate(fd, SLOTS * _SLOT.size)
            fcntl.lockf(fd, fcntl.LOCK_UN)
            self._map = mmap.mmap(fd, SLOTS * _SLOT.size)
        except BaseException:
            os.close(fd)
            raise
        self._fd = fd

    @contextmanager
    def locked(self) -> Iterator[None]:
        fcntl.lockf(self._fd, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.lockf(self._fd, fcntl.LOCK_UN)

    @staticmethod
    def _hash(key: str) -> int:
        return int.from_bytes(hashlib.blake2b(key.encode(), digest_size=8).digest(), "little") | 1

    def _find(self, h: int) -> tuple[int, bool]:
        """The slot holding h (True), else the slot to put it in (False)."""
        start = h % SLOTS
        victim, oldest = start, math.inf
        for i in range(PROBES):
            slot = (start + i) % SLOTS
            k, _tokens, when = _SLOT.unpack_from(self._map, slot * _SLOT.size)
            if k == h:
                return slot, True
            if k == 0:
                return slot, False
            if when < oldest:
                victim, oldest = slot, when
        return victim, False

    def get(self, key: str) -> tuple[float, float] | None:
        slot, found = self._find(self._hash(key))
        if not found:
            return None
        _, tokens, when = _SLOT.unpack_from(self._map, slot * _SLOT.size)
        return tokens, when

    def put(self, key: str, tokens: float, when: float) -> None:
        h = self._hash(key)
        slot, _ = self._find(h)
        _SLOT.pack_into(self._map, slot * _SLOT.size, h, tokens, when)

    def close(self) -> None:
        self._map.close()
        os.close(self._fd)


class TokenBuckets:
    def __init__(self, rate: Rate, clock: Callable[[], float] = time.monotonic, store: Store | None = None,
                 name: str = "") -> None:
        self.rate = rate
        self.clock = clock
        self.store: Store = store if store is not None else LocalStore()
        self.name = name  # keys of two kinds of bucket in one store

    def _level(self, key: str, now: float) -> float:
        tokens, when = self.store.get(self.name + key) or (self.rate.burst, now)
        if when > now:  # written before a reboot (a new monotonic clock): full
            return self.rate.burst
        return min(self.rate.burst, tokens + (now - when) * self.rate.per_second)

    def wait(self, key: str) -> float:
        """0 if a token is there now; else the seconds until one is."""
        level = self._level(key, self.clock())
        return 0.0 if level >= 1.0 else (1.0 - level) / self.rate.per_second

    def take(self, key: str) -> None:
        now = self.clock()
        self.store.put(self.name + key, self._level(key, now) - 1.0, now)


class Limits:
    def __init__(self, account: Rate | None, principal: Rate | None,
                 clock: Callable[[], float] = time.monotonic, shared: Path | None = None) -> None:
        """`shared`: the file of the node's SharedTable (made when a limit is on); None: this process only."""
        self.table = SharedTable(shared) if shared is not None and (account or principal) else None
        store = self.table  # one store, two kinds of key
        self.account = TokenBuckets(account, clock, store, "a:") if account else None
        self.principal = TokenBuckets(principal, clock, store, "p:") if principal else None

    @property
    def on(self) -> bool:
        return self.account is not None or self.principal is not None

    def check(self, principal: Principal) -> float:
        """Charge one request of `principal`: 0 when allowed, else the seconds to wait (nothing charged)."""
        pairs = [(b, k) for b, k in ((self.account, principal.account), (self.principal, principal.arn))
                 if b is not None and k]
        lock: AbstractContextManager[None] = self.table.locked() if self.table is not None else nullcontext()
        with lock:  # the other workers' charges land before or after this one, never between
            wait = max((b.wait(k) for b, k in pairs), default=0.0)
            if wait > 0:
                return wait
            for b, k in pairs:
                b.take(k)
        return 0.0


def retry_after(wait: float) -> str:
    return str(max(1, math.ceil(wait)))


def message(wait: float) -> str:
    return f"Rate exceeded: too many requests for this account or principal; retry after {retry_after(wait)} s"


async def send_oci_throttled(send: Send, wait: float) -> None:
    status, body = error_body("TOOMANYREQUESTS", message(wait))
    headers: list[Any] = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()),
                          (b"retry-after", retry_after(wait).encode())]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})
