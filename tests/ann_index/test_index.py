"""Builder + IndexReader: exact neighbour order on hand-checkable data, determinism, round trips."""

from __future__ import annotations

import json
import math
import sqlite3
import threading
import time
from pathlib import Path

import numpy as np
import pytest

from ann_index.build.forest import build_index
from ann_index.items import IndexItem
from ann_index.serving.reader import IndexReader
from ann_index.version.manifest import read_manifest, write_manifest
from imgcore.card import sha256_file
from imgcore.errors import InvalidInput, ModelNotReady, NotFound
from tests.ann_index.fakes import clustered, items_for, make_version

# Six directions in the plane (degrees) with hand-checkable angular order; scales differ on purpose.
ANGLES = {"a": 0.0, "b": 10.0, "c": 30.0, "d": 60.0, "e": 120.0, "f": 180.0}
CATS = {"a": "Tops", "b": "Ankle boot", "c": "Tops", "d": "Ankle boot", "e": "Tops", "f": "Ankle boot"}


def _unit(deg: float, scale: float = 1.0) -> list[float]:
    return [scale * math.cos(math.radians(deg)), scale * math.sin(math.radians(deg))]


@pytest.fixture
def tiny(tmp_path: Path) -> Path:
    vectors = np.array([_unit(deg, scale=1.0 + i) for i, deg in enumerate(ANGLES.values())], dtype=np.float32)
    items = [IndexItem(k, CATS[k], f"title {k}", f"file:///img/{k}.png", {"k": k}) for k in ANGLES]
    make_version(tmp_path / "v", vectors, items, n_trees=4)
    return tmp_path / "v"


def test_tiny_index_returns_exact_neighbour_order_with_cosine_scores(tiny: Path) -> None:
    with IndexReader.open(tiny, embedder_sha256=None, dim=2) as reader:
        hits = reader.query(np.array([_unit(2.0)]), k=6)[0]
        assert [h.item_id for h in hits] == ["a", "b", "c", "d", "e", "f"]
        expected = [math.cos(math.radians(abs(ANGLES[h.item_id] - 2.0))) for h in hits]
        assert [h.score for h in hits] == pytest.approx(expected, abs=1e-5)
        back = reader.query(np.array([_unit(170.0)]), k=3)[0]
        assert [h.item_id for h in back] == ["f", "e", "d"]
        assert back[0].to_dict() == {
            "item_id": "f", "score": pytest.approx(math.cos(math.radians(10)), abs=1e-5),
            "category": "Ankle boot", "title": "title f", "image": "file:///img/f.png", "attrs": {"k": "f"},
            "product_id": "f", "images": 1,
        }  # fmt: skip


def test_category_query_returns_only_that_category_and_accepts_its_slug(tiny: Path) -> None:
    with IndexReader.open(tiny, embedder_sha256=None, dim=2) as reader:
        assert reader.categories == {"Ankle boot": 3, "Tops": 3}
        by_name = reader.query(np.array(_unit(2.0)), k=10, category="Ankle boot")[0]
        assert [h.item_id for h in by_name] == ["b", "d", "f"]
        by_slug = reader.query(np.array(_unit(2.0)), k=2, category="ankle-boot")[0]
        assert [h.item_id for h in by_slug] == ["b", "d"]
        with pytest.raises(NotFound):
            reader.query(np.array(_unit(2.0)), k=2, category="Hats")


def test_two_seeded_builds_are_byte_identical(tmp_path: Path) -> None:
    vectors, labels = clustered(600, 16, clusters=12, spread=0.4)
    a = build_index(vectors, items_for(labels), tmp_path / "a", n_trees=10, seed=7, workers=2)
    b = build_index(vectors, items_for(labels), tmp_path / "b", n_trees=10, seed=7, workers=2)
    assert a.files == b.files and len(a.files) == 6  # index, 3 categories, meta, vectors
    for name in a.files:
        assert (tmp_path / "a" / name).read_bytes() == (tmp_path / "b" / name).read_bytes()
    c = build_index(vectors, items_for(labels), tmp_path / "c", n_trees=10, seed=8, workers=2)
    assert c.files["index.ann"] != a.files["index.ann"]


def test_round_trip_vector_of_and_item_give_back_what_was_built(tmp_path: Path) -> None:
    vectors, labels = clustered(300, 8, clusters=6, spread=0.3)
    items = items_for(labels)
    manifest = make_version(tmp_path / "v", vectors, items)
    with IndexReader.open(tmp_path / "v", embedder_sha256=manifest["embedder"]["sha256"], dim=8) as reader:
        assert reader.count == 300 and reader.version == manifest["version"]
        unit = vectors[42] / np.linalg.norm(vectors[42])
        assert reader.vector_of("item-0042") == pytest.approx(unit, abs=1e-6)
        assert reader.item("item-0042") == items[42]
        top = reader.query(reader.vector_of("item-0042"), k=1)[0][0]
        assert top.item_id == "item-0042" and top.score == pytest.approx(1.0, abs=1e-5)
        with pytest.raises(NotFound):
            reader.vector_of("nope")


def test_results_are_deduplicated_by_item_id(tiny: Path) -> None:
    # Make annoy ids of "a" and "b" one item, as several images of one product would be.
    con = sqlite3.connect(tiny / "meta.sqlite")
    con.execute("UPDATE items SET item_id = 'a' WHERE item_id = 'b'")
    con.commit()
    con.close()
    manifest = read_manifest(tiny)
    manifest["files"]["meta.sqlite"] = sha256_file(tiny / "meta.sqlite")
    write_manifest(tiny / "manifest.json", manifest)
    with IndexReader.open(tiny, embedder_sha256=None, dim=2) as reader:
        hits = reader.query(np.array(_unit(2.0)), k=3)[0]
        assert [h.item_id for h in hits] == ["a", "c", "d"]  # the closer "a" vector wins, no repeat


def test_bad_queries_are_invalid_input_and_closed_reader_is_not_ready(tiny: Path) -> None:
    reader = IndexReader.open(tiny, embedder_sha256=None, dim=2)
    with pytest.raises(InvalidInput):
        reader.query(np.zeros((1, 3), np.float32), k=2)
    with pytest.raises(InvalidInput):
        reader.query(np.array(_unit(1.0)), k=0)
    reader.close()
    reader.close()  # idempotent
    with pytest.raises(ModelNotReady):
        reader.query(np.array(_unit(1.0)), k=2)


def test_concurrent_queries_match_serial_results(tmp_path: Path) -> None:
    vectors, labels = clustered(2000, 32, clusters=20, spread=0.5)
    make_version(tmp_path / "v", vectors, items_for(labels))
    queries = vectors[:200]
    with IndexReader.open(tmp_path / "v", embedder_sha256=None, dim=32, prefault=True) as reader:
        serial = [[h.item_id for h in hits] for hits in reader.query(queries, k=10)]
        got: dict[int, list[str]] = {}

        def worker(t: int) -> None:
            for i in range(t, 200, 8):
                got[i] = [h.item_id for h in reader.query(queries[i], k=10)[0]]

        threads = [threading.Thread(target=worker, args=(t,)) for t in range(8)]
        for th in threads:
            th.start()
        for th in threads:
            th.join()
    assert [got[i] for i in range(200)] == serial


def test_manifest_records_embedder_categories_and_file_checksums(tmp_path: Path) -> None:
    vectors, labels = clustered(300, 8, clusters=6, spread=0.3)
    manifest = make_version(tmp_path / "v", vectors, items_for(labels))
    on_disk = json.loads((tmp_path / "v" / "manifest.json").read_text())
    assert on_disk == manifest
    assert on_disk["embedder"]["dim"] == 8 and on_disk["embedder"]["metric"] == "angular"
    assert on_disk["embedder"]["preprocessing"] == {"input": {"size": [8, 8], "resize": "area"}}
    assert sum(c["count"] for c in on_disk["categories"].values()) == on_disk["count"] == 300
    assert set(on_disk["files"]) == {"index.ann", "meta.sqlite", "vectors.npy", "cat-cat0.ann", "cat-cat1.ann",
                                     "cat-cat2.ann"}  # fmt: skip
    assert on_disk["quality"]["recall_at_10"] >= 0.95 and on_disk["search_k"] >= 10 * on_disk["n_trees"]


def test_close_during_concurrent_queries_waits_for_them_instead_of_unmapping(tmp_path: Path) -> None:
    vectors, labels = clustered(3000, 32, clusters=20, spread=0.5)
    make_version(tmp_path / "v", vectors, items_for(labels))
    reader = IndexReader.open(tmp_path / "v", embedder_sha256=None, dim=32)
    outcomes: list[str] = []

    def worker() -> None:
        done = 0
        try:
            while True:
                assert len(reader.query(vectors[done % 3000 : done % 3000 + 8], k=10)[0]) == 10
                done += 1
        except ModelNotReady:
            outcomes.append("closed" if done else "never ran")

    threads = [threading.Thread(target=worker) for _ in range(4)]
    for th in threads:
        th.start()
    time.sleep(0.2)
    reader.close()  # a hot swap closing the old reader under load: must not crash the process
    for th in threads:
        th.join(timeout=10)
    assert outcomes == ["closed"] * 4
