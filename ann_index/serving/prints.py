"""Fingerprints of the pictures a query returns, for `dedupe` (issue 28): a hit carries its thumbnail's
fingerprint (`imgcore.fingerprint`) and the gateway collapses near-identical pictures across partitions by the
same score and threshold as `imgsearch index duplicates`.

A version stores no fingerprints, so they are made from the thumbnails when first asked (about 2.5 ms each on
the test machine, docs/benchmarks.md) and kept by the thumbnail's digest: an upserted item's new picture is a
new key, and the same picture in two versions is made once.
"""

from __future__ import annotations

import hashlib
import threading
from collections import OrderedDict

import numpy as np

from imgcore.fingerprint import encoded_fingerprints

MAX_PRINTS = 4096  # 3 KiB each: 12 MiB at most


class PrintCache:
    """Fingerprints of encoded thumbnails, the most recently used `max_prints` kept (thread-safe)."""

    def __init__(self, max_prints: int = MAX_PRINTS) -> None:
        self.max_prints = max_prints
        self._prints: OrderedDict[bytes, np.ndarray | None] = OrderedDict()
        self._lock = threading.Lock()

    def of(self, thumbnail: bytes) -> np.ndarray | None:
        """The thumbnail's fingerprints ([len(CROPS), DIM]), or None when it does not decode."""
        key = hashlib.blake2b(thumbnail, digest_size=16).digest()
        with self._lock:
            if key in self._prints:
                self._prints.move_to_end(key)
                return self._prints[key]
        prints = encoded_fingerprints(thumbnail)  # outside the lock: queries run on several threads
        with self._lock:
            self._prints[key] = prints
            while len(self._prints) > self.max_prints:
                self._prints.popitem(last=False)
        return prints

    def __len__(self) -> int:
        return len(self._prints)
