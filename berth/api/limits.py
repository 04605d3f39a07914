"""Request rate limits per account and per principal: token buckets, off unless configured.

A request is charged once its caller is known (a verified registry token on /v2; a verified
signature on the control plane), to its account's bucket and its principal's bucket; when either is
empty it is refused — OCI `429 TOOMANYREQUESTS`, AWS `ThrottlingException` (ECR) or `Throttling`
(IAM, STS) — with `Retry-After`, the seconds until a token is back. Buckets live in each process: N
nodes (or workers) allow N times the rate; size the rates per process.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

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


class TokenBuckets:
    def __init__(self, rate: Rate, clock: Callable[[], float] = time.monotonic) -> None:
        self.rate = rate
        self.clock = clock
        self._buckets: dict[str, tuple[float, float]] = {}  # key -> (tokens, when)

    def _level(self, key: str, now: float) -> float:
        tokens, when = self._buckets.get(key, (self.rate.burst, now))
        return min(self.rate.burst, tokens + (now - when) * self.rate.per_second)

    def wait(self, key: str) -> float:
        """0 if a token is there now; else the seconds until one is."""
        level = self._level(key, self.clock())
        return 0.0 if level >= 1.0 else (1.0 - level) / self.rate.per_second

    def take(self, key: str) -> None:
        now = self.clock()
        if len(self._buckets) >= MAX_BUCKETS:
            keep = sorted(self._buckets.items(), key=lambda kv: kv[1][1])[MAX_BUCKETS // 2:]
            self._buckets = dict(keep)
        self._buckets[key] = (self._level(key, now) - 1.0, now)


class Limits:
    def __init__(self, account: Rate | None, principal: Rate | None,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.account = TokenBuckets(account, clock) if account else None
        self.principal = TokenBuckets(principal, clock) if principal else None

    @property
    def on(self) -> bool:
        return self.account is not None or self.principal is not None

    def check(self, principal: Principal) -> float:
        """Charge one request of `principal`: 0 when allowed, else the seconds to wait (nothing charged)."""
        pairs = [(b, k) for b, k in ((self.account, principal.account), (self.principal, principal.arn))
                 if b is not None and k]
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
