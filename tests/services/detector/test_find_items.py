"""The detector service's find_items on real models, in process: one foreground analysis per photo."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from typing import Any

import numpy as np

import imgcore.foreground as foreground
from detector import Detector
from detector.multipose import MultiPoseEstimator
from detector.pose import PoseEstimator
from imgcore.image import decode_image
from services.common.settings import DetectorSettings
from services.detector.garments import find_items
from tests.helpers.paths import DATA, REPO


def test_a_photo_with_nothing_detected_is_analysed_for_its_foreground_once(monkeypatch: Any) -> None:
    blurs: list[tuple[int, ...]] = []
    real = foreground._blurred

    def counted(image: np.ndarray) -> tuple[tuple[int, int], np.ndarray]:
        blurs.append(image.shape)
        return real(image)

    monkeypatch.setattr(foreground, "_blurred", counted)
    models = REPO / "models"
    detector = Detector(models / "nanodet-m-int8")
    pose, people = PoseEstimator(models / "movenet-lightning"), MultiPoseEstimator(models / "movenet-multipose")
    settings = DetectorSettings()
    side = ThreadPoolExecutor(max_workers=2)
    try:
        # A product shot the detector finds nothing in (plain background: no wait for the pose pass), and a
        # scene it finds nothing in (the pass's people are kept): each photo's frame and flat-lay check read
        # the same analysis.
        boot = decode_image((REPO / "services" / "static" / "samples" / "shop-ankle-boot.jpg").read_bytes())
        assert detector.detect(boot) == []
        assert find_items(detector, pose, people, boot, settings, side) == []
        assert len(blurs) == 1
        lab = decode_image((DATA / "people" / "lab-c4-f066.jpg").read_bytes())
        found = find_items(detector, pose, people, lab, settings, side)
        assert [d["source"] for d in found if d["label"] == "person"] == ["pose", "pose"]
        assert len(blurs) == 2
    finally:
        side.shutdown(wait=True)
