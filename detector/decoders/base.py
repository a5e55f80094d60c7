"""What every decoder returns, and the score selection they share."""

from __future__ import annotations

from typing import NamedTuple, Protocol

import numpy as np

from imgcore.errors import StoreError


class Candidates(NamedTuple):
    """Boxes before NMS: xyxy in MODEL-INPUT pixels (the detector maps them back to the original)."""

    boxes: np.ndarray  # (N, 4) float
    scores: np.ndarray  # (N,) float
    class_ids: np.ndarray  # (N,) int64

    @staticmethod
    def empty() -> Candidates:
        return Candidates(np.zeros((0, 4)), np.zeros((0,)), np.zeros((0,), dtype=np.int64))


class Decoder(Protocol):
    """Raw model outputs (by output name) -> candidate boxes above `score_threshold`."""

    def __call__(self, outputs: dict[str, np.ndarray], score_threshold: float) -> Candidates: ...


def select_scores(
    class_scores: np.ndarray, score_threshold: float, multi_label: bool
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(rows, class_ids, scores) of the (N, C) score matrix entries to keep.

    Single-label keeps only each row's best class: one object, one detection, which is what a
    shopper picking an item wants. Multi-label keeps every class above the threshold (COCO-style
    evaluation), at the cost of stacked boxes with different labels on the same object.
    """
    if class_scores.shape[0] == 0 or class_scores.shape[1] == 0:
        empty = np.zeros((0,), dtype=np.int64)
        return empty, empty, np.zeros((0,), dtype=class_scores.dtype)
    if multi_label:
        rows, cls = np.nonzero(class_scores > score_threshold)
        return rows.astype(np.int64), cls.astype(np.int64), class_scores[rows, cls]
    cls = class_scores.argmax(axis=1)
    best = class_scores[np.arange(class_scores.shape[0]), cls]
    rows = np.nonzero(best > score_threshold)[0]
    return rows.astype(np.int64), cls[rows].astype(np.int64), best[rows]


def output_or_fail(outputs: dict[str, np.ndarray], name: str) -> np.ndarray:
    if name not in outputs:
        raise StoreError(f"model has no output {name!r}; it has {sorted(outputs)}")
    return outputs[name]
