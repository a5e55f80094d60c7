"""Run tf2onnx's command line after restoring `np.product`, which numpy 2 removed.

tf2onnx 1.17 still calls `np.product` in its TF.js reader; aliasing it to `np.prod` is the whole fix.
Usage (inside the throwaway venv): python convert.py --tfjs nanodet.json --opset 13 --output model.onnx
"""

from __future__ import annotations

import numpy as np

if not hasattr(np, "product"):
    np.product = np.prod  # type: ignore[attr-defined]

from tf2onnx import convert  # noqa: E402  (must import after the alias)

if __name__ == "__main__":
    convert.main()
