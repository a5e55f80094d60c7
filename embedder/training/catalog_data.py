"""A catalog as training data: every usable row's image (squared, at the training size), its category, its
product group, and a held-out validation split by product. numpy/cv2 only: no torch here.

The catalog is read and validated by the rebuild job's own `load_catalog`, so a catalog the rebuild would
refuse is refused here with the same message. Rows of the same product carry the same `attrs.product_id`
(or `attrs.group_id`); a row without one is a product of its own.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import numpy as np
from tqdm import tqdm

from ann_index.catalog.load import ReadOptions, RebuildRefused, load_catalog
from ann_index.catalog.rows import CatalogItem
from embedder.transforms import crop_square, resize_square
from imgcore.errors import ImgSearchError
from imgcore.image import decode_image
from imgcore.storage import resolve_uri
from imgcore.uri_fetcher import UriFetcher

GROUP_KEYS = ("product_id", "group_id")
MIN_SIZE, MAX_SIZE = 64, 224  # the input sizes `size_for` chooses among


@dataclass
class TrainSet:
    """Everything training and validation need, row-aligned."""

    images: np.ndarray  # [N, S, S, 3] uint8: each catalog image padded to square and resized
    item_ids: list[str]
    categories: list[str]  # sorted category names; `category` indexes into it
    category: np.ndarray  # [N] int64
    group: np.ndarray  # [N] int64: product group ids (rows of one product share one)
    val: np.ndarray  # [N] bool: held out (whole products)
    sides: np.ndarray  # [N] int: each image's longer side as stored in the catalog
    catalog_uri: str
    catalog_sha256: str
    skipped: int

    @property
    def has_products(self) -> bool:
        """Whether some product has two or more images (then the product is the positive, not the category)."""
        return bool(len(self.group) and np.bincount(self.group).max() >= 2)


def group_of(item: CatalogItem) -> str:
    for key in GROUP_KEYS:
        value = item.attrs.get(key)
        if isinstance(value, str | int) and str(value):
            return f"{key}:{value}"
    return f"item:{item.item_id}"


def held_out(group: str, fraction: float) -> bool:
    """A stable, seedless split: the same product is held out in every run and every catalog version."""
    h = int.from_bytes(hashlib.sha256(group.encode()).digest()[:8], "big")
    return h / 2**64 < fraction


def _reader(
    base_uri: str, size: int, opts: ReadOptions, fetcher: UriFetcher
) -> Callable[[CatalogItem], tuple[np.ndarray, int] | None]:
    def read(item: CatalogItem) -> tuple[np.ndarray, int] | None:
        try:
            uri = resolve_uri(base_uri, item.image, allow_absolute=opts.allow_absolute_images)
            image = decode_image(fetcher.fetch(uri), opts.limits)
        except ImgSearchError:
            return None
        return resize_square(crop_square(image), size), max(image.shape[:2])

    return read


def load_train_set(catalog_uri: str, size: int, val_fraction: float, opts: ReadOptions, workers: int = 2) -> TrainSet:
    """Read, validate and decode a catalog (file://, s3://, a path). RebuildRefused as the rebuild job would."""
    loaded = load_catalog(catalog_uri, opts)
    items = loaded.catalog.items
    with (
        UriFetcher(s3_endpoint_url=opts.s3_endpoint_url) as fetcher,
        ThreadPoolExecutor(max_workers=max(1, workers)) as pool,
    ):
        read = _reader(loaded.base_uri, size, opts, fetcher)
        decoded = list(
            tqdm(pool.map(read, items), total=len(items), desc="read", unit="img", disable=not opts.progress)
        )
    keep = [i for i, img in enumerate(decoded) if img is not None]
    if len(items) - len(keep) > opts.max_fail_fraction * max(1, loaded.catalog.rows):
        raise RebuildRefused(f"{len(items) - len(keep)} of {len(items)} images could not be read")
    kept = [items[i] for i in keep]
    categories = sorted({it.category for it in kept})
    if len(categories) < 2:
        raise RebuildRefused("training needs at least two categories")
    groups = [group_of(it) for it in kept]
    group_ids = {g: n for n, g in enumerate(dict.fromkeys(groups))}
    return TrainSet(
        images=np.stack([got[0] for got in decoded if got is not None]),
        item_ids=[it.item_id for it in kept],
        categories=categories,
        category=np.asarray([categories.index(it.category) for it in kept], dtype=np.int64),
        group=np.asarray([group_ids[g] for g in groups], dtype=np.int64),
        val=np.asarray([held_out(g, val_fraction) for g in groups], dtype=bool),
        sides=np.asarray([got[1] for got in decoded if got is not None], dtype=np.int64),
        catalog_uri=loaded.uri,
        catalog_sha256=loaded.sha256,
        skipped=len(items) - len(keep) + len(loaded.catalog.errors),
    )


def product_classes(data: TrainSet) -> tuple[np.ndarray, int]:
    """Per row, the class of its product among training products with two or more images (else -1); in a
    catalog of single-image products, every training item is its own class: its shopper views are to land
    nearest to it, not only among its category (the category stays the other objective)."""
    labels = np.full(len(data.group), -1, dtype=np.int64)
    train_rows = np.flatnonzero(~data.val)
    if not data.has_products:
        labels[train_rows] = np.arange(len(train_rows))
        return labels, len(train_rows)
    groups, counts = np.unique(data.group[train_rows], return_counts=True)
    ids = {int(g): n for n, g in enumerate(groups[counts >= 2])}
    for r in train_rows:
        labels[r] = ids.get(int(data.group[r]), -1)
    return labels, len(ids)


def size_for(sides: np.ndarray) -> int:
    """The input size a catalog's images call for: their median longer side, up to a multiple of 16, within
    64..224 (the demo's 112 px images train at 112: 2.5x the images per second of 224, and no detail lost)."""
    median = float(np.median(sides)) if len(sides) else MAX_SIZE
    return int(min(MAX_SIZE, max(MIN_SIZE, 16 * math.ceil(median / 16))))
