"""NanoDet (GFL head) decoder: per-stride class maps + distance distributions over bins.

For each stride s the model gives, per grid cell (row-major over a ceil(H/s) x ceil(W/s) grid):
  scores (N, C): already sigmoid-activated class scores;
  boxes  (N, 4 * (reg_max + 1)): for the left, top, right and bottom side, logits over the
         distances 0..reg_max; softmax, then the expectation times s is that side's distance
         from the cell centre (x + center_offset) * s.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from detector.decoders.base import Candidates, output_or_fail, select_scores
from imgcore.errors import StoreError


@dataclass(frozen=True)
class _Level:
    stride: int
    scores: str
    boxes: str
    centers: np.ndarray  # (N, 2) x, y of each cell centre in model-input pixels


class NanoDetDecoder:
    def __init__(
        self,
        levels: list[_Level],
        *,
        reg_max: int,
        num_classes: int,
        multi_label: bool,
    ) -> None:
        self._levels = levels
        self._bins = np.arange(reg_max + 1, dtype=np.float32)
        self._num_classes = num_classes
        self._multi_label = multi_label

    @classmethod
    def from_card(cls, spec: dict[str, Any], *, input_hw: tuple[int, int], num_classes: int) -> NanoDetDecoder:
        try:
            strides = [int(s) for s in spec["strides"]]
            score_names = [str(n) for n in spec["scores"]]
            box_names = [str(n) for n in spec["boxes"]]
            reg_max = int(spec["reg_max"])
            offset = float(spec.get("center_offset", 0.0))
            multi_label = bool(spec.get("multi_label", False))
        except (KeyError, TypeError, ValueError) as exc:
            raise StoreError(f"card output section for nanodet is invalid: {exc!r}") from exc
        if int(spec.get("bins", reg_max + 1)) != reg_max + 1:
            raise StoreError(f"card output: bins={spec['bins']} contradicts reg_max={reg_max} (bins = reg_max + 1)")
        if not (len(strides) == len(score_names) == len(box_names)) or not strides:
            raise StoreError("card output: strides, scores and boxes must be non-empty lists of equal length")
        height, width = input_hw
        levels = []
        for stride, score_name, box_name in zip(strides, score_names, box_names, strict=True):
            fh, fw = math.ceil(height / stride), math.ceil(width / stride)
            ys, xs = np.meshgrid(np.arange(fh, dtype=np.float32), np.arange(fw, dtype=np.float32), indexing="ij")
            centers = (np.stack([xs.ravel(), ys.ravel()], axis=1) + offset) * stride
            levels.append(_Level(stride, score_name, box_name, centers))
        return cls(levels, reg_max=reg_max, num_classes=num_classes, multi_label=multi_label)

    def __call__(self, outputs: dict[str, np.ndarray], score_threshold: float) -> Candidates:
        boxes, scores, class_ids = [], [], []
        nbins = self._bins.shape[0]
        for level in self._levels:
            cls_map = output_or_fail(outputs, level.scores).reshape(-1, self._num_classes)
            reg_map = output_or_fail(outputs, level.boxes).reshape(cls_map.shape[0], 4 * nbins)
            if cls_map.shape[0] != level.centers.shape[0]:
                raise StoreError(
                    f"output {level.scores!r} has {cls_map.shape[0]} cells; "
                    f"stride {level.stride} on this input size needs {level.centers.shape[0]}"
                )
            rows, cls, sc = select_scores(cls_map, score_threshold, self._multi_label)
            if rows.size == 0:
                continue
            # Softmax only for the cells that survived the threshold: most of the grid is background.
            logits = reg_map[rows].reshape(-1, 4, nbins).astype(np.float32)
            logits = logits - logits.max(axis=2, keepdims=True)
            prob = np.exp(logits)
            prob /= prob.sum(axis=2, keepdims=True)
            dist = (prob @ self._bins) * level.stride  # (n, 4): left, top, right, bottom
            centers = level.centers[rows]
            boxes.append(np.concatenate([centers - dist[:, :2], centers + dist[:, 2:]], axis=1))
            scores.append(sc)
            class_ids.append(cls)
        if not boxes:
            return Candidates.empty()
        return Candidates(np.concatenate(boxes), np.concatenate(scores), np.concatenate(class_ids))
