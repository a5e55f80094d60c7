"""The gateway's background tasks (index and model watchers, shadow worker, query log writer) kept running.

A task that ends by an exception would otherwise stop its work silently (no log line, frozen metrics) while
the gateway keeps answering: here it is logged with its traceback, counted and started again after a pause.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable

from services.common.metrics import BACKGROUND_RESTARTS

log = logging.getLogger("imgsearch.gateway")

RESTART_PAUSE_S = 1.0


async def keep_running(name: str, run: Callable[[], Awaitable[None]], pause_s: float = RESTART_PAUSE_S) -> None:
    """`run()` again each time it raises (or returns) until cancelled; each end logged and counted."""
    while True:
        try:
            await run()
            log.error("background task %s returned; started again", name)
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("background task %s failed; started again in %g s", name, pause_s)
        BACKGROUND_RESTARTS.labels(task=name).inc()
        await asyncio.sleep(pause_s)


def supervised(name: str, run: Callable[[], Awaitable[None]]) -> asyncio.Task[None]:
    """A task running `run` under `keep_running`."""
    return asyncio.create_task(keep_running(name, run), name=name)
