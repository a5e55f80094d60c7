"""A bounded LRU cache with hit/miss metrics (used from the event loop thread only).

Bounded in entries and, when `max_bytes` is given, in bytes: the caller says what each entry weighs (the
search cache stores serialised answers, so their length is the memory they hold, not an estimate).
"""

from __future__ import annotations

from collections import OrderedDict
from typing import Generic, TypeVar

from services.common.metrics import CACHE_BYTES, CACHE_REQUESTS

K = TypeVar("K")
V = TypeVar("V")


class LRUCache(Generic[K, V]):
    """Keeps the most recently used entries: at most `size` of them and `max_bytes` together; 0 disables it."""

    def __init__(self, name: str, size: int, max_bytes: int | None = None) -> None:
        self.name = name
        self.size = size
        self.max_bytes = max_bytes
        self.bytes = 0
        self._data: OrderedDict[K, tuple[V, int]] = OrderedDict()
        self._hits = CACHE_REQUESTS.labels(cache=name, result="hit")
        self._misses = CACHE_REQUESTS.labels(cache=name, result="miss")
        self._bytes_gauge = CACHE_BYTES.labels(cache=name)
        self._bytes_gauge.set(0)

    @property
    def enabled(self) -> bool:
        return self.size > 0 and self.max_bytes != 0

    def get(self, key: K) -> V | None:
        """The cached value (now most recent), or None; counted as a hit or a miss."""
        if not self.enabled:
            return None
        entry = self._data.get(key)
        if entry is None:
            self._misses.inc()
            return None
        self._data.move_to_end(key)
        self._hits.inc()
        return entry[0]

    def put(self, key: K, value: V, nbytes: int = 0) -> None:
        """Store a value weighing `nbytes`, evicting the least recently used entries until both bounds hold.

        A value heavier than `max_bytes` is not stored: it would empty the cache and still not fit.
        """
        if not self.enabled:
            return
        self._discard(key)
        if self.max_bytes is not None and nbytes > self.max_bytes:
            return
        self._data[key] = (value, nbytes)
        self.bytes += nbytes
        while len(self._data) > self.size or (self.max_bytes is not None and self.bytes > self.max_bytes):
            _, (_, evicted) = self._data.popitem(last=False)
            self.bytes -= evicted
        self._bytes_gauge.set(self.bytes)

    def _discard(self, key: K) -> None:
        entry = self._data.pop(key, None)
        if entry is not None:
            self.bytes -= entry[1]

    def clear(self) -> None:
        """Forget everything (e.g. after an index swap)."""
        self._data.clear()
        self.bytes = 0
        self._bytes_gauge.set(0)

    def __len__(self) -> int:
        return len(self._data)
