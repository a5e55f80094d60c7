"""Item queries of a catalog: for sampled items, a shopper's photo of each and its catalog image as it is.

`imgsearch eval --catalog` and bench/item_quality.py measure with them whether a search finds *the item*, not
only its kind (ann_index.evaluate: item R@1/R@10 for the photos, self-match@1 for the catalog images). The
photo of a Fashion-MNIST demo item is rendered from its 28 x 28 original (`imgcore.fmnist.render_shop_photo`,
as models/evaluate.py renders its queries); any other item's is the trainer's own shopper view of its catalog
image (`augment.shop_photo`). Both are JPEG q85 at 2x the model's usual side, and the same in every run of a
seed. What counts as finding the item: the item, the other rows of its product (`attrs.product_id`) and rows
with the very same image bytes. numpy/cv2 only.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections import defaultdict
from collections.abc import Callable
from pathlib import Path

import cv2
import numpy as np

from ann_index.catalog.load import ReadOptions, load_catalog
from ann_index.catalog.rows import CatalogItem
from embedder.training.augment import shop_photo
from embedder.training.catalog_data import group_of
from embedder.transforms import crop_square, resize_square
from imgcore.fmnist import load_fmnist, render_shop_photo
from imgcore.image import decode_image
from imgcore.storage import resolve_uri
from imgcore.uri_fetcher import UriFetcher

DEMO_ID = re.compile(r"^fmnist-(train|test)-(\d{5})(?:-shop)?$")  # "-shop": a product's second image
PHOTO_SIDE = 224
JPEG_QUALITY = 85

Photographer = Callable[[CatalogItem, bytes, np.random.Generator], np.ndarray]


def demo_photographer(items: list[CatalogItem]) -> Photographer | None:
    """Shop photos from the Fashion-MNIST originals when every item is a demo item and the dataset is here."""
    matches = [DEMO_ID.match(it.item_id) for it in items]
    if not items or not all(matches):
        return None
    try:
        splits = {split: load_fmnist(split)[0] for split in {m.group(1) for m in matches if m}}  # type: ignore[arg-type]
    except (FileNotFoundError, ValueError):
        return None

    def photo(item: CatalogItem, _: bytes, rng: np.random.Generator) -> np.ndarray:
        m = DEMO_ID.match(item.item_id)
        assert m is not None
        return render_shop_photo(splits[m.group(1)][int(m.group(2))], rng, PHOTO_SIDE)

    return photo


def catalog_photo(item: CatalogItem, data: bytes, rng: np.random.Generator) -> np.ndarray:
    """The trainer's shopper view of a catalog image (any catalog)."""
    image = decode_image(data)
    square = crop_square(image)
    return shop_photo(resize_square(square, min(PHOTO_SIDE // 2, square.shape[0])), rng, PHOTO_SIDE)


def _matches(items: list[CatalogItem], data: dict[str, bytes]) -> dict[str, set[str]]:
    """Per item id, the ids that count as finding it: itself, its product's rows, rows with the same bytes."""
    by_key: dict[str, set[str]] = defaultdict(set)
    for it in items:
        by_key[group_of(it)].add(it.item_id)
        by_key["sha256:" + hashlib.sha256(data[it.item_id]).hexdigest()].add(it.item_id)
    out: dict[str, set[str]] = defaultdict(set)
    for ids in by_key.values():
        for item_id in ids:
            out[item_id] |= ids
    return out


def write_item_queries(
    catalog_uri: str, out_dir: Path, n: int, *, seed: int = 0, opts: ReadOptions | None = None
) -> Path:
    """Sample `n` items of the catalog, write `out_dir/catalog.jsonl` (query rows with `attrs.expect` and
    `attrs.style`) and their images; return the query file's path."""
    opts = opts or ReadOptions(progress=False)
    loaded = load_catalog(catalog_uri, opts)
    items = loaded.catalog.items
    with UriFetcher(s3_endpoint_url=opts.s3_endpoint_url) as fetcher:
        data = {
            it.item_id: fetcher.fetch(resolve_uri(loaded.base_uri, it.image, allow_absolute=opts.allow_absolute_images))
            for it in items
        }
    matches = _matches(items, data)
    rng = np.random.default_rng(seed)
    sample = sorted(rng.choice(len(items), size=min(n, len(items)), replace=False).tolist())
    photographer = demo_photographer([items[i] for i in sample]) or catalog_photo
    images = Path(out_dir) / "images"
    images.mkdir(parents=True, exist_ok=True)
    rows = []
    for pos in sample:
        item = items[pos]
        photo = photographer(item, data[item.item_id], np.random.default_rng([seed, pos]))
        ok, buf = cv2.imencode(".jpg", photo[:, :, ::-1], [cv2.IMWRITE_JPEG_QUALITY, JPEG_QUALITY])
        if not ok:
            raise OSError(f"JPEG encoding failed for the photo of {item.item_id}")
        (images / f"{pos:06d}-shop.jpg").write_bytes(buf.tobytes())
        own = f"{pos:06d}-self{Path(item.image).suffix.lower() or '.img'}"
        (images / own).write_bytes(data[item.item_id])
        expect = sorted(matches[item.item_id])
        for style, name in (("shop", f"{pos:06d}-shop.jpg"), ("self", own)):
            attrs = {"expect": expect, "style": style, "of": item.item_id}
            title = f"{style} query of {item.item_id}"
            rows.append({"item_id": f"{pos:06d}-{style}", "image": f"images/{name}", "category": item.category,
                         "title": title, "attrs": attrs})  # fmt: skip
    path = Path(out_dir) / "catalog.jsonl"
    path.write_text("".join(json.dumps(row) + "\n" for row in rows))
    return path
