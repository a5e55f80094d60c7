"""The decode memory budget of a service: decodes run only while their planned peaks fit in it together.

An upload is planned from its header (imgcore.image.plan_decode), reserves that many bytes, and holds them
until its decode thread has finished (even when the request is cancelled meanwhile). Reservations are
granted in arrival order, so a large image is not starved by small ones; one that has waited `wait_s`
gets 503 and a metric, and one that could never fit gets 413.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Callable
from typing import Any, TypeVar

from starlette.concurrency import run_in_threadpool

from imgcore.errors import ImageTooLarge, ImgSearchError
from services.common.metrics import DECODE_RESERVED_BYTES

T = TypeVar("T")
MIB = 1024 * 1024


class DecodeBusy(ImgSearchError, status=503, reason="decode_busy"):
    """The decode memory budget stayed full for the whole wait: try again shortly."""


class DecodeBudget:
    """Bytes that the decodes of one process may hold at once (asyncio: use from the event loop only)."""

    def __init__(self, capacity_bytes: int, wait_s: float) -> None:
        self.capacity = capacity_bytes
        self.wait_s = wait_s
        self.reserved = 0
        self._waiters: deque[tuple[int, asyncio.Future[None]]] = deque()

    async def run(self, nbytes: int, fn: Callable[..., T], *args: object) -> T:
        """`fn(*args)` in a worker thread once `nbytes` are reserved; released when the thread is done."""
        if nbytes > self.capacity:
            raise ImageTooLarge(
                f"decoding this image needs about {nbytes // MIB} MiB; this service decodes at most "
                f"{self.capacity // MIB} MiB at once",
                reason="decode_memory",
            )
        await self._acquire(nbytes)
        work = asyncio.ensure_future(run_in_threadpool(fn, *args))
        work.add_done_callback(lambda done: self._finished(done, nbytes))
        return await asyncio.shield(work)  # a cancelled request still waits for its thread to free memory

    async def _acquire(self, nbytes: int) -> None:
        if not self._waiters and self.reserved + nbytes <= self.capacity:
            self._take(nbytes)
            return
        granted: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._waiters.append((nbytes, granted))
        try:
            await asyncio.wait_for(asyncio.shield(granted), self.wait_s)
        except TimeoutError:
            if granted.done() and not granted.cancelled():
                return  # granted just as the wait ended
            self._withdraw(granted, nbytes)
            raise DecodeBusy(
                f"too many large images are being decoded; waited {self.wait_s:g} s for {nbytes // MIB} MiB"
            ) from None
        except BaseException:  # the request was cancelled while waiting
            self._withdraw(granted, nbytes)
            raise

    def _withdraw(self, granted: asyncio.Future[None], nbytes: int) -> None:
        """Leave the queue; give back what was granted meanwhile."""
        if granted.done() and not granted.cancelled():
            self._release(nbytes)
        else:
            granted.cancel()
            self._grant()  # it may have been the head of the queue, blocking smaller ones behind it

    def _finished(self, work: asyncio.Future[Any], nbytes: int) -> None:
        self._release(nbytes)
        if not work.cancelled():
            work.exception()  # retrieved: a request that gave up must not log it as unhandled

    def _take(self, nbytes: int) -> None:
        self.reserved += nbytes
        DECODE_RESERVED_BYTES.set(self.reserved)

    def _release(self, nbytes: int) -> None:
        self.reserved -= nbytes
        DECODE_RESERVED_BYTES.set(self.reserved)
        self._grant()

    def _grant(self) -> None:
        """Wake waiters in arrival order while the first one fits."""
        while self._waiters:
            nbytes, granted = self._waiters[0]
            if granted.done():
                self._waiters.popleft()
                continue
            if self.reserved + nbytes > self.capacity:
                return
            self._waiters.popleft()
            self._take(nbytes)
            granted.set_result(None)
