"""Convert a MoveNet TF.js graph model to ONNX with tf2onnx (inside the throwaway conversion venv).

Two fixes before tf2onnx's own command line runs:
- numpy 2 removed `np.product`, which tf2onnx 1.17's TF.js reader still calls: alias it to `np.prod`;
- the TF.js export drops the `TArgs` attribute of its `_FusedConv2D` nodes (the types of the fused extra
  inputs), which TensorFlow's graph import requires: it is `num_args` times the node's own type `T`;
- MultiPose's `TopKV2` lacks `Tk` and `index_type`, attributes newer TensorFlow added with the default
  int32: written with that default.
Usage: python convert.py --tfjs movenet-lightning.json --opset 13 --output model.onnx
(the patched graph is written beside the input, as `<name>.targs.json`, so its weights resolve).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np

if not hasattr(np, "product"):
    np.product = np.prod  # type: ignore[attr-defined]

from tf2onnx import convert  # noqa: E402  (must import after the alias)

# Attributes TensorFlow's op definitions gained after the export, with their defaults.
ADDED_DEFAULTS = {"TopKV2": {"Tk": {"type": "DT_INT32"}, "index_type": {"type": "DT_INT32"}}}


def add_targs(graph_json: Path) -> Path:
    """Write a copy of the graph with `TArgs` on every fused convolution that lacks it (and the attributes of
    ADDED_DEFAULTS); return its path."""
    model = json.loads(graph_json.read_text())
    for node in model["modelTopology"]["node"]:
        attr = node.setdefault("attr", {})
        for name, value in ADDED_DEFAULTS.get(node["op"], {}).items():
            attr.setdefault(name, value)
        if node["op"] == "_FusedConv2D" and "TArgs" not in attr:
            count = int(attr.get("num_args", {}).get("i", "0"))
            attr["TArgs"] = {"list": {"type": [attr["T"]["type"]] * count}}
    out = graph_json.with_suffix(".targs.json")
    out.write_text(json.dumps(model))
    return out


if __name__ == "__main__":
    args = sys.argv[1:]
    where = args.index("--tfjs") + 1
    args[where] = str(add_targs(Path(args[where])))
    sys.argv = [sys.argv[0], *args]
    convert.main()
