"""The embedding phase in model lanes: each lane thread prepares a whole batch of rows and runs the model on it.

With `RebuildOptions.model_lanes` > 1 (one lane per core, each calling a single-threaded session), a lane
fetches, decodes, thumbnails and preprocesses the rows of its batch, then embeds them: no row crosses a
thread, and no more threads are runnable than there are cores. While one lane decodes (partly under the
GIL) the other runs the model, which releases it. Decode threads feeding a model thread instead kept four
threads runnable on two cores, and every row went through two hand-offs (docs/benchmarks.md, P4).
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from itertools import islice
from typing import Any, Protocol

import numpy as np
from tqdm import tqdm

from ann_index.catalog import CatalogItem
from ann_index.embed_cache import EmbeddingCache
from ann_index.thumbs import ThumbPack
from imgcore.errors import ImgSearchError

# What preparing a row gives: (image sha256 or "", a cached vector, or a preprocessed image, thumbnail).
Prepared = tuple[str, np.ndarray | None, np.ndarray | None, bytes]


class Runs(Protocol):
    def run(self, batch: np.ndarray) -> np.ndarray: ...


# A lane's result: the rows' positions, what preparing each gave (or its typed error), the misses' vectors.
LaneResult = tuple[range, list[Prepared | ImgSearchError], np.ndarray | None]


def embed_in_lanes(
    items: Sequence[CatalogItem],
    prepare: Callable[[list[CatalogItem]], list[Prepared | ImgSearchError]],
    embedder: Runs,
    cache: EmbeddingCache | None,
    lanes: int,
    batch_size: int,
    dim: int,
    progress: bool = False,
) -> tuple[list[int], np.ndarray, list[dict[str, Any]], ThumbPack]:
    """(positions of embedded items, their vectors, skipped rows with reasons, thumbnails), catalog order."""

    def lane(rows: range) -> LaneResult:
        got = prepare([items[pos] for pos in rows])
        misses = [g[2] for g in got if not isinstance(g, ImgSearchError) and g[2] is not None]
        return rows, got, (np.asarray(embedder.run(np.stack(misses)), np.float32) if misses else None)

    done: list[int] = []
    vectors: list[np.ndarray] = []
    skipped: list[dict[str, Any]] = []
    thumbs = ThumbPack()
    batches = iter(range(a, min(a + batch_size, len(items))) for a in range(0, len(items), batch_size))
    with (
        ThreadPoolExecutor(lanes, thread_name_prefix="model-lane") as pool,
        tqdm(total=len(items), unit="item", desc="embed", disable=not progress, mininterval=0.5) as bar,
    ):
        running: deque[Future[LaneResult]] = deque(pool.submit(lane, b) for b in islice(batches, 2 * lanes))
        while running:
            rows, got, embedded = running.popleft().result()
            nxt = next(batches, None)
            if nxt is not None:  # two batches per lane in flight: a lane never waits for the collector
                running.append(pool.submit(lane, nxt))
            keys = [row[0] for row in got if not isinstance(row, ImgSearchError) and row[1] is None]
            if cache is not None and embedded is not None:
                cache.put_many(keys, embedded)
            missed = 0
            for pos, row in zip(rows, got, strict=True):
                if isinstance(row, ImgSearchError):  # unreadable or undecodable image: a skipped row
                    skipped.append({"line": items[pos].line, "item_id": items[pos].item_id, "reason": row.message})
                    continue
                thumbs.add(row[3])
                done.append(pos)
                if row[1] is None:  # embedded by the lane, in row order
                    missed += 1
                vectors.append(row[1][None, :] if row[1] is not None else embedded[missed - 1 : missed])  # type: ignore[index]
            bar.update(len(rows))
    return done, (np.concatenate(vectors) if vectors else np.zeros((0, dim), np.float32)), skipped, thumbs
