"""The gateway's background tasks are kept running (issue 33, finding 9): one that raises or returns is
logged, counted and started again; cancelling it stops it."""

from __future__ import annotations

import asyncio
import logging

import pytest
from prometheus_client import REGISTRY

from services.gateway.supervise import keep_running


def test_a_task_that_fails_is_logged_counted_and_started_again(caplog: pytest.LogCaptureFixture) -> None:
    runs: list[int] = []

    async def flaky() -> None:
        runs.append(len(runs))
        if len(runs) == 1:
            raise ValueError("a bug in the worker")
        if len(runs) == 2:
            return
        await asyncio.Event().wait()  # the third run lives until cancelled

    async def scenario() -> None:
        task = asyncio.create_task(keep_running("unit_flaky", flaky, pause_s=0.01))
        while len(runs) < 3:
            await asyncio.sleep(0.01)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task

    before = REGISTRY.get_sample_value("imgsearch_background_restarts_total", {"task": "unit_flaky"}) or 0.0
    with caplog.at_level(logging.INFO, logger="imgsearch.gateway"):
        asyncio.run(scenario())
    assert len(runs) == 3
    assert REGISTRY.get_sample_value("imgsearch_background_restarts_total", {"task": "unit_flaky"}) == before + 2
    text = caplog.text
    assert "background task unit_flaky failed" in text and "ValueError: a bug in the worker" in text
    assert "background task unit_flaky returned" in text
