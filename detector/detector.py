"""Detector: a card-described ONNX detection model behind one `detect(image)` call."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Unpack

import numpy as np

from detector.decoders import Decoder, make_decoder
from detector.nms import batched_nms
from detector.transforms import Geometry, InputSpec, resize_for_model, to_tensor
from detector.types import Detection
from imgcore.errors import InvalidInput, StoreError
from imgcore.onnx_model import OnnxModel, RuntimeOptions
from imgcore.runtime import ModelSession

# Candidates kept before NMS: bounds NMS cost on cluttered photos; far above any useful output.
PRE_NMS_TOP_K = 1000
FALLBACK_DEFAULTS = {"score_threshold": 0.35, "iou_threshold": 0.5, "max_detections": 20}


class Detector(OnnxModel):
    """Loads `model_dir/{card.json,model.onnx}`; everything model-specific comes from the card.

    Thresholds left as None take the card's `defaults`; `runtime` options (threads, a fake session,
    skipping the checksum) are OnnxModel's.
    """

    def __init__(
        self,
        model_dir: Path,
        *,
        score_threshold: float | None = None,
        iou_threshold: float | None = None,
        max_detections: int | None = None,
        **runtime: Unpack[RuntimeOptions],
    ) -> None:
        super().__init__(model_dir, **runtime)
        defaults = {**FALLBACK_DEFAULTS, **(self._card.get("defaults") or {})}
        self.score_threshold = float(defaults["score_threshold"] if score_threshold is None else score_threshold)
        self.iou_threshold = float(defaults["iou_threshold"] if iou_threshold is None else iou_threshold)
        self.max_detections = int(defaults["max_detections"] if max_detections is None else max_detections)

    def _read_card(self, card: dict[str, Any]) -> None:
        try:
            self.labels: list[str] = [str(label) for label in card["labels"]]
            self._input = InputSpec.from_card(card["input"])
            self._output_spec = dict(card["output"])
        except (KeyError, TypeError, ValueError) as exc:
            raise StoreError(f"card of {self.model_dir} lacks labels/input/output: {exc!r}") from exc
        mapping = card.get("category_map") or {}
        self.category_map: dict[str, str | None] = {label: mapping.get(label) for label in self.labels}

    def _bind(self, session: ModelSession) -> None:
        self._input_name = self._input.name or session.input_names[0]
        self._require("input", self._input_name, session.input_names)
        # One decoder (its anchor grids) per input shape, all built now: a bad card fails at load, not per request.
        self._decoders: dict[tuple[int, int], Decoder] = {
            hw: make_decoder(
                self._output_spec, input_hw=hw, num_classes=len(self.labels), output_names=session.output_names
            )
            for hw in self._input.shapes()
        }

    def preprocess(self, image: np.ndarray) -> tuple[np.ndarray, Geometry]:
        """HxWx3 uint8 RGB -> (model input tensor, geometry to map boxes back)."""
        if not isinstance(image, np.ndarray) or image.dtype != np.uint8 or image.ndim != 3 or image.shape[2] != 3:
            shape = getattr(image, "shape", None)
            raise InvalidInput(f"expected an HxWx3 uint8 RGB image, got {type(image).__name__} {shape}")
        if image.shape[0] == 0 or image.shape[1] == 0:
            raise InvalidInput("image has no pixels")
        resized, geometry = resize_for_model(image, self._input)
        return to_tensor(resized, self._input), geometry

    def postprocess(
        self, outputs: list[np.ndarray], geometry: Geometry, score_threshold: float | None = None
    ) -> list[Detection]:
        """Raw outputs (in the session's output order) -> detections in original pixels, best first."""
        threshold = self.score_threshold if score_threshold is None else score_threshold
        named = dict(zip(self._session.output_names, outputs, strict=True))
        cand = self._decoders[geometry.input_hw](named, threshold)
        if cand.scores.shape[0] == 0:
            return []
        if cand.scores.shape[0] > PRE_NMS_TOP_K:
            top = np.argsort(-cand.scores, kind="stable")[:PRE_NMS_TOP_K]
            cand = type(cand)(cand.boxes[top], cand.scores[top], cand.class_ids[top])
        # NMS in model space: IoU does not change under per-axis scale + shift, so this equals NMS in
        # original pixels, and it runs before clipping, which would make border-cut boxes look alike.
        keep = batched_nms(cand.boxes, cand.scores, cand.class_ids, self.iou_threshold, self.max_detections)
        boxes = geometry.to_original(cand.boxes[keep])
        result = []
        for box, score, cls in zip(boxes, cand.scores[keep], cand.class_ids[keep], strict=True):
            x1, y1, x2, y2 = (float(v) for v in box)
            if x2 <= x1 or y2 <= y1:
                continue  # entirely inside the letterbox padding: nothing of the image is in it
            label = self.labels[int(cls)]
            result.append(Detection(label, self.category_map[label], float(score), (x1, y1, x2, y2)))
        return result

    def run(self, tensor: np.ndarray) -> list[np.ndarray]:
        """The model alone: a preprocessed tensor -> raw outputs in the session's output order."""
        return self._session.run({self._input_name: tensor})

    def warm_up(self) -> int:
        """One detect of a grey photo per input shape (onnxruntime plans each new shape on its first run), so
        pre/post-processing warm too."""
        shapes = self._input.shapes()
        for height, width in shapes:
            self.detect(np.full((height, width, 3), 127, dtype=np.uint8))
        return len(shapes)

    def detect(self, image: np.ndarray, score_threshold: float | None = None) -> list[Detection]:
        """Objects in an HxWx3 uint8 RGB image, sorted by score, boxes in its own pixel coordinates."""
        tensor, geometry = self.preprocess(image)
        return self.postprocess(self.run(tensor), geometry, score_threshold)
