"""Rebuild-job throughput vs the embedder's own: how much of the model's speed the job keeps.

    python bench/rebuild.py [--items 5000] [--rounds 3]

The job is `ann_index.rebuild.rebuild` with the settings of `imgsearch index build` (2 workers, batch 32,
an Embedder with 2 onnxruntime threads, 32 trees, quality gate, publish into a temporary file:// store),
on the Fashion-MNIST demo catalog (PNG files on local disk). Its rate is the catalog images embedded per
second of the job's embedding phase (fetch + decode + preprocess + run, as the manifest reports it).
The raw rate is `Embedder.run` alone on the same images, preprocessed beforehand, in batches of 32 with
the same Embedder. Both are measured in alternating rounds in one process; the ratio is of the medians.
Last line, one JSON object: `{"p4": job images/s / raw images/s, ...}`.
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import CACHE, demo_data, emit, machine, median, table  # noqa: E402


def preprocessed(catalog: Path, embedder: object, limit: int) -> np.ndarray:
    """Every catalog image decoded and preprocessed, kept as uint8 [N, 3, H, W] (lossless: 0..255 values)."""
    from ann_index.rebuild import load_catalog
    from imgcore.image import decode_image
    from imgcore.storage import fetch_uri_bytes, resolve_uri

    cat, base = load_catalog(catalog.as_uri())
    rows = []
    for item in cat.items[:limit]:
        image = decode_image(fetch_uri_bytes(resolve_uri(base, item.image)))
        rows.append(embedder.preprocess(image).astype(np.uint8))  # type: ignore[attr-defined]
    return np.stack(rows)


def raw_rate(embedder: object, images: np.ndarray, batch: int) -> float:
    """Images per second of `Embedder.run` alone (float conversion outside the clock)."""
    spent = 0.0
    for start in range(0, len(images), batch):
        x = images[start : start + batch].astype(np.float32)
        t0 = time.perf_counter()
        embedder.run(x)  # type: ignore[attr-defined]
        spent += time.perf_counter() - t0
    return len(images) / spent


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--items", type=int, default=5000, help="catalog size (default 5000)")
    ap.add_argument("--rounds", type=int, default=3, help="alternating rounds of raw and job (default 3)")
    ap.add_argument("--workers", type=int, default=2, help="as `imgsearch index build --workers` (default 2)")
    ap.add_argument("--batch-size", type=int, default=32, help="as `imgsearch index build --batch-size` (32)")
    args = ap.parse_args()
    from ann_index.rebuild import RebuildOptions, rebuild
    from embedder import Embedder
    from services import defaults

    info = machine()
    data = demo_data(args.items)
    catalog = data / "catalog" / "catalog.jsonl"
    embedder = Embedder(defaults.MODELS_DIR / "fmnist-lite0", intra_threads=args.workers, batch_size=args.batch_size)
    images = preprocessed(catalog, embedder, args.items)
    raw_rate(embedder, images[: 4 * args.batch_size], args.batch_size)  # warm-up
    opts = RebuildOptions(workers=args.workers, batch_size=args.batch_size, progress=False, keep=1)
    raws, jobs, totals = [], [], []
    for _ in range(args.rounds):
        raws.append(raw_rate(embedder, images, args.batch_size))
        out = Path(tempfile.mkdtemp(prefix="rebuild-out-", dir=CACHE))
        try:
            t0 = time.perf_counter()
            manifest = rebuild(catalog.as_uri(), out.as_uri(), embedder, opts)
            totals.append(time.perf_counter() - t0)
        finally:
            shutil.rmtree(out, ignore_errors=True)
        jobs.append(float(manifest["timings_s"]["items_per_s"]))
    rows = [[r + 1, raws[r], jobs[r], jobs[r] / raws[r], totals[r]] for r in range(args.rounds)]
    raw_med, job_med = median(raws), median(jobs)
    rows.append(["median", raw_med, job_med, job_med / raw_med, median(totals)])
    print(f"\n{len(images)} catalog images, batch {args.batch_size}, {args.workers} workers / ORT threads\n")
    print(table(["round", "raw img/s", "job img/s", "job ÷ raw", "job total s"], rows))
    print()
    emit(
        {
            "bench": "rebuild",
            "p4": round(job_med / raw_med, 3),
            "raw_images_per_s": round(raw_med, 1),
            "job_images_per_s": round(job_med, 1),
            "job_total_s": round(median(totals), 2),
            "items": len(images),
            "rounds": args.rounds,
            "machine": info,
        }
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
