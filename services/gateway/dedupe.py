"""Near-duplicate listings on search (issue 28): `dedupe=true` leaves out a hit that is a near-identical image
of a higher-ranked one (a re-uploaded copy of a listing under another product).

The index sends each hit's stored vector when asked (`with_vectors`); the gateway collapses after merging, so
duplicates in different partitions collapse too. Extra hits are asked for so that k remain. The threshold is
`imgcore.index_wire.DUPLICATE_SCORE`, the one `imgsearch index duplicates` uses (calibrated in
docs/benchmarks.md).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from imgcore.index_wire import DUPLICATE_SCORE

Drop = Callable[[dict[str, Any]], bool]  # a hit that must not be listed (similar items: the item itself)
EXTRA = 10  # hits asked for beyond 2k when collapsing duplicates


def query_options(filter_text: str | None, group: str, dedupe: bool) -> dict[str, Any]:
    """The index query's options as its JSON body names them."""
    options: dict[str, Any] = {"group": group}
    if filter_text:
        options["filter"] = filter_text
    if dedupe:
        options["with_vectors"] = True
    return options


def asked_k(k: int, options: dict[str, Any] | None) -> int:
    """How many hits to ask the index for, so that k remain after collapsing duplicates."""
    return 2 * k + EXTRA if (options or {}).get("with_vectors") else k


def collapse(hits: list[dict[str, Any]], k: int, threshold: float = DUPLICATE_SCORE) -> list[dict[str, Any]]:
    """The first k hits that are no near-duplicate of a hit kept before them; vectors dropped."""
    kept: list[dict[str, Any]] = []
    kept_vectors: list[np.ndarray] = []
    for hit in hits:
        vector = np.asarray(hit.pop("vector", None) or [], np.float32)
        if len(vector) and kept_vectors and float(np.max(np.stack(kept_vectors) @ vector)) >= threshold:
            continue
        if len(vector):
            kept_vectors.append(vector)
        kept.append(hit)
        if len(kept) == k:
            break
    return kept


def finish(
    results: list[list[dict[str, Any]]], k: int, options: dict[str, Any] | None, drop: Drop | None = None
) -> list[list[dict[str, Any]]]:
    """Each row's top k (hits `drop` says no to left out first), near-duplicates collapsed when the options
    asked for it."""
    if drop is not None:
        results = [[hit for hit in row if not drop(hit)] for row in results]
    if not (options or {}).get("with_vectors"):
        return [row[:k] for row in results]
    return [collapse(row, k) for row in results]
