"""Median latency of every model under models/ at batch 1 and batch 16, model-only and end to end.

    python bench/models.py [--threads 2] [--repeats 30]

Prints a table for people and, as the LAST line, one JSON object for scripts. Each measurement is
warmed up first (onnxruntime allocates and picks kernels on the first runs) and reported as a
median over repeats, so one scheduling hiccup on a shared machine does not move the number.
A detector whose input has a fixed batch of 1 is timed at "batch 16" as 16 images run one after
another; the JSON says so with "batch16_mode": "sequential".
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from detector import Detector  # noqa: E402
from embedder import Embedder  # noqa: E402
from imgcore.card import load_card  # noqa: E402
from imgcore.image import decode_image  # noqa: E402

PHOTOS = REPO / "tests" / "data" / "photos"


def median_ms(fn: Callable[[], object], repeats: int, warmup: int = 3) -> float:
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append((time.perf_counter() - t0) * 1e3)
    return statistics.median(times)


def photos(n: int) -> list[np.ndarray]:
    found = sorted(PHOTOS.glob("*.jpg"))
    if not found:
        raise SystemExit(f"no photos in {PHOTOS}")
    images = [decode_image(p.read_bytes()) for p in found]
    return [images[i % len(images)] for i in range(n)]


def bench_detector(model_dir: Path, threads: int, repeats: int) -> dict[str, Any]:
    det = Detector(model_dir, intra_threads=threads)
    images = photos(16)
    tensor, _ = det.preprocess(images[0])
    fixed_batch = det.card.get("input", {}).get("shape", [None])[0] == 1
    tensors = [det.preprocess(im)[0] for im in images]
    if fixed_batch:
        model16 = median_ms(lambda: [det.run(t) for t in tensors], max(3, repeats // 4))
    else:
        batch = np.concatenate(tensors)
        model16 = median_ms(lambda: det.run(batch), max(3, repeats // 4))
    return {
        "model": det.name,
        "task": "detection",
        "batch1_model_ms": median_ms(lambda: det.run(tensor), repeats),
        "batch1_e2e_ms": median_ms(lambda: det.detect(images[0]), repeats),
        "batch16_model_ms": model16,
        "batch16_e2e_ms": median_ms(lambda: [det.detect(im) for im in images], max(3, repeats // 4)),
        "batch16_mode": "sequential" if fixed_batch else "batched",
    }


def bench_embedder(model_dir: Path, threads: int, repeats: int) -> dict[str, Any]:
    emb = Embedder(model_dir, intra_threads=threads)
    images = photos(16)
    one = emb.preprocess(images[0])[None]
    sixteen = np.stack([emb.preprocess(im) for im in images])
    return {
        "model": emb.name,
        "task": "embedding",
        "batch1_model_ms": median_ms(lambda: emb.run(one), repeats),
        "batch1_e2e_ms": median_ms(lambda: emb.embed(images[0]), repeats),
        "batch16_model_ms": median_ms(lambda: emb.run(sixteen), repeats),
        "batch16_e2e_ms": median_ms(lambda: emb.embed_batch(images), repeats),
        "batch16_mode": "batched",
    }


BENCHES: dict[str, Callable[[Path, int, int], dict[str, Any]]] = {
    "detection": bench_detector,
    "embedding": bench_embedder,
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", type=Path, default=REPO / "models", help="folder of model folders")
    parser.add_argument("--threads", type=int, default=2, help="onnxruntime intra-op threads (default 2)")
    parser.add_argument("--repeats", type=int, default=30, help="timed runs per measurement (default 30)")
    args = parser.parse_args()

    rows = []
    for card_path in sorted(args.models.glob("*/card.json")):
        task = load_card(card_path.parent).get("task", "")
        if task in BENCHES:
            rows.append(BENCHES[task](card_path.parent, args.threads, args.repeats))

    head = f"{'model':<16}{'task':<11}{'b1 model':>10}{'b1 e2e':>10}{'b16 model':>11}{'b16 e2e':>10}  b16 mode"
    # Medians on a shared machine are only as good as its idleness: print the load next to them.
    load = round(os.getloadavg()[0], 2)
    print(
        f"median ms, {args.threads} onnxruntime threads, {args.repeats} repeats (b16: whole batch of 16), "
        f"load average {load} on {os.cpu_count()} CPUs"
    )
    print(head)
    for r in rows:
        print(
            f"{r['model']:<16}{r['task']:<11}{r['batch1_model_ms']:>10.2f}{r['batch1_e2e_ms']:>10.2f}"
            f"{r['batch16_model_ms']:>11.2f}{r['batch16_e2e_ms']:>10.2f}  {r['batch16_mode']}"
        )
    rounded = [{k: round(v, 3) if isinstance(v, float) else v for k, v in r.items()} for r in rows]
    print(
        json.dumps(
            {"threads": args.threads, "repeats": args.repeats, "unit": "ms", "loadavg_1m": load, "models": rounded}
        )
    )


if __name__ == "__main__":
    main()
