"""Rebuild-job throughput vs the embedder's own: how much of the model's speed the job keeps.

    python bench/rebuild.py [--items 5000] [--rounds 3] [--decode threads|processes|both] [--spinning off|both]
                            [--embedder fmnist-lite0|fmnist-lite0-int8]

The job is `ann_index.build.rebuild.rebuild` with the settings of `imgsearch index build` (1 decode thread, 2
model lanes running single-threaded embedder sessions, batch 32, spin-waiting off, 32 trees, quality gate,
publish into a temporary file:// store), on the Fashion-MNIST demo catalog (PNG files on local disk). Its
rate is the catalog images embedded per second of the job's embedding phase (fetch + decode + thumbnail +
preprocess + run, as the manifest reports it).

The raw rate is the model alone on the same images, preprocessed beforehand, in batches of 32, measured two
ways and the better taken: one session with 2 intra-op threads running batch after batch ("one run"), and
2 threads each running batches on a single-threaded session ("lanes", what the job does). So the job is
compared with the fastest the model goes on this machine, not with a configuration it beats.

Job variants: "lanes" (as `imgsearch index build` runs by default), "one-run" (2 decode threads and one
two-threaded embedder run at a time: the default before round 3), "lanes+2-decode-threads" (round 3's
default), "processes" (lanes, with decode,
thumbnail and preprocess in 2 forked worker processes at lower priority, ann_index/build/decode_pool.py:
`--decode-processes 2`), and with `--spinning both` "one-run+spinning" (onnxruntime's spin-waiting on).
In each round the raw rates are measured, then each job followed by the raw rates again; a job's ratio is
its rate over the best raw rate measured right before and right after it (so drift on a shared machine
cancels), and P4 is the median of the rounds' ratios.
Last line, one JSON object: `{"p4": ratio of the default variant, "p4_by_job": {...}, ...}`.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import CACHE, arg_parser, demo_data, emit, machine, median, table  # noqa: E402

SHIPPED = "lanes"  # how `imgsearch index build` runs by default: the variant P4 is quoted for


def preprocessed(catalog: Path, embedder: object, limit: int) -> np.ndarray:
    """Every catalog image decoded and preprocessed: the model's pixels, uint8 [N, H, W, 3]."""
    from ann_index.catalog.load import load_catalog
    from imgcore.image import decode_image
    from imgcore.storage import fetch_uri_bytes, resolve_uri

    loaded = load_catalog(catalog.as_uri())
    cat, base = loaded.catalog, loaded.base_uri
    rows = []
    for item in cat.items[:limit]:
        image = decode_image(fetch_uri_bytes(resolve_uri(base, item.image)))
        rows.append(embedder.preprocess_pixels(image))  # type: ignore[attr-defined]
    return np.stack(rows)


def raw_rate(embedder: object, images: np.ndarray, batch: int, lanes: int = 1) -> float:
    """Images per second of `Embedder.run` alone, in `lanes` threads at once (batches laid out beforehand)."""
    from concurrent.futures import ThreadPoolExecutor

    from embedder.transforms import chw_batch

    batches = [chw_batch(images[start : start + batch]) for start in range(0, len(images), batch)]
    run = embedder.run  # type: ignore[attr-defined]
    t0 = time.perf_counter()
    if lanes == 1:
        for x in batches:
            run(x)
    else:
        with ThreadPoolExecutor(lanes) as pool:
            list(pool.map(run, batches))
    return len(images) / (time.perf_counter() - t0)


def run_job(embedder: object, catalog: Path, opts: object) -> tuple[float, float]:
    """(the job's images/s, the job's total seconds)."""
    from ann_index.build.rebuild import rebuild

    out = Path(tempfile.mkdtemp(prefix="rebuild-out-", dir=CACHE))
    try:
        t0 = time.perf_counter()
        manifest = rebuild(catalog.as_uri(), out.as_uri(), embedder, opts)  # type: ignore[arg-type]
        total = time.perf_counter() - t0
    finally:
        shutil.rmtree(out, ignore_errors=True)
    return float(manifest["timings_s"]["items_per_s"]), total


# A job variant: (embedder: "one-run" | "lanes" | "spinning", decode worker processes, model lanes, decode
# threads: 0 for the job's own choice).
Variant = tuple[str, int, int, int]


def variants_of(args: argparse.Namespace) -> dict[str, Variant]:
    """Job variants by name."""
    out: dict[str, Variant] = {"lanes": ("lanes", 0, args.workers, 0), "one-run": ("one-run", 0, 1, 0)}
    if args.decode != "processes":
        out["lanes+2-decode-threads"] = ("lanes", 0, args.workers, 2)
    if args.decode in ("processes", "both"):
        out["processes"] = ("lanes", args.workers, args.workers, 0)
    if args.decode == "processes":
        del out["lanes"], out["one-run"]
    if args.spinning == "both":
        out["one-run+spinning"] = ("spinning", 0, 1, 0)
    return out


def main() -> int:
    ap = arg_parser(__doc__)
    ap.add_argument("--items", type=int, default=5000, help="catalog size (default 5000)")
    ap.add_argument("--rounds", type=int, default=3, help="alternating rounds of raw and job (default 3)")
    ap.add_argument("--workers", type=int, default=2, help="as `imgsearch index build --workers` (default 2)")
    ap.add_argument("--batch-size", type=int, default=32, help="as `imgsearch index build --batch-size` (32)")
    ap.add_argument("--spinning", choices=("off", "both"), default="off", help="onnxruntime spin-waiting variants")
    ap.add_argument("--decode", choices=("threads", "processes", "both"), default="both", help="job variants")
    ap.add_argument(
        "--embedder",
        default="fmnist-lite0",
        help="model folder under models/ (default fmnist-lite0, the fp32 model P4 was set on; "
        "`imgsearch index build` now defaults to fmnist-lite0-int8)",
    )
    args = ap.parse_args()
    from ann_index.build.rebuild import RebuildOptions
    from embedder import Embedder
    from services import defaults
    from services.common.loading import rebuild_embedder

    info = machine()
    data = demo_data(args.items)
    catalog = data / "catalog" / "catalog.jsonl"

    model = defaults.MODELS_DIR / args.embedder
    embedders = {  # the job's embedders; "one-run" and "lanes" are also the two raw configurations
        "one-run": Embedder(model, intra_threads=args.workers, batch_size=args.batch_size, allow_spinning=False),
        "lanes": rebuild_embedder(model, args.batch_size),  # what `imgsearch index build` runs
    }
    images = preprocessed(catalog, embedders["lanes"], args.items)
    variants = variants_of(args)
    if args.spinning == "both":
        embedders["spinning"] = Embedder(model, intra_threads=args.workers, batch_size=args.batch_size)
    raws = {"one-run": (embedders["one-run"], 1), "lanes": (embedders["lanes"], args.workers)}

    def raw_now() -> dict[str, float]:
        return {name: raw_rate(e, images, args.batch_size, lanes) for name, (e, lanes) in raws.items()}

    for embedder in embedders.values():
        raw_rate(embedder, images[: 4 * args.batch_size], args.batch_size)  # warm-up
    results: dict[str, dict[str, list[float]]] = {n: {"raw": [], "job": [], "total": []} for n in variants}
    raw_seen: dict[str, list[float]] = {name: [] for name in raws}
    for r in range(args.rounds):  # variants alternate within each round, so drift on a shared machine hits all
        raw_before = raw_now()
        for name in list(variants)[:: 1 if r % 2 == 0 else -1]:
            kind, processes, lanes, threads = variants[name]
            opts = RebuildOptions(
                workers=args.workers,
                batch_size=args.batch_size,
                progress=False,
                keep=1,
                decode_processes=processes,
                model_lanes=lanes,
                decode_threads=threads,
            )
            job, total = run_job(embedders[kind], catalog, opts)
            raw_after = raw_now()
            for k in raws:
                raw_seen[k].append(raw_after[k])
            # The job against the best raw rate measured right before and right after it (drift cancels).
            best = max((raw_before[k] + raw_after[k]) / 2 for k in raws)
            results[name]["raw"].append(best)
            results[name]["job"].append(job)
            results[name]["total"].append(total)
            raw_before = raw_after
    raw_by_config = {k: round(median(v), 1) for k, v in raw_seen.items()}
    report(results, raw_by_config, args, len(images), info)
    return 0


def report(
    results: dict[str, dict[str, list[float]]],
    raw_by_config: dict[str, float],
    args: argparse.Namespace,
    n: int,
    info: dict,
) -> None:
    rows = []
    for name, got in results.items():
        ratios = [j / r for j, r in zip(got["job"], got["raw"], strict=True)]
        for r in range(args.rounds):
            rows.append([name, r + 1, got["raw"][r], got["job"][r], ratios[r], got["total"][r]])
        rows.append([name, "median", median(got["raw"]), median(got["job"]), median(ratios), median(got["total"])])
    print(f"\n{n} catalog images, batch {args.batch_size}, {args.workers} model lanes")
    print(f"raw img/s by configuration (medians): {raw_by_config}\n")
    print(table(["job", "round", "best raw img/s", "job img/s", "job ÷ raw", "job total s"], rows))
    print()

    def ratio(name: str) -> float | None:
        got = results.get(name)
        return round(median([j / r for j, r in zip(got["job"], got["raw"], strict=True)]), 3) if got else None

    emit(
        {
            "bench": "rebuild",
            "p4": ratio(SHIPPED),
            "p4_by_job": {name: ratio(name) for name in results},
            "raw_images_per_s": {k: round(median(v["raw"]), 1) for k, v in results.items()},
            "raw_images_per_s_by_config": raw_by_config,
            "job_images_per_s": {k: round(median(v["job"]), 1) for k, v in results.items()},
            "job_total_s": {k: round(median(v["total"]), 2) for k, v in results.items()},
            "items": n,
            "rounds": args.rounds,
            "embedder": args.embedder,
            "machine": {**info, "loadavg_end": [round(x, 2) for x in os.getloadavg()]},
        }
    )


if __name__ == "__main__":
    raise SystemExit(main())
