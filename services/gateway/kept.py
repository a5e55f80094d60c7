"""Embedding a photo's boxes without sending its pixels again (services/embedder/kept.py).

The speculative whole-image call of a search sent the pixels and asked the embedder to keep the decoded
photo; when it has answered, the call for the detected boxes names the photo instead of sending it. A
photo the embedder no longer has (evicted, expired, another replica answered) costs one short 404, then
the pixels are sent as before.
"""

from __future__ import annotations

import asyncio
import secrets
from typing import Any

import numpy as np

from services.common.wire import PixelBody
from services.gateway.backends import BackendRejected, Backends


def new_image_id() -> str:
    return secrets.token_hex(16)


def _answered(task: asyncio.Task[Any] | None) -> bool:
    return task is not None and task.done() and not task.cancelled() and task.exception() is None


async def embed_boxes(
    backends: Backends,
    pixels: PixelBody,
    image: np.ndarray,
    boxes: list[list[float]],
    speculative: asyncio.Task[Any] | None,
    image_id: str,
) -> tuple[np.ndarray, dict[str, Any]]:
    """Vectors for `boxes` of the photo: by its kept id when the speculative call kept it, else with pixels."""
    if _answered(speculative):
        try:
            return await backends.embed_kept(image_id, boxes)
        except BackendRejected as exc:
            if exc.status != 404:
                raise
    return await backends.embed(pixels, image, boxes, foreground=False)
