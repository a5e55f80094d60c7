"""MultiPoseEstimator: every person in a photo (up to 6) with a box and 17 COCO keypoints, in one pass of
MoveNet MultiPose Lightning.

The whole photo goes in, its longer side scaled to the card's `long_side` and the shorter padded with black
up to a multiple of 32 (the model's stride), so people keep their proportions; the normalised answers map
back through that one scale.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import cv2
import numpy as np

from detector.pose import KEYPOINTS
from detector.types import Box
from imgcore.errors import StoreError
from imgcore.onnx_model import OnnxModel
from imgcore.runtime import ModelSession, RunCancel

STRIDE = 32
# Per person row: 17 x (y, x, score), then the box (ymin, xmin, ymax, xmax) and the person's score.
BOX_AT, SCORE_AT = 3 * len(KEYPOINTS), 3 * len(KEYPOINTS) + 4


@dataclass(frozen=True)
class PosedPerson:
    """One person the pose model found: box and keypoints ([17, 3]: x, y, score) in original pixels."""

    box: Box
    points: np.ndarray
    score: float


def padded_input(image: np.ndarray, long_side: int) -> tuple[np.ndarray, float]:
    """(1 x H x W x 3 int32 tensor, scale): the photo scaled so its longer side is `long_side`, padded with
    black at the right and bottom to multiples of STRIDE."""
    height, width = image.shape[:2]
    scale = long_side / max(height, width)
    size = (max(1, round(width * scale)), max(1, round(height * scale)))
    resized = cv2.resize(image, size, interpolation=cv2.INTER_AREA)
    padded = np.zeros((-(-size[1] // STRIDE) * STRIDE, -(-size[0] // STRIDE) * STRIDE, 3), dtype=np.int32)
    padded[: size[1], : size[0]] = resized
    return padded[None], scale


class MultiPoseEstimator(OnnxModel):
    """`people(image)` -> the people found with at least `min_person_score`, best first."""

    default_version = "1"

    def __init__(self, model_dir: Any, *, long_side: int | None = None, **runtime: Any) -> None:
        self._long_side = long_side
        super().__init__(model_dir, **runtime)

    def _read_card(self, card: dict[str, Any]) -> None:
        try:
            self.input_name = str(card["input"]["name"])
            self.long_side = int(self._long_side or card["input"]["long_side"])
            self.output_name = str(card["output"]["name"])
            self.min_person_score = float(card["defaults"]["min_person_score"])
        except (KeyError, TypeError, ValueError) as exc:
            raise StoreError(f"multi-pose card lacks input name/long_side, output name or defaults: {exc}") from exc
        if self.long_side < STRIDE or self.long_side % STRIDE:
            raise StoreError(f"multi-pose long_side must be a positive multiple of {STRIDE}, got {self.long_side}")
        if tuple(card.get("keypoints", ())) != KEYPOINTS:
            raise StoreError("multi-pose card's keypoints are not the 17 COCO keypoints in COCO order")

    def _bind(self, session: ModelSession) -> None:
        self._require("input", self.input_name, session.input_names)
        self._require("output", self.output_name, session.output_names)

    def warm_up(self) -> int:
        self.people(np.zeros((self.long_side, self.long_side, 3), dtype=np.uint8))
        return 1

    def people(
        self, image: np.ndarray, cancel: RunCancel | None = None, *, long_side: int | None = None
    ) -> list[PosedPerson]:
        """The people in an HxWx3 uint8 RGB photo, best first, boxes and keypoints in its pixels. A run stopped
        through `cancel` (from another thread) raises imgcore.runtime.CancelledRun. `long_side` runs this one
        call at another input size (padded up to the stride like any): smaller is cheaper, misses small people."""
        side = self.long_side if long_side is None else long_side
        if side < STRIDE:
            raise ValueError(f"multi-pose long_side must be at least {STRIDE}, got {side}")
        tensor, scale = padded_input(image, side)
        feeds = {self.input_name: tensor}
        outputs = self._session.run(feeds) if cancel is None else self._session.run(feeds, cancel)
        rows = outputs[0].reshape(-1, SCORE_AT + 1)
        # Outputs are fractions of the padded tensor: back to tensor pixels, then to the photo's.
        height, width = tensor.shape[1] / scale, tensor.shape[2] / scale
        found = []
        for row in rows[np.argsort(-rows[:, SCORE_AT], kind="stable")]:
            if row[SCORE_AT] < self.min_person_score:
                break
            points = row[:BOX_AT].reshape(-1, 3)[:, [1, 0, 2]].astype(np.float32)
            points[:, 0] *= width
            points[:, 1] *= height
            y1, x1, y2, x2 = (float(v) for v in row[BOX_AT:SCORE_AT])
            box = (
                max(0.0, x1 * width),
                max(0.0, y1 * height),
                min(float(image.shape[1]), x2 * width),
                min(float(image.shape[0]), y2 * height),
            )
            found.append(PosedPerson(box, points, float(row[SCORE_AT])))
        return found
