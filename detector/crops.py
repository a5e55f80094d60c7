"""The detector's people's single-person keypoints, started as soon as the detector has answered.

The multi-pose pass runs beside the detector and takes longer; waiting for it before cropping the people the
detector already found puts their crops after it on the photo's critical path. Started at once on the side
pool, they run while the pass is still going; only the people the pass alone found are cropped after it.
"""

from __future__ import annotations

from collections.abc import Sequence
from concurrent.futures import Executor, Future

import numpy as np

from detector.garments import KeypointModel, garment_people
from detector.types import Box, Detection


class EarlyCrops:
    """`start(detections)` submits a crop per person find_garments will take (garment_people);
    `keypoints(people)` waits for them: {index: [17, 3] keypoints} for each person whose box in `people` (the
    fused list, which begins with the detections) is still the one cropped (fusion can widen a box)."""

    def __init__(self, pose: KeypointModel, image: np.ndarray, max_people: int, executor: Executor) -> None:
        self._pose, self._image, self._max, self._executor = pose, image, max_people, executor
        self._futures: dict[int, tuple[Box, Future[np.ndarray]]] = {}

    def start(self, detections: Sequence[Detection]) -> None:
        for i in garment_people(detections, self._max):
            box = detections[i].box
            self._futures[i] = (box, self._executor.submit(self._pose.keypoints, self._image, box))

    def keypoints(self, people: Sequence[Detection]) -> dict[int, np.ndarray]:
        """Once per photo: a crop of a box fusion widened is cancelled if it has not started (find_garments crops
        the wider box again), so it does not take a core beside that crop."""
        kept = {}
        for i, (box, future) in self._futures.items():
            if people[i].box == box:
                kept[i] = future.result()
            else:
                future.cancel()
        return kept

    def cancel(self) -> None:
        for _, future in self._futures.values():
            future.cancel()
