"""Near-duplicate listings (issue 28): exact pairs of different products, from the rebuild and from the CLI."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import cv2
import numpy as np
import pytest

import ann_index.version.duplicates as duplicates
from ann_index.build.rebuild import RebuildOptions, rebuild
from ann_index.catalog.demo import write_fmnist_catalog
from ann_index.items import IndexItem
from ann_index.version.duplicates import REPORT_NAME, find_duplicates, print_matrix
from tests.ann_index.fakes import FakeEmbedder
from tests.helpers.cli import imgsearch_cmd

OPTS = RebuildOptions(progress=False, n_trees=8, gate_queries=100, duplicates=True)


def _item(n: int, product: str | None = None) -> IndexItem:
    return IndexItem(f"i{n}", "c", "t", "file:///x.png", {"product_id": product} if product else {})


def _picture(rng: np.random.Generator) -> np.ndarray:
    """A dark blob of random shape on white: an item on a plain background."""
    image = np.full((96, 96, 3), 255, np.uint8)
    for _ in range(6):
        centre = (int(rng.integers(30, 66)), int(rng.integers(30, 66)))
        axes = (int(rng.integers(8, 26)), int(rng.integers(8, 26)))
        cv2.ellipse(
            image, centre, axes, float(rng.uniform(0, 180)), 0, 360, tuple(int(v) for v in rng.integers(0, 160, 3)), -1
        )
    return image


def _encoded(image: np.ndarray, ext: str = ".png", *params: int) -> bytes:
    ok, buf = cv2.imencode(ext, image, list(params))
    assert ok
    return buf.tobytes()


def test_pairs_are_near_identical_pictures_of_different_products_only(monkeypatch: pytest.MonkeyPatch) -> None:
    rng = np.random.default_rng(1)
    pictures = [_picture(rng) for _ in range(40)]
    thumbs = [_encoded(p) for p in pictures]
    thumbs.append(_encoded(pictures[3], ".jpg", cv2.IMWRITE_JPEG_QUALITY, 60))  # 40: a re-encoded copy, new product
    thumbs.append(_encoded(cv2.resize(pictures[3], (150, 150))))  # 41: resized, but another shot of product P
    tinted = np.clip(pictures[5].astype(np.float32) * (0.9, 1.0, 0.85) + 10, 0, 255).astype(np.uint8)
    thumbs.append(_encoded(tinted))  # 42: a tinted copy of 5
    thumbs.append(b"not an image")  # 43: no fingerprint, no pair
    items = [_item(n, "P" if n in (3, 41) else None) for n in range(len(thumbs))]
    prints = print_matrix(thumbs)
    pairs = find_duplicates(prints, items)
    assert {(p.a, p.b) for p in pairs} == {("i3", "i40"), ("i40", "i41"), ("i42", "i5")}
    assert all(0.985 <= p.score <= 1.0 + 1e-5 for p in pairs)
    monkeypatch.setattr(duplicates, "BLOCK_SCORES", 7 * len(thumbs))  # blocks of 7 rows: the same pairs
    blocked = find_duplicates(prints, items)
    assert [(p.a, p.b) for p in blocked] == [(p.a, p.b) for p in pairs]
    assert np.allclose([p.score for p in blocked], [p.score for p in pairs], atol=1e-5)


def _catalog_with_a_copy(root: Path) -> Path:
    """150 demo items plus a re-encoded JPEG copy of item 5 listed as a product of its own."""
    catalog = write_fmnist_catalog(root / "shop", limit=150)
    source = json.loads(catalog.read_text().splitlines()[5])
    image = cv2.imread(str(catalog.parent / source["image"]))
    ok, jpeg = cv2.imencode(".jpg", cv2.resize(image, (100, 100)), [cv2.IMWRITE_JPEG_QUALITY, 80])
    assert ok
    (catalog.parent / "images" / "copy.jpg").write_bytes(jpeg.tobytes())
    copy = {**source, "item_id": "copy-of-5", "image": "images/copy.jpg", "attrs": {"product_id": "reseller-1"}}
    with catalog.open("a") as f:
        f.write(json.dumps(copy) + "\n")
    return catalog


@pytest.mark.parametrize("partitions", [1, 3])
def test_rebuild_report_and_cli_list_the_same_injected_copy(tmp_path: Path, partitions: int) -> None:
    catalog = _catalog_with_a_copy(tmp_path)
    store = tmp_path / "store"
    opts = RebuildOptions(**{**OPTS.__dict__, "partitions": partitions})
    manifest = rebuild(str(catalog), store.as_uri(), FakeEmbedder(), opts)
    report = (store / "versions" / manifest["version"] / REPORT_NAME).read_text()
    rows = [json.loads(line) for line in report.splitlines()]
    assert {"a": "copy-of-5", "b": "fmnist-train-00005"} in [{"a": r["a"], "b": r["b"]} for r in rows]
    assert manifest["duplicates"]["pairs"] == len(rows) and all(r["score"] >= 0.985 for r in rows)
    out = tmp_path / "dups.jsonl"
    run = subprocess.run(
        imgsearch_cmd("index", "duplicates", "--index-uri", str(store), "--out", str(out)),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert run.returncode == 0, run.stderr[-2000:]
    listed = [json.loads(line) for line in out.read_text().splitlines()]
    assert {(r["a"], r["b"]) for r in listed} == {(r["a"], r["b"]) for r in rows}
    assert f"{len(rows)} near-duplicate pair(s) of 151 images" in run.stderr
    bad = subprocess.run(
        imgsearch_cmd("index", "duplicates", "--index-uri", str(store), "--threshold", "2"),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert bad.returncode == 2 and "threshold must be a cosine" in bad.stderr
