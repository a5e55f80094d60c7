"""decode_upload_as (services/common/uploads.py): the decode and what follows it share one worker thread;
the header of a small upload is read on the event loop, a large one's in a worker thread."""

from __future__ import annotations

import asyncio
import io
import threading
from typing import Any

import numpy as np
import pytest
from PIL import Image

from imgcore.image import Decoded, DecodeLimits, decode
from services.common import uploads
from services.common.decode_budget import MIB, DecodeBudget
from services.common.uploads import INLINE_PLAN_BYTES, Upload, decode_upload_as


def _jpeg(width: int, height: int, *, noise: bool) -> bytes:
    rng = np.random.default_rng(0)
    pixels = (
        rng.integers(0, 256, (height, width, 3), dtype=np.uint8) if noise else np.full((height, width, 3), 90, np.uint8)
    )
    buf = io.BytesIO()
    Image.fromarray(pixels).save(buf, "JPEG", quality=95)
    return buf.getvalue()


def _run(data: bytes, monkeypatch: pytest.MonkeyPatch, max_side: int = 0) -> tuple[dict[str, int], Any]:
    """Threads that planned, decoded-then and ran the loop; and `then`'s result."""
    seen: dict[str, int] = {}
    real_plan = uploads.plan_decode

    def plan(*args: Any) -> Any:
        seen["plan"] = threading.get_ident()
        return real_plan(*args)

    def then(decoded: Decoded) -> Decoded:
        seen["then"] = threading.get_ident()
        return decoded

    monkeypatch.setattr(uploads, "plan_decode", plan)

    async def main() -> Decoded:
        seen["loop"] = threading.get_ident()
        return await decode_upload_as(Upload(data=data), DecodeLimits(), DecodeBudget(256 * MIB, 1.0), max_side, then)

    return seen, asyncio.run(main())


def test_a_small_uploads_header_is_read_on_the_loop_and_then_runs_in_the_decode_thread(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    data = _jpeg(640, 480, noise=False)
    assert len(data) <= INLINE_PLAN_BYTES
    seen, decoded = _run(data, monkeypatch)
    assert seen["plan"] == seen["loop"]
    assert seen["then"] != seen["loop"]
    assert decoded.pixels.shape == (480, 640, 3)


def test_a_large_uploads_header_is_read_in_a_worker_thread(monkeypatch: pytest.MonkeyPatch) -> None:
    data = _jpeg(900, 700, noise=True)
    assert len(data) > INLINE_PLAN_BYTES
    seen, decoded = _run(data, monkeypatch)
    assert seen["plan"] != seen["loop"] and seen["then"] != seen["loop"]
    assert decoded.pixels.shape == (700, 900, 3)


def test_the_result_is_what_decode_gives_shrunk_alike(monkeypatch: pytest.MonkeyPatch) -> None:
    data = _jpeg(900, 700, noise=True)
    _, decoded = _run(data, monkeypatch, max_side=300)
    expected = decode(data, DecodeLimits(), 300)
    assert (decoded.width, decoded.height, decoded.scale) == (900, 700, expected.scale)
    np.testing.assert_array_equal(decoded.pixels, expected.pixels)
    assert max(decoded.pixels.shape[:2]) == 300
