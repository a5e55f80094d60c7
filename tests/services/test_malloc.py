"""IdleTrim (services/common/malloc.py): freed memory is handed back once no request is in flight, never
between back-to-back requests."""

from __future__ import annotations

import asyncio
import sys

import pytest
from starlette.types import Receive, Scope, Send

from services.common import malloc
from services.common.malloc import IdleTrim


class _App:
    def __init__(self) -> None:
        self.release = asyncio.Event()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        await self.release.wait()


async def _noop_receive() -> dict[str, object]:
    return {"type": "http.request"}


async def _noop_send(message: object) -> None:
    return None


def test_a_trim_follows_the_last_request_after_the_delay_and_none_while_one_runs(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    calls: list[int] = []

    def counted_trim() -> bool:
        calls.append(1)
        return True

    monkeypatch.setattr(malloc, "trim", counted_trim)

    async def scenario() -> None:
        app = _App()
        trimmer = IdleTrim(app, after_s=0.3)
        first = asyncio.create_task(trimmer({"type": "http"}, _noop_receive, _noop_send))
        await asyncio.sleep(0.6)
        assert trimmer.trims == 0  # a request in flight: no trim however long it runs
        app.release.set()
        await first
        assert trimmer.trims == 0  # not yet: the delay has not passed
        # a request inside the delay cancels the pending trim; the one after it schedules its own
        await trimmer({"type": "http"}, _noop_receive, _noop_send)
        await asyncio.sleep(0.6)
        assert trimmer.trims == 1 and trimmer.inflight == 0
        for _ in range(200):  # the trim itself runs in a worker thread
            if calls:
                break
            await asyncio.sleep(0.01)

    asyncio.run(scenario())
    assert calls == [1]


def test_back_to_back_requests_never_trim(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(malloc, "trim", lambda: True)

    async def scenario() -> int:
        app = _App()
        app.release.set()
        trimmer = IdleTrim(app, after_s=0.5)
        for _ in range(10):
            await trimmer({"type": "http"}, _noop_receive, _noop_send)
            await asyncio.sleep(0.01)
        return trimmer.trims

    assert asyncio.run(scenario()) == 0


def test_lifespan_and_websocket_scopes_pass_through_uncounted() -> None:
    async def scenario() -> tuple[int, int]:
        app = _App()
        app.release.set()
        trimmer = IdleTrim(app, after_s=0.01)
        await trimmer({"type": "lifespan"}, _noop_receive, _noop_send)
        await asyncio.sleep(0.03)
        return trimmer.inflight, trimmer.trims

    assert asyncio.run(scenario()) == (0, 0)


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's malloc_trim is Linux's")
def test_trim_hands_back_a_freed_block_of_the_heap() -> None:
    malloc.limit_arenas(1)
    blocks = [bytearray(64 * 1024) for _ in range(400)]  # under the mmap threshold: the heap's own pages
    del blocks
    assert malloc.trim() is True  # 25 MiB of freed heap: some of it goes back
