"""A bounded LRU cache with hit/miss metrics (used from the event loop thread only)."""

from __future__ import annotations

from collections import OrderedDict
from typing import Generic, TypeVar

from services.common.metrics import CACHE_REQUESTS

K = TypeVar("K")
V = TypeVar("V")


class LRUCache(Generic[K, V]):
    """Keeps the `size` most recently used entries; `size` 0 disables it."""

    def __init__(self, name: str, size: int) -> None:
        self.name = name
        self.size = size
        self._data: OrderedDict[K, V] = OrderedDict()
        self._hits = CACHE_REQUESTS.labels(cache=name, result="hit")
        self._misses = CACHE_REQUESTS.labels(cache=name, result="miss")

    def get(self, key: K) -> V | None:
        """The cached value (now most recent), or None; counted as a hit or a miss."""
        if self.size <= 0:
            return None
        value = self._data.get(key)
        if value is None:
            self._misses.inc()
            return None
        self._data.move_to_end(key)
        self._hits.inc()
        return value

    def put(self, key: K, value: V) -> None:
        """Store a value, evicting the least recently used entry when full."""
        if self.size <= 0:
            return
        self._data[key] = value
        self._data.move_to_end(key)
        while len(self._data) > self.size:
            self._data.popitem(last=False)

    def clear(self) -> None:
        """Forget everything (e.g. after an index swap)."""
        self._data.clear()

    def __len__(self) -> int:
        return len(self._data)
