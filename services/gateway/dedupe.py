"""Near-duplicate listings on search (issue 28): `dedupe=true` leaves out a hit that is a near-identical picture
of a higher-ranked one (a re-uploaded copy of a listing under another product).

The index sends each hit's picture fingerprint when asked (`with_prints`, `imgcore.fingerprint`); the gateway
collapses after merging, so duplicates in different partitions collapse too. The score and threshold are those
of `imgsearch index duplicates` (`DUPLICATE_PRINT_SCORE`, calibrated by bench/duplicates.py), not the
embedding's cosine: how close an embedder puts distinct look-alike products depends on the model. A hit without a
fingerprint (no thumbnail) is never collapsed. Extra hits are asked for so that k remain.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from imgcore.fingerprint import DUPLICATE_PRINT_SCORE, print_score, prints_from_b64

Drop = Callable[[dict[str, Any]], bool]  # a hit that must not be listed (similar items: the item itself)
EXTRA = 10  # hits asked for beyond 2k when collapsing duplicates


def query_options(filter_text: str | None, group: str, dedupe: bool) -> dict[str, Any]:
    """The index query's options as its JSON body names them."""
    options: dict[str, Any] = {"group": group}
    if filter_text:
        options["filter"] = filter_text
    if dedupe:
        options["with_prints"] = True
    return options


def asked_k(k: int, options: dict[str, Any] | None) -> int:
    """How many hits to ask the index for, so that k remain after collapsing duplicates."""
    return 2 * k + EXTRA if (options or {}).get("with_prints") else k


def collapse(hits: list[dict[str, Any]], k: int, threshold: float = DUPLICATE_PRINT_SCORE) -> list[dict[str, Any]]:
    """The first k hits whose picture is no near-duplicate of a hit kept before them; fingerprints dropped."""
    kept: list[dict[str, Any]] = []
    kept_prints: list[np.ndarray] = []
    for hit in hits:
        prints = prints_from_b64(hit.pop("print", None))
        if prints is not None and any(print_score(prints, other) >= threshold for other in kept_prints):
            continue
        if prints is not None:
            kept_prints.append(prints)
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
    if not (options or {}).get("with_prints"):
        return [row[:k] for row in results]
    return [collapse(row, k) for row in results]
