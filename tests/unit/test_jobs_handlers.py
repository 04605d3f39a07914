"""Job kinds: exponential backoff with jitter, capped; one handler per kind; periodic intervals."""

from __future__ import annotations

import pytest

from berth.jobs import Handlers, Job, Kind


async def noop(job: Job) -> None:
    return None


def test_backoff_doubles_with_half_of_it_jittered_and_is_capped() -> None:
    k = Kind("k", noop, backoff=2.0, max_backoff=60.0)
    assert [k.retry_delay(a, 0.0) for a in range(1, 7)] == [1.0, 2.0, 4.0, 8.0, 16.0, 30.0]
    assert [k.retry_delay(a, 0.999999) for a in (1, 2, 3)] == pytest.approx([2.0, 4.0, 8.0])
    assert k.retry_delay(50, 0.5) == pytest.approx(45.0)  # capped at 60, then jittered into [30, 60)
    assert k.retry_delay(0, 0.0) == 1.0  # attempt numbers start at 1; 0 is treated as the first


def test_handlers_registry() -> None:
    h = Handlers()
    h.register("b", noop, max_attempts=2)
    h.periodic("a", 60, noop)
    assert h.kinds() == ["a", "b"] and len(h) == 2
    assert h.schedules() == [("a", 60)]
    kind = h.get("b")
    assert kind is not None and kind.max_attempts == 2 and kind.interval is None
    assert h.get("c") is None
    with pytest.raises(ValueError, match="registered twice"):
        h.register("a", noop)
    with pytest.raises(ValueError, match="positive"):
        h.periodic("z", 0, noop)
