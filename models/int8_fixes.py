"""Three graph-level steps around models/int8_recipe.py's quantisation, used by nanodet-m-int8 (issue 31).

- `fold_pad_into_pool`: a Pad with -inf feeding a MaxPool (TF's PadV2 before a 'SAME' pool) becomes the pool's
  own `pads`, which ONNX MaxPool never lets win a max: the same outputs, and no -inf tensor, which has no finite
  quantisation scale (so the stem's pool can run int8 instead of staying float).
- `correct_biases`: empirical bias correction. Rounding weights and activations shifts each convolution's mean
  output a little, and the shifts add up through a deep network (seen: detection scores 0.013 lower on average,
  std 0.028, so objects near the threshold dropped out). Each quantised Conv's int32 bias is moved by the mean
  per-channel difference between its output and the float model's on the calibration tensors, one Conv at a
  time in graph order, each measured after the ones before it were corrected (correcting all at once
  overshoots: downstream shifts are partly the upstream ones).
- `free_spatial_dims`: the input's height and width (and the outputs' cell counts, which follow them) become
  named dimensions, so the served detector can run each photo at its own input size (detector.transforms.
  model_size). NanoDet is convolutional and its reshapes keep the batch and flatten the rest (-1), so only
  the declared shapes and the shapes recorded by shape inference, which were for 416 x 416, change.
Build-time only (the `onnx` package).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
from onnx import helper, numpy_helper


def fold_pad_into_pool(src: Path, dst: Path) -> int:
    """Writes `src` with each -inf Pad -> MaxPool pair fused into the pool; returns how many were fused."""
    model = onnx.load(str(src))
    graph = model.graph
    inits = {i.name: i for i in graph.initializer}
    fused = 0
    for pad in [n for n in graph.node if n.op_type == "Pad" and len(n.input) >= 3 and n.input[2] in inits]:
        users = [n for n in graph.node if pad.output[0] in n.input]
        value = numpy_helper.to_array(inits[pad.input[2]])
        if len(users) != 1 or users[0].op_type != "MaxPool" or not np.all(np.isneginf(value)):
            continue
        pads = [int(v) for v in numpy_helper.to_array(inits[pad.input[1]])]  # N, C, H, W begins, then ends
        pool = users[0]
        attrs = {a.name: helper.get_attribute_value(a) for a in pool.attribute}
        if pads[0:2] != [0, 0] or pads[4:6] != [0, 0] or any(attrs.get("pads", [])):
            continue
        if attrs.get("auto_pad", b"NOTSET") not in (b"NOTSET", b"VALID"):
            continue
        for attr in [a for a in pool.attribute if a.name in ("pads", "auto_pad")]:
            pool.attribute.remove(attr)
        pool.attribute.append(helper.make_attribute("pads", [pads[2], pads[3], pads[6], pads[7]]))
        pool.input[0] = pad.input[0]
        graph.node.remove(pad)
        fused += 1
    onnx.save(model, str(dst))
    return fused


def _channel_means(model: onnx.ModelProto, names: list[str], input_name: str, tensors: np.ndarray) -> dict:
    """Mean over images and pixels of each named NCHW tensor, per channel (unfused QDQ: the quantised math)."""
    probe = onnx.ModelProto()
    probe.CopyFrom(model)
    present = {o.name for o in probe.graph.output}
    probe.graph.output.extend(
        helper.make_tensor_value_info(n, onnx.TensorProto.FLOAT, None) for n in names if n not in present
    )
    opts = ort.SessionOptions()
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    session = ort.InferenceSession(probe.SerializeToString(), opts, providers=["CPUExecutionProvider"])
    outputs = [o.name for o in session.get_outputs()]
    sums: dict[str, np.ndarray] = {}
    for tensor in tensors:
        got = dict(zip(outputs, session.run(None, {input_name: tensor[None]}), strict=True))
        for n in names:
            sums[n] = sums.get(n, 0) + got[n].mean(axis=(0, 2, 3))
    return {n: v / len(tensors) for n, v in sums.items()}


def correct_biases(float_model: Path, qdq_model: Path, input_name: str, tensors: np.ndarray) -> dict[str, float]:
    """Rewrites `qdq_model` with corrected Conv biases; returns each Conv's largest mean shift before."""
    ref = onnx.load(str(float_model))
    model = onnx.load(str(qdq_model))
    inits = {i.name: i for i in model.graph.initializer}
    producer = {out: n for n in model.graph.node for out in n.output}
    float_convs = {n.output[0] for n in ref.graph.node if n.op_type == "Conv"}
    targets = []
    for node in model.graph.node:
        dq = producer.get(node.input[2]) if node.op_type == "Conv" and len(node.input) > 2 else None
        if dq is not None and dq.op_type == "DequantizeLinear" and node.output[0] in float_convs:
            targets.append((node.output[0], inits[dq.input[0]], numpy_helper.to_array(inits[dq.input[1]])))
    want = _channel_means(ref, [t[0] for t in targets], input_name, tensors)
    shifts = {}
    for name, bias, scale in targets:
        delta = _channel_means(model, [name], input_name, tensors)[name] - want[name]
        fixed = numpy_helper.to_array(bias).astype(np.int64) - np.round(delta / scale).astype(np.int64)
        bias.CopyFrom(numpy_helper.from_array(fixed.astype(np.int32), bias.name))
        shifts[name] = round(float(np.abs(delta).max()), 4)
    onnx.save(model, str(qdq_model))
    return shifts


def free_spatial_dims(path: Path) -> None:
    """Rewrite the model at `path` with the input's dims 2 and 3 named `height`/`width`, each output's dim 1
    named `cells`, and no recorded intermediate shapes (onnxruntime infers them per run)."""
    model = onnx.load(str(path))
    graph = model.graph
    if len(graph.input) != 1 or len(graph.input[0].type.tensor_type.shape.dim) != 4:
        raise ValueError("expected one 4-d input")
    dims = graph.input[0].type.tensor_type.shape.dim
    dims[2].dim_param, dims[3].dim_param = "height", "width"
    for output in graph.output:
        output.type.tensor_type.shape.dim[1].dim_param = "cells"
    del graph.value_info[:]
    onnx.checker.check_model(model)
    onnx.save(model, str(path))
