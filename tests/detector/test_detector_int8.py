"""nanodet-m-int8 against the fp32 detector it was quantised from, on the real test photos."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import numpy as np
import onnx
import pytest

from detector import Detection, Detector
from detector.compare import agreement, correct
from imgcore.card import sha256_file
from imgcore.image import decode_image
from tests.helpers.paths import DATA, REPO
from tests.helpers.square import square_int8

INT8_DIR = REPO / "models" / "nanodet-m-int8"
FP32_DIR = REPO / "models" / "nanodet-m"
PHOTOS = sorted((DATA / "photos").glob("*.jpg"))


@pytest.fixture(scope="module")
def card() -> dict:
    return json.loads((INT8_DIR / "card.json").read_text())


def detections_of(int8: Detector) -> dict[str, tuple[list[Detection], list[Detection]]]:
    fp32 = Detector(FP32_DIR)
    out = {}
    for path in PHOTOS:
        image = decode_image(path.read_bytes())
        out[path.name] = (fp32.detect(image), int8.detect(image))
    return out


@pytest.fixture(scope="module")
def detections() -> dict[str, tuple[list[Detection], list[Detection]]]:
    """fp32 at 416 x 416 and int8 as served: each photo at its own input size."""
    return detections_of(Detector(INT8_DIR))


@pytest.fixture(scope="module")
def square_detections(tmp_path_factory: pytest.TempPathFactory) -> dict[str, tuple[list[Detection], list[Detection]]]:
    """fp32 and int8 both at 416 x 416: what quantisation alone changed."""
    return detections_of(Detector(square_int8(tmp_path_factory.mktemp("square"))))


def test_card_pins_the_int8_file_and_keeps_the_fp32_contract(card: dict) -> None:
    fp32 = json.loads((FP32_DIR / "card.json").read_text())
    assert card["sha256"] == sha256_file(INT8_DIR / "model.onnx") != fp32["sha256"]
    assert card["quantized_from"] == {"name": fp32["name"], "version": fp32["version"], "sha256": fp32["sha256"]}
    for key in ("output", "labels", "category_map"):
        assert card[key] == fp32[key], key
    # The same input but for its size, which is per photo (detector.transforms.model_size): free in the graph.
    per_photo = {"shape": [1, 3, "height", "width"], "aspect_power": 0.75, "stride": 32}
    assert card["input"] == {**fp32["input"], **per_photo}
    dims = onnx.load(str(INT8_DIR / "model.onnx")).graph.input[0].type.tensor_type.shape.dim
    assert [d.dim_param or d.dim_value for d in dims] == [1, 3, "height", "width"]
    # Issue 31: the same NMS and cap; a lower score threshold makes up for int8's score noise (its README).
    assert {**card["defaults"], "score_threshold": None} == {**fp32["defaults"], "score_threshold": None}
    assert 0.3 <= card["defaults"]["score_threshold"] < fp32["defaults"]["score_threshold"]
    assert card["quantization"]["format"] == "QDQ" and card["quantization"]["per_channel"] is True


def test_the_backbone_runs_int8_convolutions() -> None:
    graph = onnx.load(str(INT8_DIR / "model.onnx")).graph
    int8_weights = [i for i in graph.initializer if i.data_type == onnx.TensorProto.INT8 and len(i.dims) == 4]
    convs = Counter(node.op_type for node in graph.node)["Conv"]
    # All but the three head convolutions (kept float so scores are not clipped; see the card).
    assert len(int8_weights) == convs - 3 > 0
    # The stem's -inf Pad is folded into its MaxPool, which therefore runs on int8 values too.
    ops = Counter(node.op_type for node in graph.node)
    assert ops["Pad"] == 0 and ops["MaxPool"] == 1


def test_folding_the_pad_into_the_pool_changes_no_output(tmp_path: Path) -> None:
    import sys

    from imgcore.runtime import OrtSession

    sys.path.insert(0, str(REPO / "models"))
    from int8_fixes import fold_pad_into_pool

    assert fold_pad_into_pool(FP32_DIR / "model.onnx", tmp_path / "folded.onnx") == 1
    fp32 = Detector(FP32_DIR)
    before, after = OrtSession(FP32_DIR / "model.onnx"), OrtSession(tmp_path / "folded.onnx")
    for path in PHOTOS:
        feed = {before.input_names[0]: fp32.preprocess(decode_image(path.read_bytes()))[0]}
        for a, b in zip(before.run(feed), after.run(feed), strict=True):
            np.testing.assert_array_equal(a, b)


def test_no_answer_of_fp32_is_lost_on_the_labelled_photos() -> None:
    """Issue 31's quality line: recall (IoU >= 0.5) of people and objects not lower than fp32's, and at least
    95 % of the objects fp32 finds correctly found by int8 at the same place."""
    people = json.loads((DATA / "people" / "labels.json").read_text())["photos"]
    truth = {
        (DATA / "people" / p["file"]).resolve(): ([("person", q["box"]) for q in p["people"]], p["ignore"])
        for p in people
    }
    for key, objects in json.loads((DATA / "objects.json").read_text())["photos"].items():
        labels, ignore = truth.get((DATA / key).resolve(), ([], []))
        truth[(DATA / key).resolve()] = (labels + [(label, box) for label, box in objects], ignore)
    fp32, int8 = Detector(FP32_DIR), Detector(INT8_DIR)
    found = {"fp32": 0, "int8": 0}
    agreed = 0
    for path, (labels, ignore) in truth.items():
        image = decode_image(path.read_bytes())
        right = {name: correct(model.detect(image), labels, ignore) for name, model in (("fp32", fp32), ("int8", int8))}
        found = {name: found[name] + len(right[name]) for name in found}
        agreed += agreement(right["fp32"], int8.detect(image)).matched
    assert found["fp32"] >= 20  # the labels are read and fp32 finds people and objects in them
    assert found["int8"] >= found["fp32"]
    assert agreed >= 0.95 * found["fp32"]


def test_every_clear_fp32_object_is_found_by_int8_at_the_same_place(
    square_detections: dict[str, tuple[list[Detection], list[Detection]]],
) -> None:
    """Quantisation alone (both at 416 x 416) moves no clear object: boxes and scores stay put."""
    for name, (fp32, int8) in square_detections.items():
        clear = [d for d in fp32 if d.score >= 0.45]  # well above the 0.35 threshold
        agree = agreement(clear, int8)
        assert agree.only_reference == [], (name, agree.only_reference)
        assert all(iou >= 0.8 for _, _, iou in agree.pairs), name
        assert all(abs(a.score - b.score) <= 0.08 for a, b, _ in agree.pairs), name


def test_the_card_table_is_what_the_models_give_now(
    card: dict,
    detections: dict[str, tuple[list[Detection], list[Detection]]],
    square_detections: dict[str, tuple[list[Detection], list[Detection]]],
) -> None:
    for name, (fp32, int8) in detections.items():
        row = card["quality"]["photos"][f"tests/data/photos/{name}"]
        for recorded, live in ((row["fp32"], fp32), (row["int8"], int8)):
            assert [d["label"] for d in recorded] == [d.label for d in live], name
            assert all(abs(d["score"] - x.score) < 0.01 for d, x in zip(recorded, live, strict=True)), name
    matched = sum(agreement(fp32, int8).matched for fp32, int8 in square_detections.values())
    assert matched >= 0.8 * sum(len(fp32) for fp32, _ in square_detections.values())
    assert 0.8 <= card["quality_square_input"]["agreement"] <= 1.0


def test_a_detector_service_loads_it_by_uri_and_pin(tmp_path: Path) -> None:
    from services.common.loading import load_model
    from services.common.settings import DetectorSettings

    sha = json.loads((INT8_DIR / "card.json").read_text())["sha256"]
    settings = DetectorSettings(model_uri=INT8_DIR.as_uri(), model_sha256=sha, model_cache_dir=tmp_path)
    detector = load_model(settings, Detector)
    assert detector.info() == {"name": "nanodet-m-int8", "version": "2.1.0", "sha256": sha}


def test_the_int8_graph_runs_at_every_per_photo_input_size() -> None:
    """int8_fixes.free_spatial_dims: each input shape the card allows gives the grid cells of that shape."""
    detector = Detector(INT8_DIR)
    strides = detector._card["output"]["strides"]
    shapes = detector._input.shapes()
    assert len(shapes) == 25
    for height, width in ((416, 416), (288, 416), (416, 160), (32, 416)):
        assert (height, width) in shapes
        outputs = detector.run(np.zeros((1, 3, height, width), dtype=np.float32))
        cells = sorted({o.shape[1] for o in outputs})
        assert cells == sorted({-(-height // s) * -(-width // s) for s in strides}), (height, width)
