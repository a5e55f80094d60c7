"""PoseEstimator: one person's 17 COCO keypoints from a single-pose model (MoveNet), in original pixels.

MoveNet expects one person roughly centred in a square input, so the person's box is grown to a square
(with a margin: wrists and feet often stick out of a detector's box), cut out with black where it leaves
the photo, and resized to the model's input; the normalised (y, x) answers map back through that square.
"""

from __future__ import annotations

from typing import Any

import cv2
import numpy as np

from detector.types import Box
from imgcore.errors import StoreError
from imgcore.onnx_model import OnnxModel
from imgcore.runtime import ModelSession

KEYPOINTS = (
    "nose", "left_eye", "right_eye", "left_ear", "right_ear", "left_shoulder", "right_shoulder",
    "left_elbow", "right_elbow", "left_wrist", "right_wrist", "left_hip", "right_hip",
    "left_knee", "right_knee", "left_ankle", "right_ankle",
)  # fmt: skip


def person_square(box: Box, margin: float) -> tuple[float, float, float]:
    """(x0, y0, side): the square centred on the box, its longer side grown by `margin` on each end."""
    x1, y1, x2, y2 = box
    side = max(x2 - x1, y2 - y1) * (1.0 + 2.0 * margin)
    return (x1 + x2) / 2 - side / 2, (y1 + y2) / 2 - side / 2, side


def cut_square(image: np.ndarray, x0: float, y0: float, side: float, size: int) -> np.ndarray:
    """The square [x0, x0+side) x [y0, y0+side) of the image resized to size x size; black outside the photo."""
    scale = size / side
    # An affine warp crops, pads and resizes in one pass; the constant border is the padding.
    matrix = np.array([[scale, 0.0, -x0 * scale], [0.0, scale, -y0 * scale]], dtype=np.float64)
    return cv2.warpAffine(image, matrix, (size, size), flags=cv2.INTER_LINEAR, borderValue=(0, 0, 0))


class PoseEstimator(OnnxModel):
    """`keypoints(image, box)` -> float32 [17, 3]: x, y in original pixels and the keypoint's confidence."""

    default_version = "4"

    def __init__(self, model_dir: Any, *, margin: float = 0.1, **runtime: Any) -> None:
        self.margin = margin
        super().__init__(model_dir, **runtime)

    def _read_card(self, card: dict[str, Any]) -> None:
        try:
            self.input_name = str(card["input"]["name"])
            self.size = int(card["input"]["size"][0])
            self.output_name = str(card["output"]["name"])
        except (KeyError, IndexError, TypeError, ValueError) as exc:
            raise StoreError(f"pose card lacks input name/size or output name: {exc}") from exc
        if tuple(card.get("keypoints", KEYPOINTS)) != KEYPOINTS:
            raise StoreError("pose card's keypoints are not the 17 COCO keypoints in COCO order")

    def _bind(self, session: ModelSession) -> None:
        self._require("input", self.input_name, session.input_names)
        self._require("output", self.output_name, session.output_names)

    def keypoints(self, image: np.ndarray, box: Box) -> np.ndarray:
        """The person in `box` (original pixels): [17, 3] float32 rows of (x, y, score), COCO order."""
        x0, y0, side = person_square(box, self.margin)
        crop = cut_square(image, x0, y0, side, self.size)
        out = self._session.run({self.input_name: crop[None].astype(np.int32)})[0].reshape(-1, 3)[: len(KEYPOINTS)]
        points = np.empty((len(KEYPOINTS), 3), dtype=np.float32)
        points[:, 0] = x0 + out[:, 1] * side
        points[:, 1] = y0 + out[:, 0] * side
        points[:, 2] = out[:, 2]
        return points
