"""The fresh index and the view over a real built version: exact search, tombstones on every read, merge by
score, newest change wins; checked against numpy brute force."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from ann_index.serving.fresh import FreshIndex
from ann_index.serving.fresh_view import FreshView
from ann_index.serving.reader import IndexReader
from ann_index.version.changes import ChangeBatch, Delete, Upsert
from imgcore.errors import NotFound
from imgcore.index_wire import partition_of
from tests.ann_index.fakes import FakeEmbedder, clustered, items_for, make_version

DIM = 16
SHA = FakeEmbedder().sha256


def _unit(seed: int) -> np.ndarray:
    vec = np.random.default_rng(seed).normal(size=DIM).astype(np.float32)
    return vec / np.linalg.norm(vec)


def _up(item_id: str, vec: np.ndarray, category: str = "cat0") -> Upsert:
    return Upsert(item_id, category, item_id, f"file:///{item_id}.png", {}, vec, b"webp-bytes")


def _batch(seq: int, rows: list[Upsert | Delete], at: float | None = None, origin: str | None = None) -> ChangeBatch:
    return ChangeBatch("v", seq, float(seq) if at is None else at, origin or f"v/{seq}", SHA, DIM, list(rows))


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, np.ndarray]:
    vectors, labels = clustered(600, DIM, 6, 0.3)
    out = tmp_path_factory.mktemp("v")
    make_version(out, vectors, items_for(labels), FakeEmbedder(dim=DIM))
    return out, vectors


@pytest.fixture
def reader(built: tuple[Path, np.ndarray]) -> Iterator[IndexReader]:
    with IndexReader.open(built[0], embedder_sha256=SHA, dim=DIM) as r:
        yield r


def test_exact_search_matches_brute_force_and_filters_by_category_name_or_set() -> None:
    fresh = FreshIndex(DIM)
    vecs = np.stack([_unit(i) for i in range(300)])
    fresh.apply(_batch(1, [_up(f"n{i}", vecs[i], f"cat{i % 3}") for i in range(300)]))
    query = _unit(999)[None, :]
    order = np.argsort(-(vecs @ query[0]))
    assert [h.item_id for h in fresh.query(query, 5)[0]] == [f"n{i}" for i in order[:5]]
    in_cat1 = [f"n{i}" for i in order if i % 3 == 1][:4]
    assert [h.item_id for h in fresh.query(query, 4, "cat1")[0]] == in_cat1
    both = [h.item_id for h in fresh.query(query, 6, ["cat1", "cat2"])[0]]
    assert both == [f"n{i}" for i in order if i % 3 in (1, 2)][:6]
    assert fresh.query(query, 3, "unknown") == [[]]


def test_newest_change_wins_and_a_carried_copy_is_applied_once() -> None:
    fresh = FreshIndex(DIM)
    fresh.apply(_batch(1, [_up("a", _unit(1))], at=10.0))
    fresh.apply(_batch(2, [Delete("a")], at=20.0))
    assert fresh.get("a") is None and "a" in fresh.hidden
    assert fresh.apply(_batch(3, [_up("a", _unit(2))], at=15.0))  # written before the delete: stays deleted
    assert fresh.get("a") is None
    assert not fresh.apply(_batch(4, [_up("b", _unit(3))], origin="v/2"))  # origin already applied
    assert fresh.get("b") is None and fresh.applied_seq == 4


def test_a_partition_holds_only_its_own_upserts_but_hides_every_deleted_id() -> None:
    fresh = FreshIndex(DIM, accept=lambda item_id: partition_of(item_id, 2) == 0)
    ids = [f"p{i}" for i in range(40)]
    fresh.apply(_batch(1, [_up(i, _unit(n)) for n, i in enumerate(ids)]))
    assert {h.item_id for h in fresh.query(_unit(0)[None, :], 40)[0]} == {i for i in ids if partition_of(i, 2) == 0}
    assert fresh.hidden >= set(ids)


def test_compaction_after_many_replacements_keeps_answers(reader: IndexReader) -> None:
    fresh = FreshIndex(DIM)
    for seq in range(1, 13):
        fresh.apply(_batch(seq, [_up(f"r{i}", _unit(seq * 1000 + i)) for i in range(1000)]))
    assert fresh.size == 1000
    last = _unit(12 * 1000 + 7)[None, :]
    assert fresh.query(last, 1)[0][0].item_id == "r7"


def test_view_hides_deleted_and_replaced_items_on_every_read(
    reader: IndexReader, built: tuple[Path, np.ndarray]
) -> None:
    vectors = built[1]
    view, fresh = FreshView(reader, FreshIndex(DIM)), None
    probe = vectors[5][None, :]
    before = [h.item_id for h in view.query(probe, 10)[0]]
    gone, replaced = before[0], before[1]
    fresh = view.fresh
    fresh.apply(_batch(1, [Delete(gone), _up(replaced, -vectors[5], "brand-new")]))
    after = view.query(probe, 10)[0]
    assert gone not in [h.item_id for h in after] and replaced not in [h.item_id for h in after]
    assert len(after) == 10 and [h.item_id for h in after][:8] == before[2:10]  # refilled to k, in order
    category = reader.item(before[2]).category
    assert gone not in [h.item_id for h in view.query(probe, 10, category)[0]]
    for read in (view.item, view.vector_of, view.thumbnail):
        with pytest.raises(NotFound):
            read(gone)
    assert view.item(replaced).category == "brand-new" and view.thumbnail(replaced)[0] == b"webp-bytes"
    assert view.query(-vectors[5][None, :], 1, "brand-new")[0][0].item_id == replaced  # a category only fresh has


def test_view_merges_fresh_items_by_score(reader: IndexReader, built: tuple[Path, np.ndarray]) -> None:
    view = FreshView(reader, FreshIndex(DIM))
    probe = built[1][42] + built[1][300]  # between two built items: neither scores 1.0
    probe /= np.linalg.norm(probe)
    view.fresh.apply(_batch(1, [_up("new-near", probe), _up("new-far", -probe)]))
    hits = view.query(probe[None, :], 5)[0]
    assert hits[0].item_id == "new-near" and hits[0].score == pytest.approx(1.0, abs=1e-5)
    assert "new-far" not in [h.item_id for h in hits]
    scores = [h.score for h in hits]
    assert scores == sorted(scores, reverse=True)


def test_deletes_of_ids_held_nowhere_hide_nothing_and_keep_a_bounded_tombstone(
    monkeypatch: pytest.MonkeyPatch, reader: IndexReader
) -> None:
    import ann_index.serving.fresh as fresh_module

    monkeypatch.setattr(fresh_module, "MAX_TOMBSTONES", 3)
    fresh = FreshIndex(DIM, in_base=reader.holds)
    ghosts = [Delete(f"ghost-{i}") for i in range(5)]
    fresh.apply(_batch(1, [*ghosts, Delete("item-0001")], at=20.0))
    assert fresh.hidden == {"item-0001"} and (fresh.tombstones, fresh.ignored_deletes) == (3, 2)
    fresh.apply(_batch(2, [_up("ghost-0", _unit(1)), _up("ghost-4", _unit(2))], at=10.0))  # older than the deletes
    assert fresh.get("ghost-0") is None and fresh.get("ghost-4") is not None  # past the bound: a no-op delete
