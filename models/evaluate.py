"""Retrieval quality of an embedder model on Fashion-MNIST, through the served ONNX (no torch).

Gallery: the TRAIN split rendered catalog-style (all 60k by default). Queries: TEST-split items in
four styles -- catalog / shop photo, each whole-image and foreground-cropped. Exact numpy search.
Metrics per style, overall and per category: R@k = the query's category is among the top k;
P@10 = fraction of the top 10 with the query's category. The last line printed is a JSON object.

    python models/evaluate.py --model models/fmnist-lite0 [--gallery-limit 10000] [--queries 1000]
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Callable
from pathlib import Path

import cv2
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from embedder import Embedder, foreground_box  # noqa: E402
from imgcore.fmnist import CLASS_NAMES, load_fmnist, render_catalog, render_shop_photo  # noqa: E402
from imgcore.retrieval import KS, matrix_means, shown_as  # noqa: E402

STYLES = ("catalog", "catalog_crop", "shop", "shop_crop")
CHUNK = 64


def jpeg_roundtrip(img: np.ndarray, quality: int) -> np.ndarray:
    ok, buf = cv2.imencode(".jpg", img[:, :, ::-1], [cv2.IMWRITE_JPEG_QUALITY, quality])
    if not ok:
        raise RuntimeError("JPEG encoding failed")
    decoded = cv2.imdecode(buf, cv2.IMREAD_COLOR)
    if decoded is None:
        raise RuntimeError("JPEG decoding failed")
    return np.ascontiguousarray(decoded[:, :, ::-1])


def embed_all(emb: Embedder, n: int, make: Callable[[int], np.ndarray], crop: bool) -> np.ndarray:
    """Embed n images made on the fly, CHUNK at a time, whole or cropped to their foreground."""
    out = []
    for start in range(0, n, CHUNK):
        batch = []
        for i in range(start, min(n, start + CHUNK)):
            img = make(i)
            box = foreground_box(img) if crop else None
            batch.append(emb.preprocess(img, box))
        out.append(emb.run(np.stack(batch)))
    return np.concatenate(out)


def top_labels(queries: np.ndarray, gallery: np.ndarray, gallery_labels: np.ndarray, k: int) -> np.ndarray:
    """Labels of the k nearest gallery vectors (cosine = dot of unit vectors), [n, k], best first."""
    result = np.empty((len(queries), k), dtype=np.int64)
    for s in range(0, len(queries), 1024):
        sims = queries[s : s + 1024] @ gallery.T
        part = np.argpartition(-sims, k, axis=1)[:, :k]
        order = np.argsort(-np.take_along_axis(sims, part, axis=1), axis=1)
        result[s : s + 1024] = gallery_labels[np.take_along_axis(part, order, axis=1)]
    return result


def metrics(top: np.ndarray, labels: np.ndarray) -> dict[str, float]:
    """R@1/5/10 and P@10 of queries whose top labels are `top` [n, 10] and own labels `labels` [n]."""
    return shown_as(matrix_means(top == labels[:, None], max(KS)))


def select(n_train: int, n_test: int, gallery_limit: int, n_queries: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """The gallery (train split) and query (test split) indices of a run: the same for every model."""
    rng = np.random.default_rng(seed)
    g_idx = (
        np.arange(n_train)
        if gallery_limit <= 0
        else np.sort(rng.choice(n_train, min(gallery_limit, n_train), replace=False))
    )
    q_idx = np.arange(n_test) if n_queries <= 0 else np.sort(rng.choice(n_test, min(n_queries, n_test), replace=False))
    return g_idx, q_idx


def vectors(
    emb: Embedder, gallery_limit: int, n_queries: int, seed: int, cache: Path | None = None
) -> tuple[np.ndarray, np.ndarray, dict[str, np.ndarray], np.ndarray]:
    """(gallery vectors, gallery labels, query vectors per style, query labels) of one model."""
    train_x, train_y = load_fmnist("train")
    test_x, test_y = load_fmnist("test")
    g_idx, q_idx = select(len(train_x), len(test_x), gallery_limit, n_queries, seed)
    size = emb.input_size

    t0 = time.time()
    cache_file = cache / f"gallery-{emb.sha256[:12]}-{len(g_idx)}-{seed}.npy" if cache else None
    if cache_file is not None and cache_file.exists():
        gallery = np.load(cache_file)
    else:
        gallery = embed_all(emb, len(g_idx), lambda i: render_catalog(train_x[g_idx[i]], size), crop=False)
        if cache_file is not None:
            cache_file.parent.mkdir(parents=True, exist_ok=True)
            np.save(cache_file, gallery)
    print(f"gallery: {len(g_idx)} images in {time.time() - t0:.0f}s", file=sys.stderr, flush=True)

    # Photos are made once per query with their own seeded generator, so every style and every
    # run sees the same photos; shoppers' photos come as JPEG.
    photos = [
        jpeg_roundtrip(render_shop_photo(test_x[i], np.random.default_rng([seed, int(i)]), 224), 85) for i in q_idx
    ]
    makers: dict[str, tuple[Callable[[int], np.ndarray], bool]] = {
        "catalog": (lambda i: render_catalog(test_x[q_idx[i]], size), False),
        "catalog_crop": (lambda i: render_catalog(test_x[q_idx[i]], size), True),
        "shop": (lambda i: photos[i], False),
        "shop_crop": (lambda i: photos[i], True),
    }
    queries = {style: embed_all(emb, len(q_idx), *makers[style]) for style in STYLES}
    return gallery, train_y[g_idx], queries, test_y[q_idx]


def score(
    gallery: np.ndarray, g_labels: np.ndarray, queries: dict[str, np.ndarray], q_labels: np.ndarray
) -> dict[str, object]:
    """Metrics per query style, overall and per category (printed as they come)."""
    results: dict[str, object] = {}
    for style, q in queries.items():
        top = top_labels(q, gallery, g_labels, max(KS))
        overall = metrics(top, q_labels)
        per_cat = {
            CLASS_NAMES[c]: metrics(top[q_labels == c], q_labels[q_labels == c])
            for c in range(len(CLASS_NAMES))
            if np.any(q_labels == c)
        }
        results[style] = {"overall": overall, "per_category": per_cat}
        print(f"{style:13s} " + " ".join(f"{k}={v:.4f}" for k, v in overall.items()), flush=True)
        for name, m in per_cat.items():
            print(f"    {name:12s} " + " ".join(f"{k}={v:.3f}" for k, v in m.items()), flush=True)
    return results


def evaluate(
    model_dir: Path, gallery_limit: int, n_queries: int, seed: int, threads: int, cache: Path | None
) -> dict[str, object]:
    emb = Embedder(model_dir, intra_threads=threads, batch_size=CHUNK)
    gallery, g_labels, queries, q_labels = vectors(emb, gallery_limit, n_queries, seed, cache)
    return {
        "model": emb.name,
        "version": emb.version,
        "sha256": emb.sha256,
        "gallery": int(len(gallery)),
        "queries": int(len(q_labels)),
        "seed": seed,
        "styles": score(gallery, g_labels, queries, q_labels),
    }


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", type=Path, default=Path(__file__).resolve().parent / "fmnist-lite0")
    ap.add_argument("--gallery-limit", type=int, default=0, help="random subset of the train split (0 = all)")
    ap.add_argument("--queries", type=int, default=0, help="random subset of the test split (0 = all)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--cache", type=Path, default=None, help="folder to cache gallery vectors in")
    args = ap.parse_args()
    report = evaluate(args.model, args.gallery_limit, args.queries, args.seed, args.threads, args.cache)
    print(json.dumps(report))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
