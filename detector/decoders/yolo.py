"""YOLO decoder for the two common single-output exports, so users can plug in their own detector.

  v8 style (YOLOv8/v11 ONNX export): (1, 4 + C, N) rows cx, cy, w, h, then C class scores;
         some exporters transpose it to (1, N, 4 + C), which is accepted too.
  v5 style (YOLOv5/v7 export):        (1, N, 5 + C) cx, cy, w, h, objectness, then C class scores;
         the score of a class is objectness * class score.
Boxes are in model-input pixels (or 0..1 of the input size when the card says `normalized: true`).
Scores are taken as already activated (the exports include the sigmoid).
Set the card's `output.format` to "v8" or "v5" when shapes could be read either way.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from detector.decoders.base import Candidates, output_or_fail, select_scores
from imgcore.errors import StoreError

FORMATS = ("v8", "v5")


class YoloDecoder:
    def __init__(
        self,
        output_name: str,
        *,
        num_classes: int,
        input_hw: tuple[int, int],
        fmt: str | None = None,
        normalized: bool = False,
        multi_label: bool = False,
    ) -> None:
        self._name = output_name
        self._num_classes = num_classes
        self._input_hw = input_hw
        self._fmt = fmt
        self._normalized = normalized
        self._multi_label = multi_label

    @classmethod
    def from_card(
        cls,
        spec: dict[str, Any],
        *,
        input_hw: tuple[int, int],
        num_classes: int,
        output_names: list[str],
    ) -> YoloDecoder:
        name = spec.get("name") or (output_names[0] if output_names else None)
        if not name:
            raise StoreError("card output.name is missing and the model has no outputs")
        fmt = spec.get("format")
        if fmt is not None and fmt not in FORMATS:
            raise StoreError(f"card output.format={fmt!r} is not one of {list(FORMATS)}")
        return cls(
            str(name),
            num_classes=num_classes,
            input_hw=input_hw,
            fmt=fmt,
            normalized=bool(spec.get("normalized", False)),
            multi_label=bool(spec.get("multi_label", False)),
        )

    def rows(self, raw: np.ndarray) -> tuple[np.ndarray, str]:
        """The output as (N, 4 + C) or (N, 5 + C) rows, and which format it is."""
        if raw.ndim == 3 and raw.shape[0] == 1:
            raw = raw[0]
        if raw.ndim != 2:
            raise StoreError(f"YOLO output must be (1, A, B); got shape {raw.shape}")
        a, b = raw.shape
        c = self._num_classes
        if self._fmt == "v5" or (self._fmt is None and b == 5 + c):
            if b != 5 + c:
                raise StoreError(f"v5 output needs (1, N, {5 + c}) for {c} labels; got {raw.shape}")
            return raw, "v5"
        if a == 4 + c:  # channels-first, the default Ultralytics export; preferred when both fit
            return raw.T, "v8"
        if b == 4 + c:
            return raw, "v8"
        raise StoreError(f"YOLO output shape {raw.shape} fits neither (1, {4 + c}, N) nor (1, N, {5 + c})")

    def __call__(self, outputs: dict[str, np.ndarray], score_threshold: float) -> Candidates:
        rows, fmt = self.rows(output_or_fail(outputs, self._name))
        rows = rows.astype(np.float32, copy=False)
        if fmt == "v5":
            class_scores = rows[:, 5:] * rows[:, 4:5]
        else:
            class_scores = rows[:, 4:]
        keep, cls, scores = select_scores(class_scores, score_threshold, self._multi_label)
        if keep.size == 0:
            return Candidates.empty()
        cx, cy, w, h = (rows[keep, i].astype(np.float64) for i in range(4))
        boxes = np.stack([cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2], axis=1)
        if self._normalized:
            height, width = self._input_hw
            boxes *= np.array([width, height, width, height], dtype=np.float64)
        return Candidates(boxes, scores, cls)
