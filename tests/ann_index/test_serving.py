"""What the index server checks and keeps: the self-test of a fresh version, build times, local copies."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pytest

from ann_index.items import IndexItem
from ann_index.serving.checks import built_at, prune_local, self_test
from ann_index.serving.reader import IndexReader
from ann_index.version.manifest import make_version as version_name
from ann_index.version.manifest import verify_files, version_time
from imgcore.errors import IndexMismatch
from tests.ann_index.fakes import clustered, items_for, make_version


def test_a_built_version_passes_the_self_test_and_one_out_of_step_does_not(tmp_path: Path) -> None:
    vectors, labels = clustered(300, 16, clusters=3, spread=0.3)
    make_version(tmp_path / "v", vectors, items_for(labels))
    with IndexReader.open(tmp_path / "v", embedder_sha256=None, dim=None) as reader:
        self_test(reader)
    # vectors.npy out of step with the annoy files (a stored vector is another item's): refused.
    stored = np.load(tmp_path / "v" / "vectors.npy")
    np.save(tmp_path / "v" / "vectors.npy", np.roll(stored, 150, axis=0))
    with IndexReader.open(tmp_path / "v", embedder_sha256=None, dim=None, verify=False) as reader:
        with pytest.raises(IndexMismatch, match="does not find its own item back"):
            self_test(reader)


def test_version_names_carry_their_build_time() -> None:
    when = datetime(2024, 6, 1, 3, 4, 5, tzinfo=UTC)
    name = version_name({"index.ann": "ab" * 32}, "cd" * 32, when)
    assert name.startswith("20240601T030405Z-") and version_time(name) == when
    assert version_time("v1") is None and version_time("") is None
    assert built_at({"version": name}) == when.timestamp()
    created = {"version": name, "created_at": "2024-06-02T00:00:00Z"}  # the manifest's own field wins
    assert built_at(created) == datetime(2024, 6, 2, tzinfo=UTC).timestamp()
    assert built_at({"version": "handmade", "created_at": "not a date"}) is None


def test_prune_local_keeps_the_newest_and_the_current_copy(tmp_path: Path) -> None:
    names = [f"2024010{d}T000000Z-0000000{d}" for d in range(1, 6)]
    for name in [*names, ".2024010.partial-x"]:
        (tmp_path / name).mkdir()
    (tmp_path / "stray-file").write_text("x")
    deleted = prune_local(tmp_path, keep=2, current=names[0])  # a pinned old version stays
    assert sorted(deleted) == names[1:3]
    assert sorted(p.name for p in tmp_path.iterdir()) == [".2024010.partial-x", names[0], *names[3:], "stray-file"]


def test_manifest_file_names_must_be_plain(tmp_path: Path) -> None:
    vectors, labels = clustered(100, 8, clusters=2, spread=0.3)
    manifest = make_version(tmp_path / "v", vectors, items_for(labels, categories=2))
    verify_files(tmp_path / "v", manifest)
    for bad in ("../index.ann", ".hidden", "a b.ann", "x" * 256):
        with pytest.raises(IndexMismatch, match="unsafe file name"):
            verify_files(tmp_path / "v", {**manifest, "files": {bad: "0" * 64}})


def _equal_categories(out: Path) -> Path:
    """Three categories of 100 items each: two of them can trade offsets or files and still fit the data."""
    vectors, _ = clustered(300, 16, clusters=3, spread=0.3)
    items = [IndexItem(f"item-{i:03d}", f"cat{i // 100}", f"Item {i}", f"file:///img/{i}.png", {}) for i in range(300)]
    make_version(out, vectors, items)
    return out


@pytest.mark.parametrize("swap", ["offset", "file"])
def test_the_self_test_refuses_a_category_whose_index_does_not_fit_its_items(tmp_path: Path, swap: str) -> None:
    version = _equal_categories(tmp_path / "v")
    manifest = json.loads((version / "manifest.json").read_text())
    cats = manifest["categories"]
    cats["cat0"][swap], cats["cat1"][swap] = cats["cat1"][swap], cats["cat0"][swap]
    (version / "manifest.json").write_text(json.dumps(manifest))
    with IndexReader.open(version, embedder_sha256=None, dim=None) as reader:  # files and ranges all fit
        assert [h.item_id for h in reader.query(reader.vector_of("item-250"), 1)[0]] == ["item-250"]
        with pytest.raises(IndexMismatch, match="category 'cat[01]'") as err:
            self_test(reader)
    assert err.value.reason == "selftest"
