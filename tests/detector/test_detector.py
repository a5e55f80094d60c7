"""Default detector (NanoDet-m) on real photos, plus exact checks of preprocessing, decoding and NMS."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from detector import Detection, Detector
from detector.nms import batched_nms, nms
from detector.transforms import InputSpec, model_size, resize_for_model, to_tensor
from imgcore.card import sha256_file
from imgcore.errors import ChecksumMismatch, InvalidInput, StoreError
from imgcore.image import decode_image
from tests.helpers.paths import DATA, REPO

MODEL_DIR = REPO / "models" / "nanodet-m"
PHOTOS = DATA / "photos"
# Measured by hand on a 2x zoom of person.jpg: hat top to boot soles, jacket edge to glove.
PERSON_BOX = (191.0, 100.0, 275.0, 374.0)


def iou(a: tuple[float, ...], b: tuple[float, ...]) -> float:
    ix = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    iy = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = ix * iy
    return inter / ((a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter)


@pytest.fixture(scope="module")
def detector() -> Detector:
    return Detector(MODEL_DIR)


def photo(name: str) -> np.ndarray:
    return decode_image((PHOTOS / name).read_bytes())


# --- real photos ---------------------------------------------------------------------------------


def test_person_photo_finds_the_person_with_a_tight_box(detector: Detector) -> None:
    people = [d for d in detector.detect(photo("person.jpg")) if d.label == "person"]
    assert people, "no person found"
    assert iou(people[0].box, PERSON_BOX) > 0.8
    assert people[0].category is None  # a person is not a catalog category: search everything


def test_dog_photo_finds_dog_and_bicycle(detector: Detector) -> None:
    labels = {d.label for d in detector.detect(photo("dog.jpg"))}
    assert {"dog", "bicycle"} <= labels


def test_horses_photo_finds_at_least_three_horses(detector: Detector) -> None:
    horses = [d for d in detector.detect(photo("horses.jpg")) if d.label == "horse"]
    assert len(horses) >= 3


def test_detections_are_sorted_by_score_and_inside_the_image(detector: Detector) -> None:
    image = photo("horses.jpg")
    h, w = image.shape[:2]
    found = detector.detect(image)
    assert [d.score for d in found] == sorted((d.score for d in found), reverse=True)
    for d in found:
        x1, y1, x2, y2 = d.box
        assert 0 <= x1 < x2 <= w and 0 <= y1 < y2 <= h
        assert d.score >= detector.score_threshold


def test_threshold_override_per_call_and_max_detections(detector: Detector) -> None:
    image = photo("horses.jpg")
    assert len(detector.detect(image, score_threshold=0.2)) > len(detector.detect(image))
    capped = Detector(MODEL_DIR, score_threshold=0.1, max_detections=2).detect(image)
    assert len(capped) == 2


# --- card and model file -----------------------------------------------------------------------


def test_card_sha256_matches_the_model_file(detector: Detector) -> None:
    assert detector.sha256 == sha256_file(MODEL_DIR / "model.onnx")
    assert detector.name == "nanodet-m" and detector.version


def test_card_maps_bags_to_the_bag_category_and_the_rest_to_none(detector: Detector) -> None:
    assert len(detector.labels) == 80 and detector.labels[0] == "person"
    assert {k for k, v in detector.category_map.items() if v is not None} == {"handbag", "backpack", "suitcase"}
    assert set(detector.category_map.values()) == {None, "Bag"}


def test_model_file_not_matching_its_card_is_refused(tmp_path: Path) -> None:
    shutil.copy(MODEL_DIR / "card.json", tmp_path / "card.json")
    (tmp_path / "model.onnx").write_bytes(b"not the model")
    with pytest.raises(ChecksumMismatch):
        Detector(tmp_path)


def test_unknown_decoder_in_card_is_refused_at_load(tmp_path: Path) -> None:
    card = json.loads((MODEL_DIR / "card.json").read_text())
    card["output"]["decoder"] = "detr"
    (tmp_path / "card.json").write_text(json.dumps(card))
    with pytest.raises(StoreError, match="detr"):
        Detector(tmp_path, session=FakeSession([]))


def test_non_rgb_input_is_invalid(detector: Detector) -> None:
    with pytest.raises(InvalidInput):
        detector.detect(np.zeros((10, 10), dtype=np.uint8))
    with pytest.raises(InvalidInput):
        detector.detect(np.zeros((10, 10, 3), dtype=np.float32))


# --- preprocessing and box mapping, exact --------------------------------------------------------


def spec(resize: str, **kw: object) -> InputSpec:
    card = {"size": [8, 8], "resize": resize, "interpolation": "nearest", "pad_value": 0, **kw}
    return InputSpec.from_card(card)


def test_stretch_maps_boxes_back_per_axis() -> None:
    image = np.arange(2 * 4 * 3, dtype=np.uint8).reshape(2, 4, 3)  # h=2, w=4
    out, geo = resize_for_model(image, spec("stretch"))
    assert out.shape == (8, 8, 3)
    assert (geo.scale_x, geo.scale_y, geo.pad_x, geo.pad_y) == (2.0, 4.0, 0.0, 0.0)
    np.testing.assert_array_equal(out[0, 0], image[0, 0])
    np.testing.assert_array_equal(out[7, 7], image[1, 3])
    back = geo.to_original(np.array([[2.0, 4.0, 6.0, 8.0], [-3.0, -1.0, 99.0, 99.0]]))
    np.testing.assert_array_equal(back, [[1.0, 1.0, 3.0, 2.0], [0.0, 0.0, 4.0, 2.0]])  # second one clipped


def test_letterbox_centres_the_image_and_maps_boxes_back() -> None:
    image = np.full((2, 4, 3), 200, dtype=np.uint8)  # wide: scaled x2 to 8x4, padded 2 rows top and bottom
    out, geo = resize_for_model(image, spec("letterbox"))
    assert (geo.scale_x, geo.scale_y, geo.pad_x, geo.pad_y) == (2.0, 2.0, 0.0, 2.0)
    assert (out[:2] == 0).all() and (out[6:] == 0).all() and (out[2:6] == 200).all()
    back = geo.to_original(np.array([[0.0, 2.0, 8.0, 6.0], [2.0, 0.0, 4.0, 3.0]]))
    np.testing.assert_array_equal(back, [[0.0, 0.0, 4.0, 2.0], [1.0, 0.0, 2.0, 0.5]])


def test_to_tensor_scaling_layout_and_colour_order() -> None:
    img = np.zeros((8, 8, 3), dtype=np.uint8)
    img[..., 0] = 255  # pure red
    nchw = to_tensor(img, spec("stretch", scaling="0..1"))
    assert nchw.shape == (1, 3, 8, 8) and nchw.dtype == np.float32
    assert nchw[0, 0].min() == 1.0 and nchw[0, 1:].max() == 0.0
    bgr = to_tensor(img, spec("stretch", scaling="-1..1", color="BGR", layout="NHWC"))
    assert bgr.shape == (1, 8, 8, 3)
    np.testing.assert_array_equal(bgr[0, 0, 0], [-1.0, -1.0, 1.0])


def test_detector_preprocess_gives_the_card_input(detector: Detector) -> None:
    tensor, geo = detector.preprocess(np.full((100, 50, 3), 255, dtype=np.uint8))
    assert tensor.shape == (1, 3, 416, 416) and tensor.dtype == np.float32
    assert tensor.min() == 1.0 and tensor.max() == 1.0
    assert (geo.scale_x, geo.scale_y) == (416 / 50, 416 / 100)


# --- NanoDet decoding with a fake session, exact -------------------------------------------------


class FakeSession:
    """Stands in for onnxruntime: returns fixed outputs under the card's output names."""

    input_names = ["input_1:0"]
    output_names = ["Identity:0", "Identity_1:0", "Identity_2:0", "Identity_3:0", "Identity_4:0", "Identity_5:0"]

    def __init__(self, outputs: list[np.ndarray]) -> None:
        self.outputs = outputs

    def run(self, feeds: dict[str, np.ndarray]) -> list[np.ndarray]:
        assert feeds["input_1:0"].shape == (1, 3, 416, 416)
        return self.outputs


def nanodet_outputs() -> list[np.ndarray]:
    cells = [52 * 52, 26 * 26, 13 * 13]
    scores = [np.zeros((1, n, 80), dtype=np.float32) for n in cells]
    boxes = [np.zeros((1, n, 44), dtype=np.float32) for n in cells]
    # stride 32, cell row 2 col 3: centre ((3 + 0.5) * 32, (2 + 0.5) * 32) = (112, 80)
    cell = 2 * 13 + 3
    scores[2][0, cell, 26] = 0.9  # handbag
    logits = np.full((4, 11), -100.0, dtype=np.float32)
    for side, bin_ in enumerate([2, 1, 3, 2]):  # left 64, top 32, right 96, bottom 64 pixels
        logits[side, bin_] = 100.0
    boxes[2][0, cell] = logits.ravel()
    # the same object seen weaker at stride 16 (cell row 5 col 7, centre (120, 88)): NMS must drop it
    scores[1][0, 5 * 26 + 7, 26] = 0.5
    boxes[1][0, 5 * 26 + 7] = np.tile(np.eye(11, dtype=np.float32)[4] * 200 - 100, 4)  # 64 px each side
    return scores + boxes


def test_nanodet_decoding_is_exact_and_maps_to_original_pixels() -> None:
    det = Detector(MODEL_DIR, session=FakeSession(nanodet_outputs()))
    found = det.detect(np.zeros((208, 832, 3), dtype=np.uint8))  # stretch: x / 0.5, y / 2
    assert found == [Detection("handbag", "Bag", pytest.approx(0.9), (96.0, 24.0, 416.0, 72.0))]


# --- NMS -----------------------------------------------------------------------------------------


def test_nms_removes_overlaps_and_keeps_other_classes() -> None:
    boxes = np.array([[0, 0, 10, 10], [1, 1, 11, 11], [0, 0, 10, 10], [20, 20, 30, 30]], dtype=np.float64)
    scores = np.array([0.9, 0.8, 0.7, 0.6])
    classes = np.array([0, 0, 1, 0])
    assert nms(boxes, scores, 0.5).tolist() == [0, 3]
    assert batched_nms(boxes, scores, classes, 0.5).tolist() == [0, 2, 3]
    assert batched_nms(boxes, scores, classes, 0.5, max_keep=2).tolist() == [0, 2]
    assert batched_nms(boxes[:0], scores[:0], classes[:0], 0.5).tolist() == []


# --- per-photo input size (input.aspect_power) -------------------------------------------------------


def per_photo(power: float) -> InputSpec:
    return InputSpec.from_card({"size": [416, 416], "resize": "stretch", "aspect_power": power, "stride": 32})


def test_model_size_keeps_the_long_side_and_scales_the_short_side_by_the_aspect_to_a_power() -> None:
    assert model_size(spec("stretch"), 300, 900) == (8, 8)  # no power: the card's size for every photo
    assert model_size(per_photo(0.0), 300, 900) == (416, 416)  # power 0: the square stretch
    assert model_size(per_photo(1.0), 300, 900) == (160, 416)  # 416 / 3 = 138.7, up to the stride
    assert model_size(per_photo(1.0), 900, 300) == (416, 160)  # portrait: the same, turned
    assert model_size(per_photo(0.75), 497, 884) == (288, 416)  # 416 * (497 / 884) ** 0.75 = 270.1
    assert model_size(per_photo(0.75), 600, 600) == (416, 416)
    assert model_size(per_photo(1.0), 5, 4000) == (32, 416)  # never under one stride
    rng = np.random.default_rng(0)
    shapes = set(per_photo(0.75).shapes())
    assert len(shapes) == 25 and (416, 416) in shapes and (32, 416) in shapes and (416, 32) in shapes
    for h, w in rng.integers(1, 3000, size=(300, 2)):
        size_h, size_w = model_size(per_photo(0.75), int(h), int(w))
        assert (size_h, size_w) in shapes
        assert max(size_h, size_w) == 416
        assert size_h == size_w or (size_h > size_w) == (h > w)  # turned with the photo
        # the short side is never squeezed more than the photo's own proportions would
        assert min(size_h, size_w) / 416 >= min(h, w) / max(h, w) - 1e-9


def test_a_per_photo_input_maps_boxes_back_to_the_photo() -> None:
    image = np.zeros((100, 400, 3), dtype=np.uint8)
    out, geo = resize_for_model(image, per_photo(1.0))
    assert out.shape == (128, 416, 3) and geo.input_hw == (128, 416)
    back = geo.to_original(np.array([[0.0, 0.0, 416.0, 128.0], [104.0, 32.0, 208.0, 64.0]]))
    np.testing.assert_allclose(back, [[0.0, 0.0, 400.0, 100.0], [100.0, 25.0, 200.0, 50.0]])


@pytest.mark.parametrize(
    "card",
    [
        {"size": [416, 416], "resize": "letterbox", "aspect_power": 0.5},
        {"size": [416, 320], "aspect_power": 0.5},
        {"size": [416, 416], "aspect_power": 1.5},
        {"size": [416, 416], "aspect_power": 0.5, "stride": 30},
    ],
)
def test_a_per_photo_input_the_card_cannot_mean_fails_at_load(card: dict) -> None:
    with pytest.raises(StoreError):
        InputSpec.from_card(card)
