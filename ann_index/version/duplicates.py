"""Near-duplicate listings (issue 28): pairs of near-identical pictures that belong to *different* products.

A shop's re-uploaded listing (the same photo re-encoded, resized, lightly cropped or tinted, under a new
product id) has nearly the same fingerprint (`imgcore.fingerprint`) as the original. The finder fingerprints
every item's thumbnail (the version's `thumbs.bin`, or the rebuild's thumbnails before it publishes), compares
every picture with every other one exactly (blocked matrix products, so no pair is missed) and keeps pairs at
or above `DUPLICATE_PRINT_SCORE` whose products differ: a product's own shots are not duplicates. Cost: a
decode per thumbnail, then n^2 * 256 * 5 multiply-adds (docs/benchmarks.md has the times); memory one block.

The report is JSON Lines `{"a": item_id, "b": item_id, "score": s}`, best pair first, ids in order in a pair.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ann_index.files import META_NAME
from ann_index.items import IndexItem
from ann_index.thumbs import THUMBS_NAME
from ann_index.version.partition_layout import is_partitioned
from ann_index.version.publish import published_manifest, sync_version
from imgcore.errors import InvalidInput
from imgcore.fingerprint import CROPS, DIM, DUPLICATE_PRINT_SCORE, encoded_fingerprints
from imgcore.index_wire import product_key
from imgcore.storage import ObjectStore

REPORT_NAME = "duplicates.jsonl"  # the rebuild's report, beside the version's manifest
BLOCK_SCORES = 1 << 23  # scores held at once per product (32 MiB of float32)


@dataclass(frozen=True)
class Pair:
    a: str
    b: str
    score: float

    def line(self) -> str:
        return json.dumps({"a": self.a, "b": self.b, "score": round(self.score, 6)}, ensure_ascii=False)


def print_matrix(thumbs: Sequence[bytes]) -> np.ndarray:
    """[n, len(CROPS), DIM] fingerprints of encoded thumbnails; a row that does not decode is all zeros (no pair)."""
    out = np.zeros((len(thumbs), len(CROPS), DIM), np.float32)
    for i, data in enumerate(thumbs):
        found = encoded_fingerprints(data)
        if found is not None:
            out[i] = found
    return out


def _pairs(prints: np.ndarray, products: Sequence[str], threshold: float) -> Iterator[tuple[int, int, float]]:
    n = len(prints)
    whole = np.ascontiguousarray(prints[:, 0])
    codes = np.unique(np.asarray(products, dtype=object), return_inverse=True)[1] if n else np.zeros(0, int)
    step = max(1, BLOCK_SCORES // max(n, 1))
    for start in range(0, n, step):
        stop = min(n, start + step)
        scores = whole[start:stop] @ whole[start:].T  # only j >= start: each pair once
        for v in range(1, prints.shape[1]):  # either side may be the cropped copy
            np.maximum(scores, prints[start:stop, v] @ whole[start:].T, out=scores)
            np.maximum(scores, whole[start:stop] @ prints[start:, v].T, out=scores)
        rows, cols = np.nonzero(scores >= threshold)
        for r, c in zip(rows.tolist(), cols.tolist(), strict=True):
            i, j = start + r, start + c
            if j > i and codes[i] != codes[j]:
                yield i, j, float(scores[r, c])


def find_duplicates(
    prints: np.ndarray, items: Sequence[IndexItem], threshold: float = DUPLICATE_PRINT_SCORE
) -> list[Pair]:
    """Near-duplicate pairs of different products among `items` (`prints` in the same order), best first."""
    if len(prints) != len(items):
        raise InvalidInput(f"{len(prints)} fingerprints for {len(items)} items")
    products = [product_key(it.item_id, it.attrs) for it in items]
    ids = [it.item_id for it in items]
    # Each pair names its ids in order, so a report does not depend on how the rows were laid out (partitions).
    found = [Pair(min(ids[i], ids[j]), max(ids[i], ids[j]), s) for i, j, s in _pairs(prints, products, threshold)]
    return sorted(found, key=lambda p: (-p.score, p.a, p.b))


def report_bytes(pairs: Sequence[Pair]) -> bytes:
    return "".join(p.line() + "\n" for p in pairs).encode("utf-8")


def version_rows(store: ObjectStore, version: str, work: Path) -> tuple[np.ndarray, list[IndexItem]]:
    """Fingerprints and items of every row of a published version (all partitions), fetched and verified into
    `work`; InvalidInput for a version built without thumbnails."""
    manifest = published_manifest(store, version)
    if is_partitioned(manifest):
        parts = manifest["parts"]
        folders = [sync_version(store, version, work, part=p["dir"], part_sha256=p["manifest_sha256"]) for p in parts]
    else:
        folders = [sync_version(store, version, work)]
    prints, items = [], []
    for folder in folders:
        thumbs, rows = _rows(folder)
        prints.append(print_matrix(thumbs))
        items.extend(rows)
    return np.concatenate(prints), items


def _rows(folder: Path) -> tuple[list[bytes], list[IndexItem]]:
    if not (folder / THUMBS_NAME).is_file():
        raise InvalidInput(f"index version {folder.name} has no thumbnails to fingerprint: rebuild it")
    db = sqlite3.connect((folder / META_NAME).resolve().as_uri() + "?mode=ro&immutable=1", uri=True)
    try:
        rows = db.execute(
            "SELECT item_id, category, title, image, attrs, offset, length FROM items JOIN thumbs USING (aid) "
            "ORDER BY aid"
        ).fetchall()
    finally:
        db.close()
    blob = (folder / THUMBS_NAME).read_bytes()
    thumbs = [blob[offset : offset + length] for *_, offset, length in rows]
    return thumbs, [IndexItem(i, c, t, img, json.loads(a)) for i, c, t, img, a, _, _ in rows]
