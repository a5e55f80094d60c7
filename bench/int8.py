"""int8 vs fp32, model only: each int8 model under models/ against the fp32 model it was quantised from.

    python bench/int8.py [--repeats 40] [--threads 1]

Both sessions of a pair are open at once and take turns run by run (interleaved), so a busy shared
machine slows both alike and the ratio stays honest. One onnxruntime thread by default (the targets'
condition). The embedder runs a batch of 16 (and of 1) preprocessed real photos; the detector, whose
input has a fixed batch of 1, runs one photo per call. Targets (issue 19): embedder >= 1.8x at batch 16,
detector >= 1.4x. The last line is one JSON object: per pair the medians, the speedups and `targets_met`.
"""

from __future__ import annotations

import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import REPO, arg_parser, emit, machine, table  # noqa: E402

from detector import Detector  # noqa: E402
from embedder import Embedder  # noqa: E402
from imgcore.card import load_card  # noqa: E402
from imgcore.image import decode_image  # noqa: E402

PHOTOS = sorted((REPO / "tests" / "data" / "photos").glob("*.jpg"))
TARGETS = {"embedding": ("batch16", 1.8), "detection": ("batch1", 1.4)}


def interleaved(runs: dict[str, Callable[[], object]], repeats: int) -> dict[str, float]:
    """Median ms per callable; they take turns within each repeat after a few warm-up runs."""
    for fn in runs.values():
        for _ in range(3):
            fn()
    times: dict[str, list[float]] = {key: [] for key in runs}
    for _ in range(repeats):
        for key, fn in runs.items():
            t0 = time.perf_counter()
            fn()
            times[key].append((time.perf_counter() - t0) * 1e3)
    return {key: round(statistics.median(t), 3) for key, t in times.items()}


def _images(n: int) -> list[np.ndarray]:
    images = [decode_image(p.read_bytes()) for p in PHOTOS]
    return [images[i % len(images)] for i in range(n)]


def embedder_pair(fp32: Path, int8: Path, threads: int, repeats: int) -> dict[str, Any]:
    models = {"fp32": Embedder(fp32, intra_threads=threads), "int8": Embedder(int8, intra_threads=threads)}
    batch = np.stack([models["fp32"].preprocess(im) for im in _images(16)])
    out: dict[str, Any] = {}
    for size in (1, 16):
        x = batch[:size]
        ms = interleaved({k: (lambda m=m, x=x: m.run(x)) for k, m in models.items()}, repeats)
        out[f"batch{size}"] = {**ms, "speedup": round(ms["fp32"] / ms["int8"], 3)}
    return out


def detector_pair(fp32: Path, int8: Path, threads: int, repeats: int) -> dict[str, Any]:
    models = {"fp32": Detector(fp32, intra_threads=threads), "int8": Detector(int8, intra_threads=threads)}
    tensors = [models["fp32"].preprocess(im)[0] for im in _images(len(PHOTOS))]
    # One call per photo; the photos rotate so every repeat sees the same mix.
    ms = interleaved({k: (lambda m=m: [m.run(t) for t in tensors]) for k, m in models.items()}, repeats)
    per_image = {k: round(v / len(tensors), 3) for k, v in ms.items()}
    return {"batch1": {**per_image, "speedup": round(ms["fp32"] / ms["int8"], 3)}}


def pairs(models_dir: Path) -> list[tuple[str, Path, Path]]:
    """(task, fp32 folder, int8 folder) for every card with `quantized_from` naming a sibling folder."""
    found = []
    for card_path in sorted(models_dir.glob("*/card.json")):
        card = load_card(card_path.parent)
        source = (card.get("quantized_from") or {}).get("name")
        if source and (models_dir / source / "card.json").is_file():
            found.append((str(card.get("task", "")), models_dir / source, card_path.parent))
    return found


def main() -> None:
    parser = arg_parser(__doc__)
    parser.add_argument("--models", type=Path, default=REPO / "models", help="folder of model folders")
    parser.add_argument("--threads", type=int, default=1, help="onnxruntime intra-op threads (default 1)")
    parser.add_argument("--repeats", type=int, default=40, help="timed runs of each model (default 40)")
    args = parser.parse_args()
    bench = {"embedding": embedder_pair, "detection": detector_pair}
    result: dict[str, Any] = {"threads": args.threads, "repeats": args.repeats, "unit": "ms", "pairs": {}}
    rows = []
    for task, fp32, int8 in pairs(args.models):
        if task not in bench:
            continue
        res = bench[task](fp32, int8, args.threads, args.repeats)
        key, target = TARGETS[task]
        res["target"] = {"at": key, "speedup": target, "met": res[key]["speedup"] >= target}
        result["pairs"][int8.name] = res
        rows += [[int8.name, b, v["fp32"], v["int8"], v["speedup"]] for b, v in res.items() if b != "target"]
    result["targets_met"] = all(p["target"]["met"] for p in result["pairs"].values())
    result["machine"] = machine()
    print(table(["int8 model", "batch", "fp32 ms", "int8 ms", "speedup"], rows))
    emit(result)


if __name__ == "__main__":
    main()
