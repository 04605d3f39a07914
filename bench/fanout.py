"""One thread per item, all started together: the wall time until the last ends, the first failure raised
after the join (bench/run.py's concurrent streams, bench/cluster.py's round-robin workers)."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Sequence
from typing import Any


def fan_out(fn: Callable[[Any], object], items: Sequence[Any], failed: type[Exception] = RuntimeError,
            what: str = "threads") -> float:
    """Run fn(item) for every item, each in a thread of its own; seconds from the first start to the last end.
    Raises `failed` naming how many failed and the first failure, once every thread has ended."""
    lock = threading.Lock()
    errors: list[BaseException] = []

    def run(item: Any) -> None:
        try:
            fn(item)
        except BaseException as e:  # noqa: BLE001 - reported after the join
            with lock:
                errors.append(e)

    threads = [threading.Thread(target=run, args=(item,)) for item in items]
    t0 = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    if errors:
        first = errors[0]
        raise failed(f"{len(errors)} of {len(items)} {what} failed, first: {type(first).__name__}: {first}")
    return time.perf_counter() - t0
