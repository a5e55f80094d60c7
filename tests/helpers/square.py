"""The default detector (nanodet-m-int8) with every photo at 416 x 416, as before its per-photo input: the
same file, its card's input replaced by the fp32 card's."""

from __future__ import annotations

import json
from pathlib import Path

from tests.helpers.paths import REPO

INT8_DIR = REPO / "models" / "nanodet-m-int8"
FP32_DIR = REPO / "models" / "nanodet-m"


def square_int8(folder: Path) -> Path:
    """A model folder in `folder` (which it fills) for detector.Detector."""
    (folder / "model.onnx").symlink_to(INT8_DIR / "model.onnx")
    card = json.loads((INT8_DIR / "card.json").read_text())
    card["input"] = json.loads((FP32_DIR / "card.json").read_text())["input"]
    (folder / "card.json").write_text(json.dumps(card))
    return folder
