"""The "yolo" decoder end to end: tiny ONNX graphs with known outputs, a card, and Detector.

Each graph returns a constant (plus 0 * the input, so the input is really used), which makes
every decoded box, label and score known exactly.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from detector import Detection, Detector
from detector.decoders.yolo import YoloDecoder
from imgcore.card import sha256_file
from imgcore.errors import StoreError

LABELS = ["cat", "handbag"]
SIZE = 32  # model input 32x32


def write_model(folder: Path, raw: np.ndarray, card_output: dict[str, Any], resize: str = "letterbox") -> Path:
    """Save a graph `out = raw + 0 * sum(images)` and a card for it; return the folder."""
    const = numpy_helper.from_array(raw.astype(np.float32), "raw")
    zero = numpy_helper.from_array(np.zeros((), dtype=np.float32), "zero")
    nodes = [
        helper.make_node("ReduceSum", ["images"], ["total"], keepdims=0),
        helper.make_node("Mul", ["total", "zero"], ["nothing"]),
        helper.make_node("Add", ["raw", "nothing"], ["output0"]),
    ]
    graph = helper.make_graph(
        nodes,
        "fake_yolo",
        [helper.make_tensor_value_info("images", TensorProto.FLOAT, [1, 3, SIZE, SIZE])],
        [helper.make_tensor_value_info("output0", TensorProto.FLOAT, list(raw.shape))],
        initializer=[const, zero],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    folder.mkdir(parents=True, exist_ok=True)
    onnx.save(model, str(folder / "model.onnx"))
    card = {
        "name": "fake-yolo",
        "version": "0",
        "task": "detection",
        "sha256": sha256_file(folder / "model.onnx"),
        "input": {
            "name": "images",
            "size": [SIZE, SIZE],
            "layout": "NCHW",
            "color": "RGB",
            "scaling": "0..1",
            "resize": resize,
            "interpolation": "linear",
            "pad_value": 114,
        },
        "output": {"decoder": "yolo", **card_output},
        "labels": LABELS,
        "category_map": {"cat": None, "handbag": "Bag"},
        "defaults": {"score_threshold": 0.25, "iou_threshold": 0.5, "max_detections": 20},
    }
    (folder / "card.json").write_text(json.dumps(card))
    return folder


# Rows in model-input pixels (cx, cy, w, h). A 64x32 photo is letterboxed into 32x32 at scale 0.5,
# centred with 8 rows of padding on top, so model (x, y) -> original ((x - 0) / 0.5, (y - 8) / 0.5).
BOX_A = [16.0, 16.0, 8.0, 8.0]  # model xyxy (12, 12, 20, 20) -> original (24, 8, 40, 24)
BOX_A_SHIFTED = [16.5, 16.5, 8.0, 8.0]  # IoU with A ~0.78: suppressed when of the same class
BOX_B = [4.0, 12.0, 4.0, 4.0]  # model (2, 10, 6, 14) -> original (4, 4, 12, 12)
BOX_IN_PADDING = [20.0, 3.0, 4.0, 2.0]  # model y 2..4: entirely in the top padding
PHOTO = np.zeros((32, 64, 3), dtype=np.uint8)

EXPECTED = [
    Detection("cat", None, pytest.approx(0.9), (24.0, 8.0, 40.0, 24.0)),
    Detection("handbag", "Bag", pytest.approx(0.7), (24.0, 8.0, 40.0, 24.0)),  # other class: kept
    Detection("cat", None, pytest.approx(0.4), (4.0, 4.0, 12.0, 12.0)),
]


def v8_rows() -> np.ndarray:
    """(N, 4 + C) rows; the last is below threshold and the one before lies in the padding."""
    return np.array(
        [
            BOX_A + [0.9, 0.1],
            BOX_A_SHIFTED + [0.8, 0.05],
            BOX_A + [0.1, 0.7],
            BOX_B + [0.4, 0.2],
            BOX_IN_PADDING + [0.95, 0.0],
            BOX_B + [0.2, 0.1],
        ],
        dtype=np.float32,
    )


def v5_rows() -> np.ndarray:
    """(N, 5 + C): objectness * class score gives the same scores as v8_rows."""
    rows = v8_rows()
    objectness = np.array([[0.9], [0.8], [0.7], [0.5], [0.95], [0.2]], dtype=np.float32)
    class_scores = rows[:, 4:] / objectness
    return np.concatenate([rows[:, :4], objectness, class_scores], axis=1)


def detections(folder: Path) -> list[Detection]:
    return Detector(folder).detect(PHOTO)


def test_v8_channels_first_layout_decodes_exactly(tmp_path: Path) -> None:
    raw = v8_rows().T[None]  # (1, 6, 6) fits both v8 layouts: the card names the format
    assert detections(write_model(tmp_path, raw, {"format": "v8"})) == EXPECTED


def test_v8_layout_is_recognised_from_its_shape(tmp_path: Path) -> None:
    raw = np.concatenate([v8_rows(), v8_rows()[-2:]])  # N=8: neither 4 + C nor 5 + C, so unambiguous
    assert detections(write_model(tmp_path, raw.T[None], {})) == EXPECTED


def test_v8_transposed_layout_is_recognised_from_its_shape(tmp_path: Path) -> None:
    raw = np.concatenate([v8_rows(), v8_rows()[-1:]])[None]  # (1, 7, 6)
    assert detections(write_model(tmp_path, raw, {})) == EXPECTED


def test_v5_layout_multiplies_objectness_and_class_score(tmp_path: Path) -> None:
    raw = v5_rows()[None]  # (1, 6, 7)
    assert detections(write_model(tmp_path, raw, {})) == EXPECTED
    assert detections(write_model(tmp_path / "named", raw, {"format": "v5"})) == EXPECTED


def test_normalized_boxes_are_scaled_by_the_input_size(tmp_path: Path) -> None:
    rows = v8_rows()
    rows[:, :4] /= SIZE
    raw = np.concatenate([rows, rows[-1:]])[None]
    assert detections(write_model(tmp_path, raw, {"normalized": True})) == EXPECTED


def test_stretch_resize_maps_each_axis_separately(tmp_path: Path) -> None:
    raw = np.array([BOX_B + [0.4, 0.2]] * 2, dtype=np.float32)[None]  # (1, 2, 6): v8 rows
    found = detections(write_model(tmp_path, raw, {}, resize="stretch"))
    assert found == [Detection("cat", None, pytest.approx(0.4), (4.0, 10.0, 12.0, 14.0))]  # x / 0.5, y / 1


def test_output_shape_that_fits_no_layout_is_an_error() -> None:
    decoder = YoloDecoder("output0", num_classes=2, input_hw=(SIZE, SIZE))
    with pytest.raises(StoreError, match="fits neither"):
        decoder({"output0": np.zeros((1, 9, 9), dtype=np.float32)}, 0.25)


def test_unknown_format_in_card_is_refused(tmp_path: Path) -> None:
    with pytest.raises(StoreError, match="v9"):
        detections(write_model(tmp_path, v8_rows()[None], {"format": "v9"}))
