"""Change objects and `items apply`: validation as the rebuild's, all-or-nothing, checksummed, immutable
(concurrent appliers: tests/imgcore/test_put_new.py)."""

from __future__ import annotations

import json
import shutil
import sqlite3
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from ann_index.build.rebuild import RebuildOptions, rebuild
from ann_index.catalog.demo import write_fmnist_catalog
from ann_index.changes.apply import ChangesRefused, apply_changes
from ann_index.changes.file import parse_changes
from ann_index.version.changes import (
    BadChange,
    ChangeBatch,
    Delete,
    Upsert,
    changes_after,
    decode_batch,
    encode_batch,
    read_batch,
    write_batch,
)
from ann_index.version.publish import read_current
from imgcore.storage import open_store
from tests.ann_index.fakes import FakeEmbedder
from tests.conftest import LocalHttpServer

OPTS = RebuildOptions(progress=False, n_trees=8, gate_queries=100)
SHA = FakeEmbedder().sha256


def _upsert(item_id: str, seed: int = 0, category: str = "cat0") -> Upsert:
    vec = np.random.default_rng(seed).normal(size=64).astype(np.float32)
    return Upsert(
        item_id, category, f"title {item_id}", f"file:///img/{item_id}.png", {"n": seed}, vec / np.linalg.norm(vec)
    )


@pytest.fixture(scope="module")
def shop(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """260 FMNIST items: the first 200 are the catalog; the rest can be upserted."""
    catalog = write_fmnist_catalog(tmp_path_factory.mktemp("cat") / "shop", limit=260)
    lines = catalog.read_text().splitlines()
    (catalog.parent / "snapshot.jsonl").write_text("\n".join(lines[:200]) + "\n")
    (catalog.parent / "extra.jsonl").write_text("\n".join(lines[200:]) + "\n")
    return catalog.parent


@pytest.fixture(scope="module")
def published(shop: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("idx") / "store"
    rebuild(str(shop / "snapshot.jsonl"), out.as_uri(), FakeEmbedder(), OPTS)
    return out


@pytest.fixture
def store(published: Path, tmp_path: Path) -> Path:
    return Path(shutil.copytree(published, tmp_path / "store"))


def _changes(shop: Path, name: str, rows: list[dict[str, object]]) -> Path:
    path = shop / name
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def _extra_rows(shop: Path, n: int) -> list[dict[str, object]]:
    return [{"op": "upsert", **json.loads(line)} for line in (shop / "extra.jsonl").read_text().splitlines()[:n]]


def test_change_file_rows_are_held_to_the_catalog_rules_with_line_numbers() -> None:
    text = "\n".join(
        [
            json.dumps({"op": "upsert", "item_id": "a", "image": "a.png", "category": "c", "title": "t"}),
            json.dumps({"op": "upsert", "item_id": "b", "image": "b.png", "category": "c"}),
            json.dumps({"op": "delete"}),
            json.dumps({"op": "rename", "item_id": "c"}),
            json.dumps({"op": "delete", "item_id": "a"}),
            "",
            json.dumps({"op": "delete", "item_id": "z"}),
        ]
    )
    parsed = parse_changes(text)
    assert [u.item_id for u in parsed.upserts] == ["a"] and parsed.deletes == [(7, "z")] and parsed.rows == 6
    problems = {p.line: p.message for p in parsed.problems}
    assert "missing field(s): title" in problems[2] and "item_id" in problems[3] and "rename" in problems[4]
    assert "twice in one batch (first on line 1)" in problems[5]


def test_encoded_batch_round_trips_and_any_flipped_byte_is_refused() -> None:
    batch = ChangeBatch("v1", 3, 1000.5, "v1/3", SHA, 64, [_upsert("a", 1), Delete("b")])
    data = encode_batch(batch)
    back = decode_batch(data, "x", version="v1", seq=3, embedder_sha256=SHA, dim=64)
    assert back.rows[1] == Delete("b") and back.written_at == 1000.5 and back.origin == "v1/3"
    up = back.rows[0]
    assert isinstance(up, Upsert) and np.array_equal(up.vector, batch.rows[0].vector)  # type: ignore[union-attr]
    for pos in (5, len(data) // 2, len(data) - 2):
        bad = bytearray(data)
        bad[pos] ^= 0x01
        with pytest.raises(BadChange):
            decode_batch(bytes(bad), "x", version="v1", seq=3, embedder_sha256=SHA, dim=64)
    with pytest.raises(BadChange, match="not v2/3"):
        decode_batch(data, "x", version="v2", seq=3, embedder_sha256=SHA, dim=64)  # another version's object
    with pytest.raises(BadChange, match="embedded by"):
        decode_batch(data, "x", version="v1", seq=3, embedder_sha256="0" * 64, dim=64)


def test_apply_embeds_upserts_and_writes_one_durable_batch(shop: Path, store: Path) -> None:
    rows = [*_extra_rows(shop, 3), {"op": "delete", "item_id": "fmnist-train-00007"}]
    applied = apply_changes(str(_changes(shop, "c1.jsonl", rows)), store.as_uri(), FakeEmbedder(), OPTS)
    version = read_current(open_store(store.as_uri()))
    assert (applied.version, applied.seq, applied.upserts, applied.deletes) == (version, 1, 3, 1)
    batch = read_batch(open_store(store.as_uri()), str(version), 1, embedder_sha256=SHA, dim=64)
    assert batch.rows[0] == Delete("fmnist-train-00007")
    first = batch.rows[1]
    assert isinstance(first, Upsert) and first.item_id == "fmnist-train-00200" and first.thumb
    assert first.image == (shop / "images" / "fmnist-train-00200.png").as_uri()  # resolved like a catalog's


def test_an_invalid_row_or_unreadable_image_refuses_the_whole_batch(shop: Path, store: Path) -> None:
    rows = [
        *_extra_rows(shop, 2),
        {"op": "upsert", "item_id": "x", "image": "../etc/passwd", "category": "c", "title": "t"},
    ]
    with pytest.raises(ChangesRefused, match="line 3"):
        apply_changes(str(_changes(shop, "bad1.jsonl", rows)), store.as_uri(), FakeEmbedder(), OPTS)
    rows[2] = {"op": "upsert", "item_id": "x", "image": "images/missing.png", "category": "c", "title": "t"}
    with pytest.raises(ChangesRefused, match=r"line 3 \(x\)"):
        apply_changes(str(_changes(shop, "bad2.jsonl", rows)), store.as_uri(), FakeEmbedder(), OPTS)
    rows[2] = {"op": "upsert", "item_id": 5}
    with pytest.raises(ChangesRefused, match="line 3"):
        apply_changes(str(_changes(shop, "bad3.jsonl", rows)), store.as_uri(), FakeEmbedder(), OPTS)
    assert not list((store / "versions").glob("*/changes/*"))  # nothing half written


def test_apply_refuses_an_embedder_the_served_version_is_not_bound_to(shop: Path, store: Path) -> None:
    other = FakeEmbedder(sha256="1" * 64)
    with pytest.raises(ChangesRefused, match="embedder"):
        apply_changes(str(_changes(shop, "c2.jsonl", _extra_rows(shop, 1))), store.as_uri(), other, OPTS)
    assert not list((store / "versions").glob("*/changes/*"))


def test_a_store_without_listing_finds_the_log_by_sequence_number(store: Path, http_server: LocalHttpServer) -> None:
    """An index served from an HTTP store (no listing) still follows its version's change log."""
    files = open_store(store.as_uri())
    version = read_current(files)
    assert version is not None
    for n in range(3):
        write_batch(files, version, [Delete(f"fmnist-train-{n:05d}")], embedder_sha256=SHA, dim=64)
    shutil.copytree(store, http_server.root / "store")
    served = open_store(http_server.url + "/store")
    assert not served.listable
    assert changes_after(served, version, 0) == changes_after(files, version, 0)
    assert [seq for seq, _ in changes_after(served, version, 1)] == [2, 3]
    assert changes_after(served, version, 3) == []
    batch = read_batch(served, version, 2, embedder_sha256=SHA, dim=64)
    assert [row.item_id for row in batch.rows] == ["fmnist-train-00001"]


class NoModel(FakeEmbedder):
    """The served version's embedder, but any model run fails the test: what an attribute-only change must not do."""

    def whole_image_pixels(self, image: np.ndarray, foreground: bool) -> tuple[np.ndarray, Any]:
        raise AssertionError("an attribute-only change preprocessed an image for the model")

    def run(self, batch: np.ndarray) -> np.ndarray:
        raise AssertionError("an attribute-only change ran the embedder")


def test_an_attribute_only_change_runs_no_model_with_the_rebuilds_cache(shop: Path, tmp_path: Path) -> None:
    cache, store = tmp_path / "vectors.sqlite", tmp_path / "store"
    cached = RebuildOptions(**{**OPTS.__dict__, "embedding_cache": cache})
    rebuild(str(shop / "snapshot.jsonl"), store.as_uri(), FakeEmbedder(), cached)
    row = json.loads((shop / "snapshot.jsonl").read_text().splitlines()[10])
    price = {"op": "upsert", **row, "attrs": {**row.get("attrs", {}), "price": 4200, "in_stock": False}}
    applied = apply_changes(str(_changes(shop, "price.jsonl", [price])), store.as_uri(), NoModel(), cached)
    assert (applied.upserts, applied.reused, applied.to_dict()["reused_vectors"]) == (1, 1, 1)
    files = open_store(store.as_uri())
    version = str(read_current(files))
    (upsert,) = read_batch(files, version, applied.seq, embedder_sha256=SHA, dim=64).rows
    assert isinstance(upsert, Upsert) and upsert.attrs["price"] == 4200 and upsert.attrs["in_stock"] is False
    with sqlite3.connect(store / "versions" / version / "meta.sqlite") as meta:
        (aid,) = meta.execute("SELECT aid FROM items WHERE item_id = ?", (row["item_id"],)).fetchone()
    served = np.load(store / "versions" / version / "vectors.npy")[aid]  # annoy-id order
    assert np.allclose(upsert.vector, served, atol=1e-6) and upsert.thumb
    other = {**price, "image": json.loads((shop / "extra.jsonl").read_text().splitlines()[0])["image"]}
    with pytest.raises(AssertionError, match="an attribute-only change"):  # a new image is embedded, so NoModel fails
        apply_changes(str(_changes(shop, "image.jsonl", [other])), store.as_uri(), NoModel(), cached)
