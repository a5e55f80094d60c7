"""The gate's self-match check: sampled catalog images, embedded as the search path embeds a photo, must find
their own item first in the built index, at the search_k it will be served with.

A search embeds a whole photo with `Embedder.whole_image_pixels` and the foreground crop; the rebuild embeds
catalog images through the same function (`RebuildOptions.crop="foreground"`). Anything that makes the two
differ (another crop, another decoder, a model that is not deterministic across batches) or an annoy forest that
misses an item's own leaf shows up here as a catalog image that does not come back first. An exact duplicate
image of another item (an identical index vector) counts as a match. `probe` embeds the sample (in the rebuild,
where the embedder is); `measure` runs in the gate, on the forest it measured.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np

from ann_index.catalog.rows import CatalogItem

DEFAULT_MIN_SELF_MATCH = 0.99
DEFAULT_QUERIES = 500
LISTED_MISSES = 20
_SAME = 1.0 - 1e-6  # cosine of two vectors of one image (float32 rounding aside)


@dataclass(frozen=True)
class Probes:
    """Items as the search path embeds them: positions in the build's input order, their vectors, and every
    input item's id (to name misses)."""

    positions: np.ndarray
    vectors: np.ndarray
    item_ids: Sequence[str]


@dataclass
class SelfMatch:
    queries: int
    rate: float
    own_cosine_min: float  # the search path's vector against the index's own vector of the item
    missed: int
    misses: list[dict[str, Any]] = field(default_factory=list)  # {"item_id", "first", "cosine"}, the first few


def sample(n: int, count: int, seed: int) -> np.ndarray:
    """Sorted positions of `count` of `n` items (all when fewer), the same for the same seed."""
    rng = np.random.default_rng([seed, 27])
    return np.sort(rng.choice(n, size=min(count, n), replace=False)) if n else np.zeros(0, np.int64)


def probe(items: list[CatalogItem], base_uri: str, embedder: Any, opts: Any) -> Probes | None:
    """Re-embed a sample of `items` (the build's input) through the search path's preprocessing; None when
    `opts.self_match_queries` is 0. Rows that fail to embed now are left out of the sample."""
    from ann_index.build.embedding import embed_items  # the embedding job imports the gate's defaults

    if opts.self_match_queries <= 0 or not items:
        return None
    positions = sample(len(items), opts.self_match_queries, opts.seed)
    as_searched = replace(opts, crop="foreground", embedding_cache=None, progress=False, decode_processes=0)
    embedded = embed_items([items[p] for p in positions], base_uri, embedder, as_searched)
    kept = {it.item_id for it in embedded.items}
    positions = np.asarray([p for p in positions if items[p].item_id in kept], dtype=np.int64)
    return Probes(positions, embedded.vectors, [it.item_id for it in items])


def measure(
    probes: Probes, order: np.ndarray, vecs: np.ndarray, first: Callable[[np.ndarray], int | None]
) -> SelfMatch:
    """Self-match@1 of `probes`; `order[aid]` = input position of annoy id aid, `vecs` the index's vectors in
    annoy-id order, `first(vector)` the served top-1 annoy id."""
    aid_of = np.empty(len(order), dtype=np.int64)
    aid_of[order] = np.arange(len(order))
    hits, cosines, misses = 0, [], []
    for pos, vec in zip(probes.positions, probes.vectors, strict=True):
        aid = int(aid_of[pos])
        q = vec / max(float(np.linalg.norm(vec)), 1e-12)
        cosines.append(float(vecs[aid] @ q))
        got = first(q)
        if got is not None and (got == aid or float(vecs[got] @ vecs[aid]) >= _SAME):
            hits += 1
        else:
            found = None if got is None else probes.item_ids[int(order[got])]
            misses.append({"item_id": probes.item_ids[pos], "first": found, "cosine": round(cosines[-1], 6)})
    n = len(probes.positions)
    rate = round(hits / n, 4) if n else 1.0
    return SelfMatch(n, rate, round(min(cosines), 6) if cosines else 1.0, n - hits, misses[:LISTED_MISSES])
