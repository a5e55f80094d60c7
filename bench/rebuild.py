"""Rebuild-job throughput vs the embedder's own: how much of the model's speed the job keeps.

    python bench/rebuild.py [--items 5000] [--rounds 3]

The job is `ann_index.rebuild.rebuild` with the settings of `imgsearch index build` (2 workers, batch 32,
an Embedder with 2 onnxruntime threads, 32 trees, quality gate, publish into a temporary file:// store),
on the Fashion-MNIST demo catalog (PNG files on local disk). Its rate is the catalog images embedded per
second of the job's embedding phase (fetch + decode + preprocess + run, as the manifest reports it).
The raw rate is `Embedder.run` alone on the same images, preprocessed beforehand, in batches of 32 with
the same Embedder. Both are measured in alternating rounds in one process; the ratio is of the medians.

The job's Embedder has onnxruntime's intra-op spin-waiting off, as `imgsearch index build` makes it:
spinning threads burn the core that the job's decode threads need. `--spinning both` (default) also runs
the pair with spinning on (the onnxruntime default, as the embedder service runs). P4 divides the shipped
job's rate by the faster of the two raw rates, so turning spinning off cannot flatter it by slowing `run`.
Last line, one JSON object: `{"p4": ..., "p4_spinning_on": job (spinning on) / the same raw rate, ...}`.
"""

from __future__ import annotations

import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import CACHE, arg_parser, demo_data, emit, machine, median, table  # noqa: E402


def preprocessed(catalog: Path, embedder: object, limit: int) -> np.ndarray:
    """Every catalog image decoded and preprocessed, kept as uint8 [N, 3, H, W] (lossless: 0..255 values)."""
    from ann_index.rebuild import load_catalog
    from imgcore.image import decode_image
    from imgcore.storage import fetch_uri_bytes, resolve_uri

    loaded = load_catalog(catalog.as_uri())
    cat, base = loaded.catalog, loaded.base_uri
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


def one_round(embedder: object, catalog: Path, images: np.ndarray, opts: object) -> tuple[float, float, float]:
    """(raw images/s of `Embedder.run`, the job's images/s, the job's total seconds)."""
    from ann_index.rebuild import rebuild

    raw = raw_rate(embedder, images, opts.batch_size)  # type: ignore[attr-defined]
    out = Path(tempfile.mkdtemp(prefix="rebuild-out-", dir=CACHE))
    try:
        t0 = time.perf_counter()
        manifest = rebuild(catalog.as_uri(), out.as_uri(), embedder, opts)  # type: ignore[arg-type]
        total = time.perf_counter() - t0
    finally:
        shutil.rmtree(out, ignore_errors=True)
    return raw, float(manifest["timings_s"]["items_per_s"]), total


def main() -> int:
    ap = arg_parser(__doc__)
    ap.add_argument("--items", type=int, default=5000, help="catalog size (default 5000)")
    ap.add_argument("--rounds", type=int, default=3, help="alternating rounds of raw and job (default 3)")
    ap.add_argument("--workers", type=int, default=2, help="as `imgsearch index build --workers` (default 2)")
    ap.add_argument("--batch-size", type=int, default=32, help="as `imgsearch index build --batch-size` (32)")
    ap.add_argument("--spinning", choices=("off", "both"), default="both", help="onnxruntime spin-waiting variants")
    args = ap.parse_args()
    from ann_index.rebuild import RebuildOptions
    from embedder import Embedder
    from services import defaults

    info = machine()
    data = demo_data(args.items)
    catalog = data / "catalog" / "catalog.jsonl"

    def make(spin: bool) -> Embedder:
        model = defaults.MODELS_DIR / "fmnist-lite0"
        return Embedder(model, intra_threads=args.workers, batch_size=args.batch_size, allow_spinning=spin)

    variants = {"off": make(False)}  # as shipped
    images = preprocessed(catalog, variants["off"], args.items)
    if args.spinning == "both":
        variants["on"] = make(True)
    for embedder in variants.values():
        raw_rate(embedder, images[: 4 * args.batch_size], args.batch_size)  # warm-up
    opts = RebuildOptions(workers=args.workers, batch_size=args.batch_size, progress=False, keep=1)
    results: dict[str, dict[str, list[float]]] = {name: {"raw": [], "job": [], "total": []} for name in variants}
    for r in range(args.rounds):  # variants alternate within each round, so drift on a shared machine hits all
        for name in list(variants)[:: 1 if r % 2 == 0 else -1]:
            raw, job, total = one_round(variants[name], catalog, images, opts)
            results[name]["raw"].append(raw)
            results[name]["job"].append(job)
            results[name]["total"].append(total)
    rows = []
    for name, got in results.items():
        for r in range(args.rounds):
            rows.append([name, r + 1, got["raw"][r], got["job"][r], got["job"][r] / got["raw"][r], got["total"][r]])
        raw_med, job_med = median(got["raw"]), median(got["job"])
        rows.append([name, "median", raw_med, job_med, job_med / raw_med, median(got["total"])])
    print(f"\n{len(images)} catalog images, batch {args.batch_size}, {args.workers} workers / onnxruntime threads\n")
    print(table(["spinning", "round", "raw img/s", "job img/s", "job ÷ raw", "job total s"], rows))
    print()

    best_raw = max(median(got["raw"]) for got in results.values())

    def ratio(name: str) -> float | None:
        got = results.get(name)
        return round(median(got["job"]) / best_raw, 3) if got else None

    emit(
        {
            "bench": "rebuild",
            "p4": ratio("off"),
            "p4_spinning_on": ratio("on"),
            "raw_images_per_s": {k: round(median(v["raw"]), 1) for k, v in results.items()},
            "job_images_per_s": {k: round(median(v["job"]), 1) for k, v in results.items()},
            "job_total_s": {k: round(median(v["total"]), 2) for k, v in results.items()},
            "items": len(images),
            "rounds": args.rounds,
            "machine": {**info, "loadavg_end": [round(x, 2) for x in os.getloadavg()]},
        }
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
