"""Job kinds: kind -> async handler, with its retry policy; periodic kinds also carry an interval.

Handlers must be idempotent: a job may run again after a crash, a lost lease or a coalesced re-enqueue.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from berth.db.jobs import DEFAULT_MAX_ATTEMPTS, Job

Handler = Callable[[Job], Awaitable[None]]


@dataclass(frozen=True, slots=True)
class Kind:
    name: str
    run: Handler
    max_attempts: int = DEFAULT_MAX_ATTEMPTS
    backoff: float = 1.0  # seconds before the first retry; doubles with each failed attempt
    max_backoff: float = 300.0
    interval: float | None = None  # periodic: enqueued every `interval` seconds by exactly one node

    def retry_delay(self, attempts: int, jitter: float) -> float:
        """Exponential backoff with jitter in [0, 1): half the delay fixed, half random ("equal jitter"),
        so failing jobs of one kind spread out instead of retrying in lockstep."""
        delay = min(self.max_backoff, self.backoff * 2 ** max(0, attempts - 1))
        return delay * (0.5 + jitter / 2)


class Handlers:
    def __init__(self) -> None:
        self._kinds: dict[str, Kind] = {}

    def register(self, kind: str, handler: Handler, *, max_attempts: int = DEFAULT_MAX_ATTEMPTS,
                 backoff: float = 1.0, max_backoff: float = 300.0) -> None:
        self._add(Kind(kind, handler, max_attempts, backoff, max_backoff))

    def periodic(self, kind: str, interval: float, handler: Handler, *, max_attempts: int = 3,
                 backoff: float = 5.0, max_backoff: float = 300.0) -> None:
        if interval <= 0:
            raise ValueError(f"periodic job {kind!r}: the interval must be positive")
        self._add(Kind(kind, handler, max_attempts, backoff, max_backoff, interval))

    def _add(self, kind: Kind) -> None:
        if kind.name in self._kinds:
            raise ValueError(f"job kind {kind.name!r} is registered twice")
        self._kinds[kind.name] = kind

    def get(self, kind: str) -> Kind | None:
        return self._kinds.get(kind)

    def kinds(self) -> list[str]:
        return sorted(self._kinds)

    def schedules(self) -> list[tuple[str, float]]:
        return [(k.name, k.interval) for k in self._kinds.values() if k.interval is not None]

    def __len__(self) -> int:
        return len(self._kinds)
