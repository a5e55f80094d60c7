"""Validation of an embedder (any ONNX folder, through the serving `Embedder`) on a catalog's held-out split.

Gallery: every catalog image, whole, as `imgsearch index build` embeds it. Queries: one shop-style photo
(`augment.query_photo`, the same in every run) of each held-out item, cropped to its foreground as the gateway
does when no detector box fits. Category metrics leave the query's own item out of the gallery (R@k: the
category is among the top k; P@10: share of the top 10 in it); product metrics keep it in (R@k: an image of
the same product is among the top k) — the shopper's question "where is this product".
"""

from __future__ import annotations

import numpy as np

from embedder import Embedder
from embedder.training.augment import query_photo
from embedder.training.catalog_data import TrainSet
from embedder.transforms import chw_batch
from imgcore.retrieval import KS, matrix_means, shown_as


def _embed(emb: Embedder, images: list[np.ndarray], crop: bool) -> np.ndarray:
    out = []
    for s in range(0, len(images), 64):
        chunk = images[s : s + 64]
        out.append(emb.run(chw_batch([emb.whole_image_pixels(im, crop)[0] for im in chunk])))
    return np.concatenate(out) if out else np.zeros((0, emb.dim), np.float32)


def _ranked(queries: np.ndarray, gallery: np.ndarray, exclude: np.ndarray | None, k: int) -> np.ndarray:
    """Gallery rows of the k nearest (cosine) of each query, best first; `exclude[i]` is left out for query i."""
    sims = queries @ gallery.T
    if exclude is not None:
        sims[np.arange(len(queries)), exclude] = -np.inf
    part = np.argpartition(-sims, k, axis=1)[:, :k]
    order = np.argsort(-np.take_along_axis(sims, part, axis=1), axis=1)
    return np.take_along_axis(part, order, axis=1)


def validate(emb: Embedder, data: TrainSet, seed: int = 0) -> dict[str, float | int]:
    """Category R@1/R@5/R@10/P@10 and product R@1/R@5 of held-out shop-style queries against the catalog."""
    q_rows = np.flatnonzero(data.val)
    if len(q_rows) == 0 or len(data.images) <= max(KS):
        raise ValueError("validation needs held-out items and more than 10 catalog images")
    gallery = _embed(emb, list(data.images), crop=True)  # as the rebuild embeds catalog images
    queries = _embed(emb, [query_photo(data.images[i], seed, int(i)) for i in q_rows], crop=True)
    top = _ranked(queries, gallery, q_rows, max(KS))
    category = shown_as(matrix_means(data.category[top] == data.category[q_rows][:, None], max(KS)))
    same = data.group[_ranked(queries, gallery, None, 5)] == data.group[q_rows][:, None]
    product = matrix_means(same, 5, recall_at=(1, 5))
    return category | {
        "product_R@1": product["r_at_1"],
        "product_R@5": product["r_at_5"],
        "queries": int(len(q_rows)),
        "gallery": int(len(gallery)),
    }
