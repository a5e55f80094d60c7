"""The embedding job's batches: rows in, full batches to the embedder's lanes, vectors back in catalog order."""

from __future__ import annotations

from collections import deque
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np

from ann_index.build.embed_cache import EmbeddingCache
from ann_index.thumbs import ThumbPack
from imgcore.pixels import chw_batch

if TYPE_CHECKING:
    from ann_index.build.embedding import BatchEmbedder


@dataclass
class Batches:
    """Vectors in the order they were produced, the batch of preprocessed images waiting for the embedder,
    and the batches the model lanes are running.

    With `lanes`, a full batch goes to a lane (a thread calling `embedder.run`, which releases the GIL) and
    the job goes on collecting the next one; one batch more than there are lanes is handed over, so a lane
    that finishes takes the queued one at once instead of waiting for this thread to wake up, collect and
    submit (lanes idled 3 % of the job before: 1.3 ms median, 8 ms p90 between runs). Lanes of
    single-threaded sessions keep two cores busier than one two-threaded run: a decode thread that takes a
    core from one of a session's intra-op threads stalls every thread of that run at its next barrier,
    while a single-threaded lane only loses the time it was off the core (docs/benchmarks.md, P4).
    """

    embedder: BatchEmbedder
    cache: EmbeddingCache | None
    lanes: ThreadPoolExecutor | None = None
    width: int = 1  # lanes: batches running at once (one more waits in the queue)
    done: list[int] = field(default_factory=list)
    vectors: list[np.ndarray] = field(default_factory=list)
    batch: list[tuple[int, str, np.ndarray]] = field(default_factory=list)  # (position, image sha256, image)
    running: deque[tuple[list[int], list[str], Future[np.ndarray]]] = field(default_factory=deque)
    # Rows are added in catalog order and every added row is embedded, so these line up with `done` sorted.
    thumbs: ThumbPack = field(default_factory=ThumbPack)

    def add(self, pos: int, key: str, vector: np.ndarray | None, image: np.ndarray | None, thumb: bytes) -> None:
        self.thumbs.add(thumb)
        if vector is not None:
            self.vectors.append(vector[None, :])  # the order of `done` and `vectors` stays the same
            self.done.append(pos)
        elif image is not None:
            self.batch.append((pos, key, image))

    def flush(self) -> None:
        if not self.batch:
            return
        positions, keys = [pos for pos, _, _ in self.batch], [key for _, key, _ in self.batch]
        stacked = chw_batch([image for _, _, image in self.batch])
        self.batch.clear()
        if self.lanes is None:
            self._record(positions, keys, self.embedder.run(stacked))
            return
        while len(self.running) > self.width:
            self._collect()
        self.running.append((positions, keys, self.lanes.submit(self.embedder.run, stacked)))

    def finish(self) -> None:
        self.flush()
        while self.running:
            self._collect()

    def _collect(self) -> None:
        positions, keys, fut = self.running.popleft()
        self._record(positions, keys, fut.result())

    def _record(self, positions: list[int], keys: list[str], out: np.ndarray) -> None:
        vectors = np.asarray(out, dtype=np.float32)
        self.vectors.append(vectors)
        self.done.extend(positions)
        if self.cache is not None:
            self.cache.put_many(keys, vectors)

    def in_catalog_order(self, dim: int) -> tuple[list[int], np.ndarray]:
        """(positions, vectors) of everything embedded, sorted by catalog position."""
        if not self.vectors:
            return [], np.zeros((0, dim), np.float32)
        out, positions = np.concatenate(self.vectors), np.asarray(self.done)
        if np.any(positions[1:] < positions[:-1]):
            # Cache hits arrive ahead of the batch they overtook; catalog order keeps builds reproducible.
            order = np.argsort(positions, kind="stable")
            return [self.done[i] for i in order], out[order]
        return self.done, out  # already in catalog order: no second copy of every vector
