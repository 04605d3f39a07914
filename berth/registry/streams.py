"""Hand request chunks from the event loop to one worker thread that hashes and writes them.

A small bounded channel, not a thread hop per chunk and not a growing buffer: the loop appends
while there is room and waits on an event when the writer thread falls behind.
"""

from __future__ import annotations

import asyncio
import queue
import threading
from collections.abc import AsyncIterator, Callable
from concurrent.futures import Executor
from typing import Any

_END = object()
GATHER_BELOW = 256 << 10  # a body this small costs less gathered than streamed: one thread hop, not one per chunk


class _Channel:
    def __init__(self, loop: asyncio.AbstractEventLoop, maxsize: int) -> None:
        self._loop = loop
        self._max = maxsize
        self._items: queue.SimpleQueue[Any] = queue.SimpleQueue()  # C: no Python-level locking per chunk
        self._lock = threading.Lock()
        self._pending = 0
        self._space = asyncio.Event()
        self.failed = False

    async def put(self, item: Any) -> None:
        while True:
            if self.failed:
                raise _ConsumerFailed
            with self._lock:
                if self._pending < self._max:
                    self._pending += 1
                    self._items.put(item)
                    return
                self._space.clear()
            await self._space.wait()

    def put_end(self) -> None:
        self._items.put(_END)

    def get(self) -> Any:
        item = self._items.get()
        if item is not _END:
            with self._lock:
                was_full = self._pending >= self._max
                self._pending -= 1
            if was_full:  # the loop is waiting for room: the only cross-thread wake-up
                self._loop.call_soon_threadsafe(self._space.set)
        return item

    def fail(self) -> None:
        self.failed = True
        self._loop.call_soon_threadsafe(self._space.set)


class _ConsumerFailed(Exception):
    pass


async def pump(chunks: AsyncIterator[bytes], consume: Callable[[bytes], None], executor: Executor,
               open_: Callable[[], None] = lambda: None, close: Callable[[bool], None] = lambda ok: None,
               maxsize: int = 8, expected: int | None = None) -> int:
    """Feed every chunk to `consume` on one executor thread; returns the byte count.

    `open_` runs on that thread first; `close(ok)` last, whatever happened. An error on either
    side stops both and is raised here. A body announced (`expected`) as small is gathered on the
    loop first and handed over in one hop.
    """
    loop = asyncio.get_running_loop()
    if expected is not None and expected <= GATHER_BELOW:
        return await _gathered(chunks, expected, consume, executor, open_, close)
    chan = _Channel(loop, maxsize)

    def drain() -> None:
        ok = False
        try:
            open_()
            while (item := chan.get()) is not _END:
                if not chan.failed:
                    consume(item)
            ok = not chan.failed
        except BaseException:
            chan.fail()
            raise
        finally:
            close(ok)

    fut = loop.run_in_executor(executor, drain)
    total = 0
    try:
        async for chunk in chunks:
            if chunk:
                await chan.put(chunk)
                total += len(chunk)
    except _ConsumerFailed:
        pass  # the thread's own error is raised below
    except BaseException:
        chan.fail()
        chan.put_end()
        try:
            await fut
        except Exception:
            pass
        raise
    chan.put_end()
    await fut
    return total


async def _gathered(chunks: AsyncIterator[bytes], expected: int, consume: Callable[[bytes], None],
                    executor: Executor, open_: Callable[[], None], close: Callable[[bool], None]) -> int:
    """pump() for a small body: at most `expected` + 1 bytes are held (one more tells the caller it was
    longer than announced), then open_, consume and close run in one executor call."""
    body = bytearray()
    async for chunk in chunks:
        body += chunk
        if len(body) > expected:
            break

    def run() -> None:
        ok = False
        try:
            open_()
            if body:
                consume(bytes(body))
            ok = True
        finally:
            close(ok)

    await asyncio.get_running_loop().run_in_executor(executor, run)
    return len(body)
