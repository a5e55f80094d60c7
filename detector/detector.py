"""Detector: a card-described ONNX detection model behind one `detect(image)` call."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from detector.decoders import make_decoder
from detector.nms import batched_nms
from detector.transforms import Geometry, InputSpec, resize_for_model, to_tensor
from detector.types import Detection
from imgcore.card import MODEL_NAME, load_card, sha256_file
from imgcore.errors import ChecksumMismatch, InvalidInput, StoreError
from imgcore.runtime import ModelSession, OrtSession

# Candidates kept before NMS: bounds NMS cost on cluttered photos; far above any useful output.
PRE_NMS_TOP_K = 1000
FALLBACK_DEFAULTS = {"score_threshold": 0.35, "iou_threshold": 0.5, "max_detections": 20}


class Detector:
    """Loads `model_dir/{card.json,model.onnx}`; everything model-specific comes from the card.

    Thresholds left as None take the card's `defaults`. Pass `session` (anything with the
    ModelSession shape) to run without onnxruntime, e.g. a fake in tests; then the model file
    is neither read nor checksummed. `verify_sha256=False` skips re-hashing a folder the model
    store has just verified.
    """

    def __init__(
        self,
        model_dir: Path,
        *,
        intra_threads: int = 1,
        inter_threads: int = 1,
        score_threshold: float | None = None,
        iou_threshold: float | None = None,
        max_detections: int | None = None,
        session: ModelSession | None = None,
        verify_sha256: bool = True,
    ) -> None:
        self.model_dir = Path(model_dir)
        self.card: dict[str, Any] = load_card(self.model_dir)
        if session is None:
            session = self._open_session(intra_threads, inter_threads, verify_sha256)
        self._session = session
        try:
            self.labels: list[str] = [str(label) for label in self.card["labels"]]
            self._input = InputSpec.from_card(self.card["input"])
            output_spec = dict(self.card["output"])
        except (KeyError, TypeError, ValueError) as exc:
            raise StoreError(f"card of {self.model_dir} lacks labels/input/output: {exc!r}") from exc
        mapping = self.card.get("category_map") or {}
        self.category_map: dict[str, str | None] = {label: mapping.get(label) for label in self.labels}
        self._input_name = self._input.name or session.input_names[0]
        if self._input_name not in session.input_names:
            raise StoreError(f"card input {self._input_name!r} not among model inputs {session.input_names}")
        self._decoder = make_decoder(
            output_spec,
            input_hw=(self._input.height, self._input.width),
            num_classes=len(self.labels),
            output_names=session.output_names,
        )
        defaults = {**FALLBACK_DEFAULTS, **(self.card.get("defaults") or {})}
        self.score_threshold = float(defaults["score_threshold"] if score_threshold is None else score_threshold)
        self.iou_threshold = float(defaults["iou_threshold"] if iou_threshold is None else iou_threshold)
        self.max_detections = int(defaults["max_detections"] if max_detections is None else max_detections)

    def _open_session(self, intra_threads: int, inter_threads: int, verify: bool) -> OrtSession:
        path = self.model_dir / MODEL_NAME
        if not path.is_file():
            raise StoreError(f"model file not found: {path}")
        # The model store verifies downloads; this also catches a model edited in place next to its card.
        if verify:
            actual = sha256_file(path)
            if actual != self.card["sha256"]:
                raise ChecksumMismatch(f"{path} has sha256 {actual}, its card says {self.card['sha256']}")
        return OrtSession(path, intra_threads=intra_threads, inter_threads=inter_threads)

    @property
    def name(self) -> str:
        return str(self.card["name"])

    @property
    def version(self) -> str:
        return str(self.card.get("version", ""))

    @property
    def sha256(self) -> str:
        return str(self.card["sha256"])

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
        cand = self._decoder(named, threshold)
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

    def detect(self, image: np.ndarray, score_threshold: float | None = None) -> list[Detection]:
        """Objects in an HxWx3 uint8 RGB image, sorted by score, boxes in its own pixel coordinates."""
        tensor, geometry = self.preprocess(image)
        return self.postprocess(self.run(tensor), geometry, score_threshold)
