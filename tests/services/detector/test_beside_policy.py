"""The detector service runs the multi-pose pass beside the detector only while it is otherwise idle
(`people_beside_max_inflight`): under load, photos go one step after the other (no pass that is then cancelled
takes a core from the others)."""

from __future__ import annotations

import asyncio
import io
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import httpx
import numpy as np
from fastapi import FastAPI
from PIL import Image

from services.common.settings import DetectorSettings
from services.detector import app as detector_app


class _Ready:
    """A loaded model's loader: `require()` hands it out."""

    def __init__(self, model: Any) -> None:
        self.model = model

    def require(self) -> Any:
        return self.model


class _Model:
    def info(self) -> dict[str, str]:
        return {"name": "fake", "version": "1"}


def _jpeg() -> bytes:
    out = io.BytesIO()
    Image.fromarray(np.full((64, 64, 3), 128, dtype=np.uint8)).save(out, "JPEG")
    return out.getvalue()


def test_the_pass_runs_beside_only_while_no_other_photo_is_in_the_detector(monkeypatch: Any) -> None:
    seen: list[bool] = []
    gate = threading.Lock()

    def find_items(detector: Any, pose: Any, people: Any, image: np.ndarray, settings: Any, side: Any) -> list:
        with gate:
            seen.append(side is not None)
        time.sleep(0.2)  # long enough for the other requests to arrive while this one runs
        return []

    monkeypatch.setattr(detector_app, "find_items", find_items)
    settings = DetectorSettings()
    assert settings.people.beside_max_inflight == 1
    pool, side = ThreadPoolExecutor(max_workers=3), ThreadPoolExecutor(max_workers=2)
    app = FastAPI()
    app.include_router(
        detector_app.build_router(settings, _Ready(_Model()), pool, None, _Ready(_Model()), side)  # type: ignore[arg-type]
    )

    async def send(client: httpx.AsyncClient) -> int:
        files = {"image": ("a.jpg", _jpeg(), "image/jpeg")}
        return (await client.post("/v1/detect", files=files)).status_code

    async def run() -> list[int]:
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t") as client:
            first = asyncio.create_task(send(client))
            await asyncio.sleep(0.05)
            rest = await asyncio.gather(send(client), send(client))
            codes = [await first, *rest]
            codes.append(await send(client))  # alone again: beside
            return codes

    try:
        assert asyncio.run(run()) == [200, 200, 200, 200]
    finally:
        pool.shutdown(wait=True)
        side.shutdown(wait=True)
    assert seen[0] is True and seen[-1] is True  # alone: beside
    assert seen[1:3] == [False, False]  # while another photo was in: one step after the other
