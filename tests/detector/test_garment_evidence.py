"""Garment regions refined by the photo's colours (detector.garment_evidence): shorts end at their hem, a bare
torso has no top, on the hand-labelled photos of tests/data/people and on drawn legs."""

from __future__ import annotations

import json

import numpy as np
import pytest

from detector import Detector
from detector.garment_evidence import bare_torso, bottom_end, skin_share
from detector.garments import find_garments
from detector.nms import box_iou
from detector.pose import PoseEstimator
from imgcore.foreground import plain_frame
from imgcore.image import decode_image
from tests.helpers.paths import DATA, REPO

PEOPLE = DATA / "people"
LABELS = json.loads((PEOPLE / "labels.json").read_text())
SKIN = (224, 172, 140)  # a light skin tone: inside the YCrCb skin band


@pytest.fixture(scope="module")
def pose() -> PoseEstimator:
    return PoseEstimator(REPO / "models" / "movenet-lightning")


def legs(hem: int | None) -> tuple[np.ndarray, np.ndarray]:
    """A 200 x 300 photo of two vertical legs (hips y 60, knees 160, ankles 260), navy down to `hem` (None:
    trousers to the ankles), skin below it; and their keypoints."""
    image = np.full((300, 200, 3), 235, dtype=np.uint8)
    points = np.zeros((17, 3), dtype=np.float32)
    for x, (hip, knee, ankle) in zip((80, 120), ((11, 13, 15), (12, 14, 16)), strict=True):
        image[55:265, x - 12 : x + 12] = SKIN
        image[55 : (hem or 265), x - 12 : x + 12] = (30, 40, 90)
        points[[hip, knee, ankle]] = [(x, 60, 0.9), (x, 160, 0.9), (x, 260, 0.9)]
    return image, points


def test_shorts_end_at_their_hem_and_trousers_run_on() -> None:
    image, points = legs(140)
    ends = bottom_end(image, points, 0.3)
    assert ends is not None and len(ends) == 2
    assert all(abs(y - 140) <= 12 for _, y in ends), ends
    trousers, points = legs(None)
    assert bottom_end(trousers, points, 0.3) == []
    points[[13, 14], 2] = 0.0  # no knee seen: nothing to say
    assert bottom_end(trousers, points, 0.3) is None


def test_a_bare_torso_is_told_from_a_shirt() -> None:
    image = np.full((200, 200, 3), SKIN, dtype=np.uint8)
    shoulders = np.array([[60, 40, 0.9], [140, 40, 0.9]], dtype=np.float32)
    assert skin_share(image, (60, 40, 140, 150)) == 1.0 and bare_torso(image, shoulders, 150.0)
    image[30:160, 50:150] = (200, 30, 30)  # a red shirt
    assert skin_share(image, (60, 40, 140, 150)) == 0.0 and not bare_torso(image, shoulders, 150.0)


def test_the_shirtless_man_in_shorts_gets_his_shorts_and_no_top(pose: PoseEstimator, detector: Detector) -> None:
    entry = next(p for p in LABELS["photos"] if p["file"] == "lab-c2-f000.jpg")
    image = decode_image((PEOPLE / entry["file"]).read_bytes())
    man = next(p for p in entry["people"] if "top" not in p["garments"])  # bare-chested, in shorts
    people = detector.detect(image)
    mine = int(np.argmax([box_iou(np.array(man["box"], float), np.array([d.box], float))[0] for d in people]))
    found = {g.label: g.box for i, g in find_garments(image, people, pose, max_people=6, min_score=0.3) if i == mine}
    assert "top" not in found
    shorts = np.array(man["garments"]["bottom"], dtype=np.float64)
    assert box_iou(shorts, np.array([found["bottom"]], dtype=np.float64))[0] >= 0.5, found["bottom"]
    clothed = find_garments(image, people, pose, max_people=6, min_score=0.3)
    assert any(g.label == "top" and i != mine for i, g in clothed)  # the clothed people keep their tops


def test_a_product_shot_has_a_plain_frame_and_a_scene_has_not() -> None:
    boot = decode_image((REPO / "services" / "static" / "samples" / "shop-ankle-boot.jpg").read_bytes())
    park = decode_image((PEOPLE / "park-f000.jpg").read_bytes())
    assert plain_frame(boot) and not plain_frame(park)
