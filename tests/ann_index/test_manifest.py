"""IndexReader refuses versions that do not belong to the serving embedder or do not verify."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest

import ann_index.serving.reader as reader_module
from ann_index.serving.reader import IndexReader
from ann_index.version.manifest import make_version as version_name
from imgcore.errors import IndexMismatch
from tests.ann_index.fakes import FakeEmbedder, clustered, items_for, make_version

EMB = FakeEmbedder(dim=16)


@pytest.fixture
def version(tmp_path: Path) -> Path:
    vectors, labels = clustered(400, 16, clusters=8, spread=0.3)
    make_version(tmp_path / "v", vectors, items_for(labels), embedder=EMB)
    return tmp_path / "v"


@pytest.fixture
def annoy_never_loads(monkeypatch: pytest.MonkeyPatch) -> None:
    """Refusals must happen before annoy maps a file: annoy can crash on a dimension mismatch."""

    def boom(*args: object, **kwargs: object) -> None:
        raise AssertionError("annoy was asked to load a refused index")

    monkeypatch.setattr(reader_module, "AnnoyIndex", boom)


def test_matching_embedder_opens(version: Path) -> None:
    with IndexReader.open(version, embedder_sha256=EMB.sha256, dim=16) as reader:
        assert reader.count == 400 and reader.manifest["embedder"]["name"] == "fake-embedder"


@pytest.mark.usefixtures("annoy_never_loads")
def test_other_embedder_sha256_is_refused(version: Path) -> None:
    with pytest.raises(IndexMismatch) as err:
        IndexReader.open(version, embedder_sha256="0" * 64, dim=16)
    assert err.value.reason == "embedder_sha256" and err.value.status == 409
    assert "fake-embedder" in err.value.message


@pytest.mark.usefixtures("annoy_never_loads")
def test_other_dimension_is_refused_before_annoy_loads(version: Path) -> None:
    with pytest.raises(IndexMismatch) as err:
        IndexReader.open(version, embedder_sha256=EMB.sha256, dim=128)
    assert err.value.reason == "dim" and "128" in err.value.message


@pytest.mark.usefixtures("annoy_never_loads")
def test_changed_file_fails_its_checksum(version: Path) -> None:
    data = bytearray((version / "cat-cat1.ann").read_bytes())
    data[100] ^= 0xFF
    (version / "cat-cat1.ann").write_bytes(bytes(data))
    with pytest.raises(IndexMismatch) as err:
        IndexReader.open(version, embedder_sha256=EMB.sha256, dim=16)
    assert err.value.reason == "checksum" and "cat-cat1.ann" in err.value.message


@pytest.mark.usefixtures("annoy_never_loads")
@pytest.mark.parametrize("name", ["index.ann", "meta.sqlite", "vectors.npy", "manifest.json"])
def test_missing_file_is_refused(version: Path, name: str) -> None:
    (version / name).unlink()
    with pytest.raises(IndexMismatch) as err:
        IndexReader.open(version, embedder_sha256=EMB.sha256, dim=16)
    assert err.value.reason == "missing_file"


@pytest.mark.usefixtures("annoy_never_loads")
@pytest.mark.parametrize(
    "manifest", ["{not json", "[]", json.dumps({"format": 99, "version": "v"}), json.dumps({"format": 1})]
)
def test_unreadable_manifest_is_refused(version: Path, manifest: str) -> None:
    (version / "manifest.json").write_text(manifest)
    with pytest.raises(IndexMismatch) as err:
        IndexReader.open(version, embedder_sha256=None, dim=None)
    assert err.value.reason == "manifest"


@pytest.mark.usefixtures("annoy_never_loads")
def test_manifest_naming_a_file_outside_the_version_is_refused(version: Path) -> None:
    manifest = json.loads((version / "manifest.json").read_text())
    manifest["files"]["../escape.ann"] = "0" * 64
    (version / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(IndexMismatch):
        IndexReader.open(version, embedder_sha256=None, dim=None)


def test_versions_sort_by_time_and_name_their_content() -> None:
    from datetime import UTC, datetime

    early = version_name({"a": "1"}, "sha", datetime(2024, 1, 2, 3, 4, 5, tzinfo=UTC))
    late = version_name({"a": "1"}, "sha", datetime(2024, 1, 2, 3, 4, 6, tzinfo=UTC))
    other = version_name({"a": "2"}, "sha", datetime(2024, 1, 2, 3, 4, 5, tzinfo=UTC))
    assert early.startswith("20240102T030405Z-") and early < late
    assert early[-8:] == late[-8:] != other[-8:]
    assert np.all([len(v) == 25 for v in (early, late, other)])


def _replace_honestly(version: Path, name: str, data: bytes) -> None:
    """Swap a file and update its sha256 in the manifest: checksums verify, the content is wrong."""
    import hashlib

    (version / name).write_bytes(data)
    manifest = json.loads((version / "manifest.json").read_text())
    manifest["files"][name] = hashlib.sha256(data).hexdigest()
    (version / "manifest.json").write_text(json.dumps(manifest))


@pytest.mark.usefixtures("annoy_never_loads")
@pytest.mark.parametrize("name", ["index.ann", "cat-cat2.ann"])
def test_garbage_annoy_file_with_an_honest_manifest_is_refused_before_annoy_loads(version: Path, name: str) -> None:
    size = (version / name).stat().st_size
    _replace_honestly(version, name, np.random.default_rng(3).integers(0, 256, size, dtype=np.uint8).tobytes())
    with pytest.raises(IndexMismatch) as err:
        IndexReader.open(version, embedder_sha256=EMB.sha256, dim=16)
    assert err.value.reason == "annoy_file" and name in err.value.message


def test_annoy_file_of_another_catalog_is_refused(version: Path, tmp_path: Path) -> None:
    vectors, labels = clustered(100, 16, clusters=4, spread=0.3, seed=5)
    make_version(tmp_path / "small", vectors, items_for(labels), embedder=EMB)
    _replace_honestly(version, "index.ann", (tmp_path / "small" / "index.ann").read_bytes())
    with pytest.raises(IndexMismatch, match="400 items"):
        IndexReader.open(version, embedder_sha256=EMB.sha256, dim=16)


@pytest.mark.usefixtures("annoy_never_loads")
def test_vectors_with_rows_missing_are_refused(version: Path) -> None:
    import io

    out = io.BytesIO()
    np.save(out, np.load(version / "vectors.npy")[:200])
    _replace_honestly(version, "vectors.npy", out.getvalue())
    with pytest.raises(IndexMismatch) as err:
        IndexReader.open(version, embedder_sha256=EMB.sha256, dim=16)
    assert err.value.reason == "vectors"


def test_single_item_categories_pass_the_structure_check(tmp_path: Path) -> None:
    vectors, labels = clustered(50, 16, clusters=3, spread=0.3)
    items = items_for(labels)
    items[7] = type(items[7])("lonely", "Hats", "one of a kind", "file:///img/l.png", {})
    make_version(tmp_path / "v", vectors, items, embedder=EMB)
    with IndexReader.open(tmp_path / "v", embedder_sha256=EMB.sha256, dim=16) as reader:
        assert [h.item_id for h in reader.query(vectors[7], k=5, category="Hats")[0]] == ["lonely"]


@pytest.mark.parametrize("name", ["vectors.npy", "meta.sqlite"])
def test_unreadable_vectors_or_metadata_with_an_honest_manifest_are_refused(version: Path, name: str) -> None:
    _replace_honestly(version, name, b"not what it claims to be" * 100)
    with pytest.raises(IndexMismatch) as err:
        IndexReader.open(version, embedder_sha256=EMB.sha256, dim=16)
    assert err.value.reason in ("vectors", "meta")


# --------------------------------------------------------------------------- files and ranges the manifest names


def _edit_manifest(version: Path, change: Callable[[dict[str, Any]], None]) -> None:
    manifest = json.loads((version / "manifest.json").read_text())
    change(manifest)
    (version / "manifest.json").write_text(json.dumps(manifest))


def _open(version: Path) -> IndexMismatch:
    with pytest.raises(IndexMismatch) as err:
        IndexReader.open(version, embedder_sha256=EMB.sha256, dim=16)
    return err.value


@pytest.mark.usefixtures("annoy_never_loads")
@pytest.mark.parametrize("target", ["/etc/hostname", "other-absolute", "../x.ann", "sub/cat.ann", "..", ".cat.ann"])
def test_a_category_file_outside_the_version_is_refused_before_any_file_is_opened(
    version: Path, tmp_path: Path, target: str
) -> None:
    if target == "other-absolute":  # a valid annoy file of the right size elsewhere: was loaded and mmapped
        vectors, labels = clustered(400, 16, clusters=8, spread=0.3)
        make_version(tmp_path / "elsewhere", vectors, items_for(labels), embedder=EMB)
        target = str(tmp_path / "elsewhere" / "cat-cat1.ann")
    _edit_manifest(version, lambda m: m["categories"]["cat1"].__setitem__("file", target))
    err = _open(version)
    # reason "manifest": refused by reading the manifest, not by a check that had to open the file
    assert err.reason == "manifest" and "category 'cat1' names an unsafe file" in err.message


@pytest.mark.usefixtures("annoy_never_loads")
@pytest.mark.parametrize("name", ["/etc/hostname", "../x.ann", "manifest.json"])
def test_a_listed_file_that_is_not_a_plain_name_is_refused(version: Path, name: str) -> None:
    _edit_manifest(version, lambda m: m["files"].__setitem__(name, "0" * 64))
    err = _open(version)
    assert err.reason == "manifest" and "unsafe file name" in err.message


@pytest.mark.usefixtures("annoy_never_loads")
def test_a_category_file_not_listed_with_a_sha256_is_refused(version: Path) -> None:
    (version / "cat-extra.ann").write_bytes((version / "cat-cat1.ann").read_bytes())
    _edit_manifest(version, lambda m: m["categories"]["cat1"].__setitem__("file", "cat-extra.ann"))
    err = _open(version)
    assert err.reason == "manifest" and "cat-extra.ann is not its own file listed with a sha256" in err.message


def _offset_past_the_data(m: dict[str, Any]) -> None:
    m["categories"]["cat2"]["offset"] = m["count"] + 5


def _ranges_overlap(m: dict[str, Any]) -> None:
    m["categories"]["cat1"]["offset"] -= 1


def _count_not_a_number(m: dict[str, Any]) -> None:
    m["categories"]["cat0"]["count"] = "12"


def _dim_negative(m: dict[str, Any]) -> None:
    m["embedder"]["dim"] = -16


BAD_RANGES: dict[str, Callable[[dict[str, Any]], None]] = {
    "offset-past-the-data": _offset_past_the_data,
    "ranges-overlap": _ranges_overlap,
    "count-not-a-number": _count_not_a_number,
    "dim-negative": _dim_negative,
}


@pytest.mark.usefixtures("annoy_never_loads")
@pytest.mark.parametrize("case", sorted(BAD_RANGES))
def test_counts_and_offsets_that_do_not_fit_the_data_are_refused_at_load(version: Path, case: str) -> None:
    _edit_manifest(version, BAD_RANGES[case])
    err = _open(version)
    assert err.reason == "manifest", err.message


@pytest.mark.usefixtures("annoy_never_loads")
def test_a_listed_category_file_that_is_missing_is_refused(version: Path) -> None:
    (version / "cat-cat0.ann").unlink()
    err = _open(version)
    assert err.reason == "missing_file" and "cat-cat0.ann" in err.message
