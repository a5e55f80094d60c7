"""glibc's malloc made to hand freed memory back to the OS (Linux; elsewhere nothing).

Two ways, for two kinds of process:
- `return_freed_memory`: a fixed mmap threshold, every block over 128 KiB mapped on its own and unmapped on
  free. Each such block's pages are faulted in anew on every use: right for the index's workers, whose large
  blocks are the index versions they open (bench/memory.py), too slow for a process that handles a photo's
  megabytes on every request.
- `IdleTrim` (the gateway): the default allocator while requests run, so a request's buffers reuse pages the
  last one faulted in, and `malloc_trim(0)` once no request has been in flight for a second, which hands back
  what the decode threads' arenas kept. Against the fixed threshold (docs/benchmarks.md, 3 paired runs): a search
  1.4 ms faster at one client, P1 mix 1.115 -> 1.076; a phone photo's decode stage 34-45 -> 29-41 ms.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import functools
import sys
from typing import Any

from starlette.types import ASGIApp, Receive, Scope, Send

_M_MMAP_THRESHOLD = -3  # mallopt parameters (malloc.h)
_M_ARENA_MAX = -8
IDLE_TRIM_S = 1.0


@functools.cache
def _libc() -> Any:
    if not sys.platform.startswith("linux"):
        return None
    with contextlib.suppress(OSError):
        return ctypes.CDLL("libc.so.6")
    return None


def return_freed_memory() -> None:
    """Fix glibc's mmap threshold at 128 KiB: larger blocks are mapped on their own and unmapped on free.

    With the default sliding threshold (up to 32 MiB), a freed large block raises the threshold, and the next
    ones of that size come from the allocating thread's heap, which keeps what it had: an index worker kept
    ~30 MiB per version opened at 1M items (bench/memory.py).
    """
    libc = _libc()
    if libc is not None:
        with contextlib.suppress(AttributeError):
            libc.mallopt(_M_MMAP_THRESHOLD, 128 * 1024)


def limit_arenas(count: int) -> None:
    """At most `count` malloc arenas (glibc makes up to 8 per core): threads share them, and what one thread
    freed is there for the next instead of kept in an arena of its own."""
    libc = _libc()
    if libc is not None:
        with contextlib.suppress(AttributeError):
            libc.mallopt(_M_ARENA_MAX, count)


def trim() -> bool:
    """Hand the free memory of every malloc arena back to the OS; True when some was."""
    libc = _libc()
    if libc is None:
        return False
    with contextlib.suppress(AttributeError):
        return bool(libc.malloc_trim(0))
    return False


class IdleTrim:
    """Pure ASGI: `trim()` in a worker thread once no HTTP request has been in flight for `after_s`.

    A request that begins meanwhile cancels the pending trim, so back-to-back requests never pay for one.
    """

    def __init__(self, app: ASGIApp, after_s: float = IDLE_TRIM_S) -> None:
        self.app = app
        self.after_s = after_s
        self.inflight = 0
        self.trims = 0  # trims run so far
        self._pending: asyncio.TimerHandle | None = None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        self.inflight += 1
        if self._pending is not None:
            self._pending.cancel()
            self._pending = None
        try:
            await self.app(scope, receive, send)
        finally:
            self.inflight -= 1
            if self.inflight == 0:
                self._pending = asyncio.get_running_loop().call_later(self.after_s, self._trim_if_idle)

    def _trim_if_idle(self) -> None:
        self._pending = None
        if self.inflight == 0:
            self.trims += 1
            asyncio.get_running_loop().run_in_executor(None, trim)
