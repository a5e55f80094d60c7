"""Small factories for the index tests: a fake embedder and tiny version folders."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from ann_index.build.rebuild import RebuildOptions, build_version
from ann_index.items import IndexItem
from embedder.transforms import foreground_box


@dataclass
class FakeEmbedder:
    """Embeds an image as its 8x8 grey thumbnail (dim 64): fast, deterministic and class-aware on FMNIST."""

    name: str = "fake-embedder"
    version: str = "1"
    sha256: str = hashlib.sha256(b"fake-embedder").hexdigest()
    dim: int = 64
    metric: str = "angular"
    card: dict[str, Any] = field(default_factory=lambda: {"input": {"size": [8, 8], "resize": "area"}})

    def preprocess_pixels(self, image: np.ndarray, box: Any = None) -> np.ndarray:
        return np.asarray(cv2.resize(image, (8, 8), interpolation=cv2.INTER_AREA), dtype=np.uint8)

    def whole_image_pixels(self, image: np.ndarray, foreground: bool) -> tuple[np.ndarray, Any]:
        box = foreground_box(image) if foreground else None
        crop = image if box is None else image[int(box[1]) : int(box[3]), int(box[0]) : int(box[2])]
        return self.preprocess_pixels(crop), box

    def run(self, batch: np.ndarray) -> np.ndarray:
        # 255 - x: dark-on-white items become bright-on-dark, so the white background adds nothing.
        flat = (255.0 - batch.mean(axis=1)).reshape(len(batch), -1) + 1e-3
        return (flat / np.linalg.norm(flat, axis=1, keepdims=True)).astype(np.float32)


def clustered(n: int, dim: int, clusters: int, spread: float, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(clusters, dim))
    labels = rng.integers(0, clusters, n)
    return (centres[labels] + spread * rng.normal(size=(n, dim))).astype(np.float32), labels


def items_for(labels: np.ndarray, categories: int = 3) -> list[IndexItem]:
    return [
        IndexItem(f"item-{i:04d}", f"cat{int(lab) % categories}", f"Item {i}", f"file:///img/{i}.png", {"n": i})
        for i, lab in enumerate(labels)
    ]


def make_version(
    out: Path,
    vectors: np.ndarray,
    items: list[IndexItem],
    embedder: FakeEmbedder | None = None,
    **opts: Any,
) -> dict[str, Any]:
    """A complete, gated version folder (manifest included), as the rebuild job would publish it."""
    emb = embedder or FakeEmbedder(dim=vectors.shape[1])
    options = RebuildOptions(**{"n_trees": 8, "progress": False, **opts})
    return build_version(vectors, items, out, emb, options)
