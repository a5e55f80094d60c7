"""Static int8 quantisation of a served fp32 model folder, shared by the `*-int8/quantize.py` scripts.

One recipe for every int8 model here: onnxruntime's pre-processing (shape inference, constant folding),
then `quantize_static` in QDQ format, per-channel int8 weights, uint8 activations (the U8S8 kernels
onnxruntime runs fastest on x86), MinMax calibration on the images the calling script makes. The card
is the fp32 card with a new name, version and sha256, and a `quantization` section that says how.
Build-time only: needs the `onnx` package (the `dev` extra), never a serving dependency.
"""

from __future__ import annotations

import hashlib
import json
import statistics
import tempfile
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime as ort
from onnxruntime.quantization import CalibrationDataReader, CalibrationMethod, QuantFormat, QuantType, quantize_static
from onnxruntime.quantization.shape_inference import quant_pre_process

from imgcore.card import CARD_NAME, MODEL_NAME, sha256_file

RECIPE = {
    "tool": f"onnxruntime.quantization.quantize_static (onnxruntime {ort.__version__})",
    "format": "QDQ",
    "per_channel": True,
    "weights": "int8 (symmetric, per output channel)",
    "activations": "uint8 (asymmetric, per tensor)",
    "calibration_method": "MinMax",
    "pre_process": "onnxruntime.quantization.shape_inference.quant_pre_process (shape inference + folding)",
}


class _Batches(CalibrationDataReader):
    """Feeds the calibration tensors to the calibrator `batch` images at a time."""

    def __init__(self, input_name: str, tensors: np.ndarray, batch: int) -> None:
        self._iter: Iterator[dict[str, np.ndarray]] = (
            {input_name: tensors[i : i + batch]} for i in range(0, len(tensors), batch)
        )

    def get_next(self) -> dict[str, np.ndarray] | None:
        return next(self._iter, None)


def tensors_digest(tensors: np.ndarray) -> str:
    """sha256 of the calibration tensors: a re-run of a script can be checked against the card."""
    return hashlib.sha256(np.ascontiguousarray(tensors, dtype=np.float32).tobytes()).hexdigest()


def quantize(
    src: Path, dst: Path, input_name: str, tensors: np.ndarray, *, batch: int, exclude: Sequence[str] = ()
) -> None:
    """fp32 `src` model file -> int8 QDQ `dst`, calibrated on `tensors` (already preprocessed)."""
    with tempfile.TemporaryDirectory() as tmp:
        pre = Path(tmp) / "pre.onnx"
        quant_pre_process(str(src), str(pre))
        quantize_static(
            str(pre),
            str(dst),
            _Batches(input_name, tensors, batch),
            quant_format=QuantFormat.QDQ,
            per_channel=True,
            activation_type=QuantType.QUInt8,
            weight_type=QuantType.QInt8,
            calibrate_method=CalibrationMethod.MinMax,
            nodes_to_exclude=list(exclude),
        )


def session(path: Path, threads: int = 1) -> ort.InferenceSession:
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = threads
    opts.inter_op_num_threads = 1
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    return ort.InferenceSession(str(path), sess_options=opts, providers=["CPUExecutionProvider"])


def interleaved_ms(
    paths: dict[str, Path], feed: dict[str, np.ndarray], repeats: int, threads: int = 1
) -> dict[str, float]:
    """Median ms of one run of each model on `feed`, the models taking turns so load hits them alike."""
    sessions = {key: session(path, threads) for key, path in paths.items()}
    for sess in sessions.values():
        for _ in range(3):  # first runs allocate and pick kernels
            sess.run(None, feed)
    times: dict[str, list[float]] = {key: [] for key in sessions}
    for _ in range(repeats):
        for key, sess in sessions.items():
            t0 = time.perf_counter()
            sess.run(None, feed)
            times[key].append((time.perf_counter() - t0) * 1e3)
    return {key: round(statistics.median(t), 3) for key, t in times.items()}


def write_card(src_dir: Path, dst_dir: Path, fields: dict[str, Any]) -> dict[str, Any]:
    """The fp32 card, overridden by `fields`, with the int8 file's sha256 and the recipe; written and returned."""
    card: dict[str, Any] = json.loads((src_dir / CARD_NAME).read_text())
    for stale in ("latency_ms", "quality", "onnx_vs_torch_max_abs_diff", "test_photos", "notes"):
        card.pop(stale, None)  # facts about the fp32 file; the int8 card measures its own
    card.update(fields)
    card["sha256"] = sha256_file(dst_dir / MODEL_NAME)
    card["quantization"] = {**RECIPE, **card.get("quantization", {})}
    (dst_dir / CARD_NAME).write_text(json.dumps(card, indent=2) + "\n")
    return card
