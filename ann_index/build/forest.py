"""Build the annoy forest (global + one per category), the metadata store and the vector file.

Items are laid out grouped by category (stable within a category), so each category owns a
contiguous range of annoy ids: a per-category index maps back to global ids with one offset and no
lookup table. Every index is built single-threaded with a fixed seed, because annoy's multi-threaded
build assigns node ids in thread-completion order and would make two builds differ; parallelism comes
from building the separate indexes side by side (annoy releases the GIL while building).
"""

from __future__ import annotations

import json
import sqlite3
from collections import Counter
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from annoy import AnnoyIndex

from ann_index.files import GLOBAL_INDEX_NAME, META_NAME, METRIC, VECTORS_NAME, category_files, l2_normalise
from ann_index.items import CategoryInfo, IndexItem
from ann_index.thumbs import THUMBS_NAME, ThumbPack, write_thumbs
from imgcore.card import sha256_file

DEFAULT_N_TREES = 32
DEFAULT_SEED = 42


@dataclass(frozen=True)
class BuildResult:
    out_dir: Path
    dim: int
    count: int
    n_trees: int
    seed: int
    categories: dict[str, CategoryInfo]
    files: dict[str, str]  # file name -> sha256
    order: np.ndarray  # order[aid] = position of that item in the caller's input


def _build_one(vectors: np.ndarray, path: Path, n_trees: int, seed: int) -> None:
    index = AnnoyIndex(vectors.shape[1], METRIC)
    index.set_seed(seed)
    for i, vec in enumerate(vectors):
        # A list, not an ndarray: annoy reads sequences element by element through the C API.
        index.add_item(i, vec.tolist())
    index.build(n_trees, n_jobs=1)
    index.save(str(path))
    index.unload()


def _write_meta(path: Path, items: Sequence[IndexItem], thumbs: list[tuple[int, int, str]] | None) -> None:
    path.unlink(missing_ok=True)
    con = sqlite3.connect(path)
    try:
        # No journal: the file is built once into a private folder and never updated in place.
        con.execute("PRAGMA journal_mode=OFF")
        con.execute("PRAGMA synchronous=OFF")
        con.execute(
            "CREATE TABLE items (aid INTEGER PRIMARY KEY, item_id TEXT NOT NULL,"
            " category TEXT NOT NULL, title TEXT NOT NULL, image TEXT NOT NULL, attrs TEXT NOT NULL)"
        )
        # Not UNIQUE: the format allows several vectors (images) per item; the reader dedups.
        con.execute("CREATE INDEX items_item_id ON items (item_id)")
        con.executemany(
            "INSERT INTO items VALUES (?, ?, ?, ?, ?, ?)",
            (
                (
                    aid,
                    it.item_id,
                    it.category,
                    it.title,
                    it.image,
                    json.dumps(it.attrs, sort_keys=True, separators=(",", ":"), ensure_ascii=False),
                )
                for aid, it in enumerate(items)
            ),
        )
        if thumbs is not None:
            # Where each row's thumbnail lies in thumbs.bin (ann_index.thumbs).
            con.execute(
                "CREATE TABLE thumbs (aid INTEGER PRIMARY KEY, offset INTEGER NOT NULL,"
                " length INTEGER NOT NULL, media_type TEXT NOT NULL)"
            )
            con.executemany("INSERT INTO thumbs VALUES (?, ?, ?, ?)", ((aid, *span) for aid, span in enumerate(thumbs)))
        con.commit()
    finally:
        con.close()


def _check_inputs(vectors: np.ndarray, items: Sequence[IndexItem], n_trees: int, thumbs: ThumbPack | None) -> None:
    if len(items) == 0:
        raise ValueError("cannot build an index of zero items")
    if vectors.ndim != 2 or vectors.shape[0] != len(items):
        raise ValueError(f"{len(items)} items but vectors of shape {vectors.shape}")
    if n_trees < 1:
        raise ValueError("n_trees must be at least 1")
    if thumbs is not None and len(thumbs) != len(items):
        raise ValueError(f"{len(items)} items but {len(thumbs)} thumbnails")
    ids = [it.item_id for it in items]
    if len(set(ids)) != len(ids):
        raise ValueError("item_ids must be unique")


def _category_ranges(sorted_items: Sequence[IndexItem]) -> dict[str, CategoryInfo]:
    """Each category's contiguous range of annoy ids in items sorted by category, and its file name."""
    names = category_files(sorted({it.category for it in sorted_items}))
    categories: dict[str, CategoryInfo] = {}
    counts = Counter(it.category for it in sorted_items)
    start = 0
    for cat in sorted(names):  # same order as the sort of the items, so ranges are contiguous
        categories[cat] = CategoryInfo(count=counts[cat], offset=start, file=names[cat])
        start += counts[cat]
    return categories


def build_index(
    vectors: np.ndarray,
    items: Sequence[IndexItem],
    out_dir: Path,
    *,
    n_trees: int = DEFAULT_N_TREES,
    seed: int = DEFAULT_SEED,
    workers: int = 1,
    thumbs: ThumbPack | None = None,
) -> BuildResult:
    """Write index.ann, cat-<slug>.ann..., meta.sqlite, vectors.npy (and thumbs.bin) into `out_dir`.

    `thumbs`, when given, holds one thumbnail per item in the same order. Identical inputs and seed give
    byte-identical files.
    """
    _check_inputs(vectors, items, n_trees, thumbs)
    out_dir.mkdir(parents=True, exist_ok=True)

    order = np.array(sorted(range(len(items)), key=lambda i: (items[i].category, i)), dtype=np.int64)
    sorted_items = [items[i] for i in order]
    vecs = l2_normalise(vectors)[order]
    dim = int(vecs.shape[1])
    categories = _category_ranges(sorted_items)

    jobs: list[tuple[np.ndarray, Path]] = [(vecs, out_dir / GLOBAL_INDEX_NAME)]
    jobs += [(vecs[c.offset : c.offset + c.count], out_dir / c.file) for c in categories.values()]
    with ThreadPoolExecutor(max_workers=max(1, workers)) as pool:
        futures = [pool.submit(_build_one, v, p, n_trees, seed) for v, p in jobs]
        spans = write_thumbs(out_dir / THUMBS_NAME, thumbs, order.tolist()) if thumbs is not None else None
        _write_meta(out_dir / META_NAME, sorted_items, spans)
        np.save(out_dir / VECTORS_NAME, vecs)
        for fut in futures:
            fut.result()

    files = {p.name: sha256_file(p) for _, p in jobs}
    files[META_NAME] = sha256_file(out_dir / META_NAME)
    files[VECTORS_NAME] = sha256_file(out_dir / VECTORS_NAME)
    if thumbs is not None:
        files[THUMBS_NAME] = sha256_file(out_dir / THUMBS_NAME)
    return BuildResult(
        out_dir=out_dir,
        dim=dim,
        count=len(items),
        n_trees=n_trees,
        seed=seed,
        categories=categories,
        files=dict(sorted(files.items())),
        order=order,
    )
