"""A demo catalog from Fashion-MNIST: PNG product shots (dark item on white) plus catalog.jsonl."""

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
from imgcore.fmnist import CLASS_NAMES, load_fmnist, render_catalog

CATALOG_NAME = "catalog.jsonl"
IMAGE_SIZE = 112
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


def fake_attrs(split: str, index: int, label: int) -> dict[str, Any]:
    """Deterministic, plausible shop attributes: the same item always gets the same price and brand."""
    h = int.from_bytes(hashlib.sha256(f"{split}:{index}".encode()).digest()[:8], "big")
    return {
        "brand": BRANDS[h % len(BRANDS)],
        "price": 990 + 100 * ((h >> 8) % 290),  # 990 .. 29,890
        "currency": "JPY",
        "label": int(label),
    }


def _write_png(path: Path, img28: np.ndarray) -> None:
    grey = render_catalog(img28, size=IMAGE_SIZE)[:, :, 0]  # the three channels are equal: store one
    ok, buf = cv2.imencode(".png", grey)  # cv2 releases the GIL, so threads use both cores
    if not ok:
        raise OSError(f"PNG encoding failed for {path}")
    path.write_bytes(buf.tobytes())


def write_fmnist_catalog(
    out_dir: Path, split: Literal["train", "test"] = "train", limit: int | None = None, workers: int | None = None
) -> Path:
    """Write `out_dir/images/*.png` and `out_dir/catalog.jsonl`; return the catalog path.

    The catalog file is written last and renamed into place, so it never names an image that is
    not on disk yet.
    """
    images, labels = load_fmnist(split)
    count = len(images) if limit is None else max(0, min(limit, len(images)))
    out_dir = Path(out_dir)
    img_dir = out_dir / "images"
    img_dir.mkdir(parents=True, exist_ok=True)
    names = [f"{item_id(split, i)}.png" for i in range(count)]
    with ThreadPoolExecutor(max_workers=workers or min(8, (os.cpu_count() or 1) * 2)) as pool:
        for _ in pool.map(lambda i: _write_png(img_dir / names[i], images[i]), range(count), chunksize=256):
            pass
    lines = []
    for i in range(count):
        label = int(labels[i])
        row = {
            "item_id": item_id(split, i),
            "image": f"images/{names[i]}",
            "category": CLASS_NAMES[label],
            "title": f"{CLASS_NAMES[label]} #{i:05d}",
            "attrs": fake_attrs(split, i, label),
        }
        lines.append(json.dumps(row, ensure_ascii=False))
    write_kinds(out_dir)
    catalog = out_dir / CATALOG_NAME
    tmp = out_dir / f".{CATALOG_NAME}.tmp"
    tmp.write_text("\n".join(lines) + ("\n" if lines else ""), encoding="utf-8")
    os.replace(tmp, catalog)
    return catalog


def write_kinds(out_dir: Path) -> Path:
    """The demo catalog's kinds.json (item kinds -> Fashion-MNIST categories), beside its catalog file."""
    path = Path(out_dir) / KINDS_NAME
    path.write_text(json.dumps({"kinds": FMNIST_KINDS}, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    return path
