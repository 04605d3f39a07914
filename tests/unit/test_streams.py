"""streams.pump: chunks cross from the event loop to one worker thread, in order, with backpressure."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import AsyncIterator, Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest

from berth.registry.streams import pump


class ConsumerBroke(Exception):
    pass


class ProducerBroke(Exception):
    pass


@pytest.fixture
def executor() -> Iterator[ThreadPoolExecutor]:
    pool = ThreadPoolExecutor(2, thread_name_prefix="pump-test")
    try:
        yield pool
    finally:
        pool.shutdown(wait=True)


class Recorder:
    """open_/consume/close callbacks that record what ran, and on which thread."""

    def __init__(self, on_consume: Callable[[bytes], None] | None = None) -> None:
        self.events: list[Any] = []
        self.data: list[bytes] = []
        self.threads: set[int] = set()
        self.closed = threading.Event()
        self._on_consume = on_consume

    def open_(self) -> None:
        self.threads.add(threading.get_ident())
        self.events.append("open")

    def consume(self, chunk: bytes) -> None:
        self.threads.add(threading.get_ident())
        if self._on_consume is not None:
            self._on_consume(chunk)
        self.data.append(chunk)

    def close(self, ok: bool) -> None:
        self.threads.add(threading.get_ident())
        self.events.append(("close", ok))
        self.closed.set()


async def chunks_of(items: list[bytes], counter: list[int] | None = None) -> AsyncIterator[bytes]:
    for item in items:
        if counter is not None:
            counter[0] += 1
        yield item
        await asyncio.sleep(0)


def test_bytes_arrive_in_order(executor: ThreadPoolExecutor) -> None:
    items = [f"chunk-{i:04d};".encode() * (i % 7 + 1) for i in range(500)]
    rec = Recorder()

    async def main() -> int:
        return await pump(chunks_of(items), rec.consume, executor, rec.open_, rec.close, maxsize=3)

    loop_thread = threading.get_ident()
    total = asyncio.run(main())
    assert rec.data == items
    assert total == sum(map(len, items))
    assert rec.events == ["open", ("close", True)]
    assert len(rec.threads) == 1 and loop_thread not in rec.threads  # one worker thread, not the loop


def test_empty_chunks_are_skipped(executor: ThreadPoolExecutor) -> None:
    rec = Recorder()
    total = asyncio.run(pump(chunks_of([b"", b"a", b"", b"bc", b""]), rec.consume, executor,
                             rec.open_, rec.close))
    assert total == 3
    assert rec.data == [b"a", b"bc"]


def test_empty_stream(executor: ThreadPoolExecutor) -> None:
    rec = Recorder()
    assert asyncio.run(pump(chunks_of([]), rec.consume, executor, rec.open_, rec.close)) == 0
    assert rec.data == []
    assert rec.events == ["open", ("close", True)]


def test_defaults_for_open_and_close(executor: ThreadPoolExecutor) -> None:
    got: list[bytes] = []
    assert asyncio.run(pump(chunks_of([b"x", b"yz"]), got.append, executor)) == 3
    assert got == [b"x", b"yz"]


def test_backpressure_with_a_slow_consumer(executor: ThreadPoolExecutor) -> None:
    maxsize = 2
    gate = threading.Event()
    first_taken = threading.Event()

    def slow(chunk: bytes) -> None:
        first_taken.set()
        if not gate.wait(10):
            raise TimeoutError("never released")

    rec = Recorder(slow)
    produced = [0]
    items = [bytes([i]) * 1000 for i in range(100)]

    async def main() -> int:
        task = asyncio.ensure_future(pump(chunks_of(items, produced), rec.consume, executor,
                                          rec.open_, rec.close, maxsize=maxsize))
        while not first_taken.is_set():
            await asyncio.sleep(0.005)
        # let the producer run as far as it can while the consumer is stuck on the first chunk
        settled, last = 0, -1
        while settled < 20:
            await asyncio.sleep(0.005)
            settled = settled + 1 if produced[0] == last else 0
            last = produced[0]
        stalled_at = produced[0]
        assert not task.done()
        gate.set()
        total = await task
        assert stalled_at <= maxsize + 2  # one being consumed, `maxsize` queued, one waiting to be put
        assert stalled_at >= maxsize + 1  # and the queue did fill
        return total

    assert asyncio.run(main()) == 100_000
    assert [c[0] for c in rec.data] == list(range(100))
    assert rec.events == ["open", ("close", True)]


def test_consumer_exception_propagates_and_stops_the_producer(executor: ThreadPoolExecutor) -> None:
    def breaks_on_third(chunk: bytes) -> None:
        if chunk == b"2":
            raise ConsumerBroke("disk full")

    rec = Recorder(breaks_on_third)
    produced = [0]

    async def endless() -> AsyncIterator[bytes]:
        i = 0
        while True:
            produced[0] += 1
            yield str(i).encode()
            i += 1
            await asyncio.sleep(0.001)

    async def main() -> None:
        await asyncio.wait_for(pump(endless(), rec.consume, executor, rec.open_, rec.close, maxsize=2), 10)

    with pytest.raises(ConsumerBroke, match="disk full"):
        asyncio.run(main())
    assert rec.data == [b"0", b"1"]
    assert rec.events == ["open", ("close", False)]
    assert produced[0] <= 3 + 2 + 2  # stopped soon after the failure, not drained to the end


def test_consumer_exception_while_the_producer_waits_for_space(executor: ThreadPoolExecutor) -> None:
    release = threading.Event()

    def stuck_then_broken(chunk: bytes) -> None:
        release.wait(10)
        raise ConsumerBroke("late failure")

    rec = Recorder(stuck_then_broken)

    async def main() -> None:
        task = asyncio.ensure_future(pump(chunks_of([b"x"] * 1000), rec.consume, executor,
                                          rec.open_, rec.close, maxsize=1))
        await asyncio.sleep(0.05)  # the producer is now blocked on a full channel
        assert not task.done()
        release.set()
        await asyncio.wait_for(task, 10)

    with pytest.raises(ConsumerBroke, match="late failure"):
        asyncio.run(main())
    assert rec.events == ["open", ("close", False)]


def test_open_failure_propagates(executor: ThreadPoolExecutor) -> None:
    rec = Recorder()

    def bad_open() -> None:
        raise FileNotFoundError("upload vanished")

    async def main() -> None:
        await asyncio.wait_for(pump(chunks_of([b"a"] * 100), rec.consume, executor, bad_open, rec.close), 10)

    with pytest.raises(FileNotFoundError, match="upload vanished"):
        asyncio.run(main())
    assert rec.data == []
    assert rec.events == [("close", False)]


def test_producer_exception_calls_close_false(executor: ThreadPoolExecutor) -> None:
    rec = Recorder()

    async def broken() -> AsyncIterator[bytes]:
        yield b"one"
        yield b"two"
        raise ProducerBroke("client went away")

    async def main() -> None:
        await pump(broken(), rec.consume, executor, rec.open_, rec.close)

    with pytest.raises(ProducerBroke, match="client went away"):
        asyncio.run(main())
    assert rec.closed.is_set()  # before pump raised: the thread is done with the upload
    assert rec.events[0] == "open"
    assert rec.events[-1] == ("close", False)
    assert b"".join(rec.data) in (b"", b"one", b"onetwo")


def test_producer_exception_with_a_busy_consumer(executor: ThreadPoolExecutor) -> None:
    """Queued chunks are dropped; the consumer's in-flight chunk finishes; close(False) still runs."""
    gate = threading.Event()
    rec = Recorder(lambda chunk: gate.wait(10))

    async def broken() -> AsyncIterator[bytes]:
        for i in range(3):
            yield str(i).encode()
        await asyncio.sleep(0.05)
        gate.set()
        raise ProducerBroke("reset")

    with pytest.raises(ProducerBroke):
        asyncio.run(pump(broken(), rec.consume, executor, rec.open_, rec.close, maxsize=8))
    assert rec.events[-1] == ("close", False)
    assert rec.data[:1] == [b"0"]


def test_cancellation_calls_close_false(executor: ThreadPoolExecutor) -> None:
    rec = Recorder()

    async def slow() -> AsyncIterator[bytes]:
        yield b"first"
        await asyncio.sleep(3600)
        yield b"never"

    async def main() -> None:
        task = asyncio.ensure_future(pump(slow(), rec.consume, executor, rec.open_, rec.close))
        deadline = time.monotonic() + 10
        while rec.data != [b"first"] and time.monotonic() < deadline:
            await asyncio.sleep(0.005)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task

    asyncio.run(main())
    assert rec.data == [b"first"]
    assert rec.events == ["open", ("close", False)]


# a body announced as small (expected <= GATHER_BELOW): gathered on the loop, handed over in one hop

def test_a_small_body_is_consumed_whole_in_one_call_off_the_loop(executor: ThreadPoolExecutor) -> None:
    items = [b"a" * 1000, b"", b"b" * 3000, b"c"]
    rec = Recorder()
    loop_thread = threading.get_ident()
    total = asyncio.run(pump(chunks_of(items), rec.consume, executor, rec.open_, rec.close, expected=4001))
    assert total == 4001
    assert rec.data == [b"".join(items)]  # one consume call
    assert rec.events == ["open", ("close", True)]
    assert len(rec.threads) == 1 and loop_thread not in rec.threads


def test_a_small_body_longer_than_announced_stops_one_byte_past_it(executor: ThreadPoolExecutor) -> None:
    counter = [0]
    rec = Recorder()
    total = asyncio.run(pump(chunks_of([b"x" * 10] * 50, counter), rec.consume, executor, rec.open_, rec.close,
                             expected=25))
    assert total == 30 and counter[0] == 3  # the caller sees more than it was told; the rest is never read
    assert rec.events == ["open", ("close", True)]


def test_a_small_body_consumer_failure_closes_false_and_propagates(executor: ThreadPoolExecutor) -> None:
    def broken(_: bytes) -> None:
        raise ConsumerBroke("disk full")

    rec = Recorder(on_consume=broken)
    with pytest.raises(ConsumerBroke, match="disk full"):
        asyncio.run(pump(chunks_of([b"abc"]), rec.consume, executor, rec.open_, rec.close, expected=3))
    assert rec.events == ["open", ("close", False)]


def test_a_small_body_cut_short_opens_nothing(executor: ThreadPoolExecutor) -> None:
    async def broken() -> AsyncIterator[bytes]:
        yield b"one"
        raise ProducerBroke("client went away")

    rec = Recorder()
    with pytest.raises(ProducerBroke):
        asyncio.run(pump(broken(), rec.consume, executor, rec.open_, rec.close, expected=100))
    assert rec.events == [] and rec.data == []  # no writer was opened, so none is left behind


def test_an_empty_announced_body_opens_and_closes(executor: ThreadPoolExecutor) -> None:
    rec = Recorder()
    assert asyncio.run(pump(chunks_of([]), rec.consume, executor, rec.open_, rec.close, expected=0)) == 0
    assert rec.data == [] and rec.events == ["open", ("close", True)]
