"""Item-level quality of embedders on the Fashion-MNIST demo: does a shopper's photo of a catalog item find
*that item*, and does a catalog image find itself?

For each embedder (default: fmnist-lite0, its int8 twin, general-lite0; `--model DIR` adds trained ones):
- gallery: the first `--gallery` train-split items as catalog images (the demo catalog's pixels), embedded
  as the rebuild and the search path embed a whole image (`Embedder.whole_image_pixels`, foreground crop);
- item R@1 / R@10: `--queries` sampled gallery items as shopper photos (`imgcore.fmnist.render_shop_photo`,
  JPEG q85, the photos `imgsearch eval --catalog` writes for the demo), the item itself as the answer;
- self-match@1: every gallery image as the query, itself (or an identical image) first;
- category P@10 / R@1: `--queries` held-out test-split shopper photos against the gallery;
- ms per crop: batch 16, one thread, the models interleaved round by round (median).
Exact search (numpy), so annoy plays no part; `imgsearch eval --url` measures the served path.

    python bench/item_quality.py [--gallery 10000] [--queries 1000] [--model models/my-embedder]

The last line is JSON: {"models": {name: {item_r_at_1, item_r_at_10, self_match_at_1, p_at_10, r_at_1,
ms_per_crop}}, ...}.
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
from common import REPO, arg_parser, emit, machine, median, table  # noqa: I001

from embedder import Embedder  # noqa: E402
from embedder.training.augment import jpeg  # noqa: E402
from imgcore.fmnist import load_fmnist, render_catalog, render_shop_photo  # noqa: E402
from imgcore.pixels import chw_batch  # noqa: E402
from imgcore.retrieval import item_row, matrix_means, mean_rows  # noqa: E402

DEFAULT_MODELS = ("fmnist-lite0", "fmnist-lite0-int8", "general-lite0")
CHUNK = 64


def embed(emb: Embedder, images: list[np.ndarray]) -> np.ndarray:
    """Whole images through the search path's preprocessing (foreground crop), CHUNK at a time."""
    out = [
        emb.run(chw_batch([emb.whole_image_pixels(im, True)[0] for im in images[s : s + CHUNK]]))
        for s in range(0, len(images), CHUNK)
    ]
    return np.concatenate(out)


def top(queries: np.ndarray, gallery: np.ndarray, k: int) -> np.ndarray:
    """Gallery positions of the k nearest, [n, k], best first."""
    out = np.empty((len(queries), k), dtype=np.int64)
    for s in range(0, len(queries), 512):
        sims = queries[s : s + 512] @ gallery.T
        part = np.argpartition(-sims, k, axis=1)[:, :k]
        out[s : s + 512] = np.take_along_axis(part, np.argsort(-np.take_along_axis(sims, part, axis=1)), axis=1)
    return out


def ms_per_crop(models: dict[str, Embedder], rounds: int = 7) -> dict[str, float]:
    """Median ms per crop of a batch of 16, one thread; every model once per round, side by side."""
    times: dict[str, list[float]] = {name: [] for name in models}
    for _ in range(rounds):
        for name, emb in models.items():
            batch = np.full((16, 3, emb.input_size, emb.input_size), 127.0, np.float32)
            t0 = time.perf_counter()
            emb.run(batch)
            times[name].append((time.perf_counter() - t0) * 1e3 / 16)
    return {name: round(median(ts), 3) for name, ts in times.items()}


def evaluate(emb: Embedder, data: dict[str, np.ndarray], seed: int) -> dict[str, float]:
    gallery = embed(emb, [render_catalog(im, 112) for im in data["gallery"]])
    sample = data["sample"]
    photos = [
        jpeg(render_shop_photo(data["gallery"][i], np.random.default_rng([seed, int(i)]), 224), 85) for i in sample
    ]
    found = top(embed(emb, photos), gallery, 10)
    twins = data["twin_of"]  # identical catalog images count as the item
    item = mean_rows([item_row((twins[found[j]] == twins[i]).tolist()) for j, i in enumerate(sample)])
    own = top(gallery, gallery, 1)[:, 0]
    self_match = float(np.mean(twins[own] == twins))
    test_photos = [jpeg(render_shop_photo(im, np.random.default_rng([seed, 10**6 + j]), 224), 85)
                   for j, im in enumerate(data["test"])]  # fmt: skip
    labels = data["gallery_labels"][top(embed(emb, test_photos), gallery, 10)]
    category = matrix_means(labels == data["test_labels"][:, None], 10, recall_at=(1,))
    return {**item, "self_match_at_1": round(self_match, 4), **category}


def load_data(n_gallery: int, n_queries: int, seed: int) -> dict[str, np.ndarray]:
    train_x, train_y = load_fmnist("train")
    test_x, test_y = load_fmnist("test")
    gallery = train_x[:n_gallery]
    _, twin_of = np.unique(gallery.reshape(len(gallery), -1), axis=0, return_inverse=True)
    rng = np.random.default_rng(seed)
    test = np.sort(rng.choice(len(test_x), min(n_queries, len(test_x)), replace=False))
    return {
        "gallery": gallery,
        "gallery_labels": train_y[:n_gallery],
        "twin_of": twin_of.reshape(-1),
        "sample": np.sort(rng.choice(len(gallery), min(n_queries, len(gallery)), replace=False)),
        "test": test_x[test],
        "test_labels": test_y[test],
    }


def main() -> None:
    parser = arg_parser(__doc__)
    parser.add_argument("--gallery", type=int, default=10000, help="train-split catalog items (60000: all)")
    parser.add_argument("--queries", type=int, default=1000, help="shopper photos of items, and of test items")
    parser.add_argument("--model", action="append", default=[], type=Path, help="also this embedder folder")
    parser.add_argument("--only", action="append", default=[], help="of the default models, only these")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    dirs = {name: REPO / "models" / name for name in (args.only or DEFAULT_MODELS)}
    dirs.update({p.name: p for p in args.model})
    models = {name: Embedder(path, intra_threads=1, batch_size=16) for name, path in dirs.items()}
    data = load_data(args.gallery, args.queries, args.seed)
    results: dict[str, dict[str, float]] = {}
    for name, emb in models.items():
        t0 = time.monotonic()
        results[name] = evaluate(emb, data, args.seed)
        print(f"{name}: {time.monotonic() - t0:.0f}s", flush=True)
    for name, ms in ms_per_crop(models).items():
        results[name]["ms_per_crop"] = ms
    keys = ["item_r_at_1", "item_r_at_10", "self_match_at_1", "p_at_10", "r_at_1", "ms_per_crop"]
    print(table(["model", *keys], [[name, *(r[k] for k in keys)] for name, r in results.items()]))
    emit({"gallery": args.gallery, "queries": args.queries, "seed": args.seed, "models": results, **machine()})


if __name__ == "__main__":
    main()
