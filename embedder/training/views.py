"""Batches of training views, rendered one batch ahead on a thread.

A thread, not a DataLoader process: OpenCV and numpy release the GIL while they render, a process costs a
torch import and a copy of every image on start (seconds that a 4-minute budget cannot spare), and a forked
one deadlocks in OpenCV's thread pool once the parent has used it.
"""

from __future__ import annotations

from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor

import numpy as np
import torch

from embedder.training.augment import CATALOG_LOOK, Look, train_view

Batch = tuple[torch.Tensor, torch.Tensor, torch.Tensor]  # views [B,3,S,S] uint8, category [B], product [B]


class Views:
    """The training items with their category and product class (-1: none), and their views at `size` (default:
    the items' side). An item is a catalog image unless `look` renders items of another kind."""

    def __init__(
        self,
        images: np.ndarray,
        category: np.ndarray,
        product: np.ndarray,
        p_catalog: float,
        p_crop: float,
        seed: int,
        look: Look = CATALOG_LOOK,
        size: int = 0,
    ) -> None:
        self.images, self.category, self.product = images, category, product
        self.p_catalog, self.p_crop = p_catalog, p_crop
        self.seed, self.look = seed, look
        self.size = size or images.shape[1]

    def __len__(self) -> int:
        return len(self.images)

    def batches_per_epoch(self, batch: int) -> int:
        return max(1, len(self) // batch)

    def catalog_images(self, start: int, stop: int) -> np.ndarray:
        """The plain catalog images of items start..stop, [n, S, S, 3] uint8."""
        return np.stack([self.look.catalog(item, self.size) for item in self.images[start:stop]])

    def _render(self, rows: np.ndarray, rng: np.random.Generator) -> Batch:
        look, size = self.look, self.size
        views = np.stack([train_view(self.images[r], rng, self.p_catalog, self.p_crop, look, size) for r in rows])
        return (
            torch.from_numpy(np.ascontiguousarray(views.transpose(0, 3, 1, 2))),
            torch.from_numpy(self.category[rows]),
            torch.from_numpy(self.product[rows]),
        )

    def epoch(self, batch: int, epoch: int) -> Iterator[Batch]:
        """One shuffled pass in full batches (seeded by run seed and epoch), the next batch rendering meanwhile."""
        rng = np.random.default_rng([self.seed, epoch])
        order = rng.permutation(len(self))
        size = min(batch, len(self))
        chunks = [order[s : s + size] for s in range(0, len(order) - size + 1, size)]
        with ThreadPoolExecutor(max_workers=1, thread_name_prefix="views") as pool:
            pending: Future[Batch] | None = pool.submit(self._render, chunks[0], rng) if chunks else None
            for nxt in [*chunks[1:], None]:
                assert pending is not None
                current = pending.result()
                pending = pool.submit(self._render, nxt, rng) if nxt is not None else None
                yield current
