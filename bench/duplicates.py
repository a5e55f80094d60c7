"""Benchmark: near-duplicate listings (issue 28): recall and precision of `imgsearch index duplicates` on copies
of catalog images re-listed as new products, at the default threshold and around it.

A demo catalog (the first --items Fashion-MNIST train images, 112 px PNGs) gains --copies copies of each kind,
made from distinct random catalog images and listed as products of their own:
  jpeg    re-encoded as JPEG at quality 50..85
  resize  resized to 60..160 % of its side (JPEG q90)
  crop    1..5 % cut from each side (PNG)
  tint    a colour cast (each channel x0.85..1.0) and brightness -15..+15 (PNG)
A real index is built with the default embedder (fmnist-lite0-int8; vectors cached under /tmp/imgsearch-bench,
so a rerun embeds only what changed), then the finder runs over the published version's files: it fingerprints
the thumbnails (`imgcore.fingerprint`) and compares every pair exactly. Recall: injected
(original, copy) pairs found; precision: injected pairs among all pairs reported (the rest are pairs of the
catalog's own items, Fashion-MNIST holds some near-identical images).

    python bench/duplicates.py                       # 5 000 items, 50 copies of each kind
    python bench/duplicates.py --items 2000 --copies 20
"""

from __future__ import annotations

import json
import shutil
import tempfile
import time
from pathlib import Path

import cv2
import numpy as np
from common import CACHE, arg_parser, emit, machine, table

from ann_index.build.rebuild import RebuildOptions, rebuild
from ann_index.catalog.demo import write_fmnist_catalog
from ann_index.version.duplicates import find_duplicates, version_rows
from ann_index.version.publish import read_current
from imgcore.fingerprint import DUPLICATE_PRINT_SCORE
from imgcore.storage import open_store
from services import defaults
from services.common.loading import rebuild_embedder

KINDS = ("jpeg", "resize", "crop", "tint")
THRESHOLDS = (0.97, 0.975, 0.98, 0.985, 0.99, 0.995)


def _copy(image: np.ndarray, kind: str, rng: np.random.Generator) -> tuple[bytes, str]:
    """A near-identical copy of a BGR image, encoded; (bytes, file suffix)."""
    h, w = image.shape[:2]
    if kind == "jpeg":
        return cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, int(rng.integers(50, 86))])[1].tobytes(), "jpg"
    if kind == "resize":
        side = max(16, int(round(w * rng.uniform(0.6, 1.6))))
        out = cv2.resize(image, (side, side), interpolation=cv2.INTER_AREA if side < w else cv2.INTER_CUBIC)
        return cv2.imencode(".jpg", out, [cv2.IMWRITE_JPEG_QUALITY, 90])[1].tobytes(), "jpg"
    if kind == "crop":
        top, bottom, left, right = (int(round(s * rng.uniform(0.01, 0.05))) for s in (h, h, w, w))
        return cv2.imencode(".png", image[top : h - bottom, left : w - right])[1].tobytes(), "png"
    cast = rng.uniform(0.85, 1.0, size=3) * image.astype(np.float32) + rng.uniform(-15, 15)
    return cv2.imencode(".png", np.clip(cast, 0, 255).astype(np.uint8))[1].tobytes(), "png"


def make_catalog(root: Path, items: int, copies: int, seed: int) -> tuple[Path, dict[tuple[str, str], str]]:
    """The catalog with its injected copies; {(original id, copy id) in id order: kind}."""
    catalog = write_fmnist_catalog(root / "shop", limit=items)
    rows = [json.loads(line) for line in catalog.read_text().splitlines()]
    rng = np.random.default_rng(seed)
    sources = rng.choice(len(rows), size=copies * len(KINDS), replace=False)
    injected: dict[tuple[str, str], str] = {}
    with catalog.open("a") as out:
        for n, pos in enumerate(sources):
            kind, row = KINDS[n % len(KINDS)], rows[int(pos)]
            image = cv2.imread(str(catalog.parent / row["image"]))
            assert image is not None, row["image"]
            data, suffix = _copy(image, kind, rng)
            copy_id = f"copy-{kind}-{n:04d}"
            (catalog.parent / "images" / f"{copy_id}.{suffix}").write_bytes(data)
            attrs = {**row.get("attrs", {}), "product_id": f"reseller-{n}"}
            out.write(json.dumps({**row, "item_id": copy_id, "image": f"images/{copy_id}.{suffix}", "attrs": attrs}))
            out.write("\n")
            injected[(min(row["item_id"], copy_id), max(row["item_id"], copy_id))] = kind
    return catalog, injected


def measure(pairs: dict[tuple[str, str], float], injected: dict[tuple[str, str], str]) -> list[dict[str, float]]:
    """Recall (all and per kind) and precision at each threshold."""
    rows = []
    for t in sorted({*THRESHOLDS, DUPLICATE_PRINT_SCORE}):
        found = {p for p, s in pairs.items() if s >= t}
        hits = found & set(injected)
        by_kind = {k: sum(1 for p in hits if injected[p] == k) / sum(v == k for v in injected.values()) for k in KINDS}
        rows.append(
            {
                "threshold": t,
                "recall": round(len(hits) / len(injected), 4),
                "precision": round(len(hits) / len(found), 4) if found else 1.0,
                "reported": len(found),
                **{k: round(v, 3) for k, v in by_kind.items()},
            }
        )
    return rows


def main() -> int:
    parser = arg_parser(__doc__)
    parser.add_argument("--items", type=int, default=5000)
    parser.add_argument("--copies", type=int, default=50, help="copies of each kind")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    CACHE.mkdir(parents=True, exist_ok=True)
    root = Path(tempfile.mkdtemp(prefix="duplicates-", dir=CACHE))
    try:
        catalog, injected = make_catalog(root, args.items, args.copies, args.seed)
        embedder = rebuild_embedder(defaults.DEFAULT_EMBEDDER_DIR)
        opts = RebuildOptions(progress=False, embedding_cache=CACHE / "duplicates-vectors.sqlite")
        t0 = time.monotonic()
        rebuild(str(catalog), (root / "index").as_uri(), embedder, opts)
        built = time.monotonic() - t0
        store = open_store((root / "index").as_uri())
        t1 = time.monotonic()
        prints, items = version_rows(store, str(read_current(store)), root / "work")
        found = find_duplicates(prints, items, threshold=min(THRESHOLDS))
        finder_s = time.monotonic() - t1
    finally:
        shutil.rmtree(root, ignore_errors=True)
    rows = measure({(p.a, p.b): p.score for p in found}, injected)
    scores = sorted(p.score for p in found if (p.a, p.b) in injected)
    headers = ["threshold", "recall", "precision", "reported", *KINDS]
    print(table(headers, [[f"{r['threshold']:.3f}", *(r[h] for h in headers[1:])] for r in rows]))
    at_default = next(r for r in rows if r["threshold"] == DUPLICATE_PRINT_SCORE)
    print(
        f"{len(items)} images, {len(injected)} copies; index built in {built:.0f} s, "
        f"finder (fetch, fingerprints, pairs) {finder_s:.1f} s"
    )
    emit(
        {
            "bench": "duplicates",
            "items": len(items),
            "injected": len(injected),
            "threshold": DUPLICATE_PRINT_SCORE,
            "recall": at_default["recall"],
            "precision": at_default["precision"],
            "lowest_injected_score": round(scores[0], 4) if scores else None,
            "finder_s": round(finder_s, 2),
            "by_threshold": {str(r["threshold"]): r for r in rows},
            "machine": machine(),
        }
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
