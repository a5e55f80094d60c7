"""Partitioned index versions (issue 16): the split, the merged gate, the manifest, publish and per-part sync."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from ann_index.items import IndexItem
from ann_index.serving.partition_sync import sync_partition
from ann_index.serving.reader import IndexReader
from ann_index.version.publish import publish_version, read_current, sync_version
from imgcore.errors import IndexMismatch, NotFound
from imgcore.index_wire import partition_of
from imgcore.storage import open_store
from tests.ann_index.fakes import clustered, items_for, make_version

N = 3


@pytest.fixture(scope="module")
def data() -> tuple[np.ndarray, list]:
    vectors, labels = clustered(900, 16, 12, 0.4, seed=3)
    return vectors, items_for(labels, categories=4)


@pytest.fixture(scope="module")
def built(data: tuple[np.ndarray, list], tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict]:
    out = tmp_path_factory.mktemp("parts") / "version"
    return out, make_version(out, *data, partitions=N)


def test_items_split_by_the_shared_hash_into_complete_parts(built: tuple[Path, dict], data: tuple) -> None:
    out, manifest = built
    _, items = data
    assert manifest["partitions"] == N and manifest["count"] == len(items)
    seen: list[str] = []
    for i, part in enumerate(manifest["parts"]):
        part_manifest = json.loads((out / part["dir"] / "manifest.json").read_text())
        assert part_manifest["version"] == manifest["version"] and part_manifest["partition"]["index"] == i
        with IndexReader.open(out / part["dir"], embedder_sha256=None, dim=16) as reader:
            ids = [reader.query(np.asarray(v)[None, :], 1)[0][0].item_id for v in reader._vectors[:50]]
            assert all(partition_of(x, N) == i for x in ids)
            assert reader.count == part["count"]
            seen += [it.item_id for it in items if partition_of(it.item_id, N) == i]
    assert sorted(seen) == sorted(it.item_id for it in items)


def test_the_gate_measures_the_merged_answer_against_the_whole_catalog(built: tuple[Path, dict], data: tuple) -> None:
    _, manifest = built
    quality = manifest["quality"]
    assert quality["recall_at_10"] >= 0.95 and quality["category_recall_at_10"] >= 0.95
    one = make_version(built[0].parent / "single", *data)  # the same catalog as one index, same seed and trees
    # The same tuning from k * n_trees: each partition searched at that search_k finds as much as one index.
    assert manifest["search_k"] <= one["search_k"]
    assert quality["recall_at_10"] >= one["quality"]["recall_at_10"] - 0.01


def test_publish_moves_current_once_and_sync_fetches_only_its_part(built: tuple[Path, dict], tmp_path: Path) -> None:
    out, manifest = built
    store_dir = tmp_path / "store"
    with open_store(store_dir.as_uri()) as store:
        version = publish_version(store, out)
        assert read_current(store) == version == manifest["version"]
        local = sync_partition(store, version, tmp_path / "cache", 1)
        assert local.name == f"{version}.part-1"
        assert json.loads((local / "manifest.json").read_text())["partition"]["index"] == 1
        assert not (tmp_path / "cache" / f"{version}.part-0").exists()
        with pytest.raises(IndexMismatch, match="serve each with --partition"):
            sync_version(store, version, tmp_path / "whole")  # a whole-index server refuses, keeps its old one
        with pytest.raises(IndexMismatch, match="none numbered 3"):
            sync_partition(store, version, tmp_path / "cache", 3)


def test_a_part_from_another_build_is_refused(built: tuple[Path, dict], tmp_path: Path) -> None:
    out, manifest = built
    copy = tmp_path / "copy"
    shutil.copytree(out, copy)
    part = json.loads((copy / "part-2" / "manifest.json").read_text())
    part["search_k"] += 1  # any change: its sha256 no longer matches what the version's manifest recorded
    (copy / "part-2" / "manifest.json").write_text(json.dumps(part))
    with open_store((tmp_path / "store").as_uri()) as store:
        version = publish_version(store, copy)
        with pytest.raises(IndexMismatch, match="does not match the version's"):
            sync_partition(store, version, tmp_path / "cache", 2)  # the version recorded another part-2 manifest
        assert not (tmp_path / "cache" / f"{version}.part-2").exists()
        sync_partition(store, version, tmp_path / "cache", 0)


def test_one_partition_is_todays_layout(data: tuple, tmp_path: Path) -> None:
    manifest = make_version(tmp_path / "one", *data, partitions=1)
    assert "partitions" not in manifest and (tmp_path / "one" / "index.ann").is_file()
    with open_store((tmp_path / "store").as_uri()) as store:
        version = publish_version(store, tmp_path / "one")
        assert sync_partition(store, version, tmp_path / "cache", 0).name == version  # partition 0 of 1: all of it


def test_a_category_with_no_item_in_a_partition_answers_empty_there(data: tuple, tmp_path: Path) -> None:
    vectors, items = data
    rare = [f"rare-{n}" for n in range(200) if partition_of(f"rare-{n}", N) == 0][:3]
    extra = [IndexItem(x, "rare", x, "file:///img/r.png") for x in rare]
    rows = np.concatenate([vectors, vectors[: len(extra)] + 0.01])
    make_version(tmp_path / "v", rows, [*items, *extra], partitions=N)
    probe = rows[:1]
    with IndexReader.open(tmp_path / "v" / "part-0", embedder_sha256=None, dim=16) as owner:
        assert {h.item_id for h in owner.query(probe, 3, "rare")[0]} == set(rare)
    with IndexReader.open(tmp_path / "v" / "part-1", embedder_sha256=None, dim=16) as other:
        assert other.query(probe, 3, "rare") == [[]]
        with pytest.raises(NotFound):
            other.query(probe, 3, "no-such-category")
