"""Decoded photos the embedder keeps for a few seconds, so that a second call for the same photo sends boxes only.

The gateway embeds the whole photo while the detector runs (its speculative call, which sends the pixels)
and then, for a photo with detections, embeds the detected boxes. With `keep=<id>` on the first call the
embedder keeps the decoded photo under that id; the second call names it (`image_id=<id>`) and sends no
body, so the pixels (up to a few MB) cross the network and are read once, not twice, and the second hop
on the search's critical path is cheaper. A photo is kept `KEEP_S` seconds at most, and all kept photos
together take at most `keep_images_mib`; a photo that is gone (expired, evicted, another replica) is a
404 `image_not_kept`, and the gateway sends the pixels after all.
"""

from __future__ import annotations

import time
from collections import OrderedDict

import numpy as np

from imgcore.errors import NotFound

KEEP_S = 10.0
ID_PATTERN = "^[0-9a-f]{16,64}$"  # the gateway's random ids (hex)


class ImageNotKept(NotFound, reason="image_not_kept"):
    """The named photo is not (or no longer) kept here: send its pixels."""


class KeptImages:
    """Photos by id, oldest first, bounded in bytes and age."""

    def __init__(self, max_bytes: int, keep_s: float = KEEP_S) -> None:
        self.max_bytes = max_bytes
        self.keep_s = keep_s
        self.nbytes = 0
        self._images: OrderedDict[str, tuple[float, np.ndarray]] = OrderedDict()

    def put(self, key: str, image: np.ndarray) -> None:
        """Keep `image` under `key` (nothing when it alone is over the bound)."""
        if image.nbytes > self.max_bytes:
            return
        self._drop(key)
        self._images[key] = (time.monotonic() + self.keep_s, image)
        self.nbytes += image.nbytes
        now = time.monotonic()
        while self._images and (self.nbytes > self.max_bytes or next(iter(self._images.values()))[0] < now):
            self._drop(next(iter(self._images)))

    def get(self, key: str) -> np.ndarray:
        """The photo kept under `key`; ImageNotKept when there is none (or it expired)."""
        kept = self._images.get(key)
        if kept is None or kept[0] < time.monotonic():
            self._drop(key)
            raise ImageNotKept(f"image {key} is not kept here: send its pixels")
        return kept[1]

    def _drop(self, key: str) -> None:
        kept = self._images.pop(key, None)
        if kept is not None:
            self.nbytes -= kept[1].nbytes
