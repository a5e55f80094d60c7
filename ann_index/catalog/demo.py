"""A demo catalog from Fashion-MNIST: PNG product shots (dark item on white) plus catalog.jsonl.

Each Fashion-MNIST image is a product with a brand, a price and a stock flag. With `shop_photos=True` (the demo of
`imgsearch up`) every row names its product (`attrs.product_id`) and about one product in ten also gets a
shopper-style second image (a JPEG of the same item on a tinted, noisy background), so grouping by product and the
web page's filters have something to show. Without, rows carry no product id: each is a product of its own, and
training on such a catalog holds out the same items as before product ids existed.
"""

from __future__ import annotations

import hashlib
import json
import os
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, Literal

import cv2
import numpy as np

from ann_index.catalog.kinds import KINDS_NAME
from imgcore.fmnist import CLASS_NAMES, load_fmnist, render_catalog, render_shop_photo

CATALOG_NAME = "catalog.jsonl"
IMAGE_SIZE = 112
SHOP_SIZE = 224  # the side of a shopper's photo everywhere else (item_queries, models/evaluate.py)
SHOP_EVERY = 10  # one product in ten gets a second image: ~10 % more to embed on the first `imgsearch up`
SHOP_SUFFIX = "-shop"
IN_STOCK_PERCENT = 85
# Part of the cache keys of the demo indexes the tests and benches keep: bump it when the rows change.
DEMO_FORMAT = "products1"
# Which Fashion-MNIST categories each kind of detected item is searched among (the catalog's kinds.json).
FMNIST_KINDS = {
    "top": ["T-shirt/top", "Shirt", "Pullover", "Coat"],
    "bottom": ["Trouser", "Dress"],
    "footwear": ["Sneaker", "Sandal", "Ankle boot"],
    "handbag": ["Bag"],
    "backpack": ["Bag"],
    "suitcase": ["Bag"],
}
BRANDS = ("Kumo", "Aoi Works", "Hatch", "Northfold", "Sorano", "Lumen & Co", "Tessera", "Mori", "Outline", "Ferro")


def item_id(split: str, index: int) -> str:
    return f"fmnist-{split}-{index:05d}"


def _hash(split: str, index: int) -> int:
    return int.from_bytes(hashlib.sha256(f"{split}:{index}".encode()).digest()[:8], "big")


def fake_attrs(split: str, index: int, label: int, product: bool = False) -> dict[str, Any]:
    """Deterministic, plausible shop attributes: the same item always gets the same price, brand and stock;
    `product`: its product id too."""
    h = _hash(split, index)
    return {
        **({"product_id": item_id(split, index)} if product else {}),
        "brand": BRANDS[h % len(BRANDS)],
        "price": 990 + 100 * ((h >> 8) % 290),  # 990 .. 29,890
        "currency": "JPY",
        "in_stock": (h >> 24) % 100 < IN_STOCK_PERCENT,
        "label": int(label),
    }


def has_shop_photo(split: str, index: int) -> bool:
    """Whether the product gets a shopper's second image (by hash, so a --limit catalog is a prefix of the full)."""
    return (_hash(split, index) >> 32) % SHOP_EVERY == 0


def _write_png(path: Path, img28: np.ndarray) -> None:
    grey = render_catalog(img28, size=IMAGE_SIZE)[:, :, 0]  # the three channels are equal: store one
    ok, buf = cv2.imencode(".png", grey)  # cv2 releases the GIL, so threads use both cores
    if not ok:
        raise OSError(f"PNG encoding failed for {path}")
    path.write_bytes(buf.tobytes())


def _write_shop_jpeg(path: Path, img28: np.ndarray, split: str, index: int) -> None:
    rng = np.random.default_rng([_hash(split, index) & 0xFFFFFFFF, index])
    photo = render_shop_photo(img28, rng, SHOP_SIZE)
    ok, buf = cv2.imencode(".jpg", photo[:, :, ::-1], [cv2.IMWRITE_JPEG_QUALITY, 85])
    if not ok:
        raise OSError(f"JPEG encoding failed for {path}")
    path.write_bytes(buf.tobytes())


def _rows(split: str, index: int, label: int, shop: bool, products: bool) -> list[dict[str, Any]]:
    """The catalog rows of one product: its catalog image, then its shopper's photo when it has one."""
    name, attrs = CLASS_NAMES[label], fake_attrs(split, index, label, product=products)
    own = item_id(split, index)
    rows = [{"item_id": own, "image": f"images/{own}.png", "category": name, "title": f"{name} #{index:05d}",
             "attrs": attrs}]  # fmt: skip
    if shop:
        rows.append({"item_id": own + SHOP_SUFFIX, "image": f"images/{own}{SHOP_SUFFIX}.jpg", "category": name,
                     "title": f"{name} #{index:05d} (photo)", "attrs": attrs})  # fmt: skip
    return rows


def write_fmnist_catalog(
    out_dir: Path,
    split: Literal["train", "test"] = "train",
    limit: int | None = None,
    workers: int | None = None,
    shop_photos: bool = False,
) -> Path:
    """Write `out_dir/images/*` and `out_dir/catalog.jsonl` (`limit` products); return the catalog path.

    The catalog file is written last and renamed into place, so it never names an image that is
    not on disk yet.
    """
    images, labels = load_fmnist(split)
    count = len(images) if limit is None else max(0, min(limit, len(images)))
    out_dir = Path(out_dir)
    img_dir = out_dir / "images"
    img_dir.mkdir(parents=True, exist_ok=True)
    shop = [shop_photos and has_shop_photo(split, i) for i in range(count)]

    def write(i: int) -> None:
        _write_png(img_dir / f"{item_id(split, i)}.png", images[i])
        if shop[i]:
            _write_shop_jpeg(img_dir / f"{item_id(split, i)}{SHOP_SUFFIX}.jpg", images[i], split, i)

    with ThreadPoolExecutor(max_workers=workers or min(8, (os.cpu_count() or 1) * 2)) as pool:
        for _ in pool.map(write, range(count), chunksize=256):
            pass
    rows = (row for i in range(count) for row in _rows(split, i, int(labels[i]), shop[i], shop_photos))
    lines = [json.dumps(row, ensure_ascii=False) for row in rows]
    write_kinds(out_dir)
    catalog = out_dir / CATALOG_NAME
    tmp = out_dir / f".{CATALOG_NAME}.tmp"
    tmp.write_text("\n".join(lines) + ("\n" if lines else ""), encoding="utf-8")
    os.replace(tmp, catalog)
    return catalog


def is_current_demo(catalog: Path) -> bool:
    """Whether a demo catalog file has today's rows (products with stock), not one written before them."""
    try:
        with Path(catalog).open(encoding="utf-8") as fh:
            attrs = json.loads(fh.readline() or "{}").get("attrs") or {}
    except (OSError, ValueError):
        return False
    return "product_id" in attrs and "in_stock" in attrs


def write_kinds(out_dir: Path) -> Path:
    """The demo catalog's kinds.json (item kinds -> Fashion-MNIST categories), beside its catalog file."""
    path = Path(out_dir) / KINDS_NAME
    path.write_text(json.dumps({"kinds": FMNIST_KINDS}, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    return path
