"""Publishing versions to file:// and s3:// stores, CURRENT last, pruning, and verified syncs."""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

from ann_index.serving.reader import IndexReader
from ann_index.version.publish import list_versions, publish_version, read_current, sync_version
from imgcore.errors import ChecksumMismatch, IndexMismatch, StoreError
from imgcore.storage import ObjectStore, open_store
from tests.ann_index.fakes import clustered, items_for, make_version
from tests.conftest import LocalHttpServer


@pytest.fixture
def built(tmp_path: Path) -> Path:
    vectors, labels = clustered(300, 8, clusters=6, spread=0.3)
    make_version(tmp_path / "build", vectors, items_for(labels))
    return tmp_path / "build"


def _as_version(src: Path, dest: Path, version: str) -> Path:
    """A copy of a built folder under another version name (versions differ only in their name here)."""
    shutil.copytree(src, dest)
    manifest = json.loads((dest / "manifest.json").read_text())
    manifest["version"] = version
    (dest / "manifest.json").write_text(json.dumps(manifest))
    return dest


class RecordingStore:
    """Wraps a store and records the order of writes."""

    def __init__(self, inner: ObjectStore) -> None:
        self.inner = inner
        self.writes: list[str] = []

    def put_file(self, key: str, path: Path) -> None:
        self.writes.append(key)
        self.inner.put_file(key, path)

    def put_bytes(self, key: str, data: bytes) -> None:
        self.writes.append(key)
        self.inner.put_bytes(key, data)

    def __getattr__(self, name: str) -> object:
        return getattr(self.inner, name)


def test_publish_writes_files_then_manifest_then_current(built: Path, tmp_path: Path) -> None:
    store = RecordingStore(open_store((tmp_path / "out").as_uri()))
    version = publish_version(store, built)  # type: ignore[arg-type]
    names = [w.rsplit("/", 1)[-1] for w in store.writes]
    assert names[-2:] == ["manifest.json", "CURRENT"]
    assert set(names[:-2]) == set(json.loads((built / "manifest.json").read_text())["files"])
    assert (tmp_path / "out" / "CURRENT").read_text() == f"{version}\n"
    assert read_current(store.inner) == version


def test_sync_then_open_round_trip_and_reuses_a_verified_copy(built: Path, tmp_path: Path) -> None:
    store = open_store((tmp_path / "out").as_uri())
    version = publish_version(store, built)
    local = sync_version(store, version, tmp_path / "cache")
    assert local == tmp_path / "cache" / version
    with IndexReader.open(local, embedder_sha256=None, dim=8) as reader:
        assert reader.query(reader.vector_of("item-0007"), k=1)[0][0].item_id == "item-0007"
    mtime = (local / "index.ann").stat().st_mtime_ns
    assert sync_version(store, version, tmp_path / "cache") == local
    assert (local / "index.ann").stat().st_mtime_ns == mtime  # not downloaded again


def test_sync_refuses_a_remote_file_that_does_not_match_and_leaves_nothing(built: Path, tmp_path: Path) -> None:
    store = open_store((tmp_path / "out").as_uri())
    version = publish_version(store, built)
    (tmp_path / "out" / "versions" / version / "vectors.npy").write_bytes(b"garbage")
    with pytest.raises(ChecksumMismatch):
        sync_version(store, version, tmp_path / "cache")
    assert list((tmp_path / "cache").iterdir()) == []


def test_keep_n_prunes_older_versions_and_stale_partial_uploads(built: Path, tmp_path: Path) -> None:
    store = open_store((tmp_path / "out").as_uri())
    # A crashed job's leftover: files but no manifest, older than everything else.
    (tmp_path / "out" / "versions" / "20000101T000000Z-deadbeef").mkdir(parents=True)
    (tmp_path / "out" / "versions" / "20000101T000000Z-deadbeef" / "index.ann").write_bytes(b"partial")
    names = [f"2024010{i}T000000Z-0000000{i}" for i in range(1, 5)]
    for name in names:
        publish_version(store, _as_version(built, tmp_path / name, name), keep=2)
    assert list_versions(store, complete_only=False) == names[-2:]
    assert read_current(store) == names[-1]


def test_nothing_published_reads_as_none(tmp_path: Path) -> None:
    assert read_current(open_store((tmp_path / "empty").as_uri())) is None
    (tmp_path / "bad").mkdir()
    (tmp_path / "bad" / "CURRENT").write_text("../../etc\n")
    with pytest.raises(StoreError, match="no valid version"):
        read_current(open_store((tmp_path / "bad").as_uri()))


def test_s3_publish_sync_and_load_against_moto(built: Path, tmp_path: Path, s3_endpoint: str, s3_bucket: str) -> None:
    root = f"{s3_bucket}/indexes/shop"
    with open_store(root, s3_endpoint_url=s3_endpoint) as store:
        first = publish_version(store, _as_version(built, tmp_path / "v1", "20240101T000000Z-00000001"), keep=1)
        second = publish_version(store, _as_version(built, tmp_path / "v2", "20240102T000000Z-00000002"), keep=1)
        assert read_current(store) == second != first
        assert list_versions(store, complete_only=False) == [second]
        local = sync_version(store, second, tmp_path / "cache")
    with IndexReader.open(local, embedder_sha256=None, dim=8) as reader:
        hits = reader.query(np.asarray(reader.vector_of("item-0010")), k=3)[0]
        assert hits[0].item_id == "item-0010" and len(hits) == 3


def test_partial_uploads_between_kept_versions_are_pruned_once_hours_old(built: Path, tmp_path: Path) -> None:
    from datetime import UTC, datetime

    store = open_store((tmp_path / "out").as_uri())
    recent = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ") + "-11111111"  # maybe still uploading
    for partial in ("20240102T000000Z-deadbeef", recent):
        store.put_bytes(f"versions/{partial}/index.ann", b"partial")
    for name in ("20240101T000000Z-00000001", "20240103T000000Z-00000003"):
        publish_version(store, _as_version(built, tmp_path / name, name), keep=3)
    assert list_versions(store, complete_only=False) == [
        "20240101T000000Z-00000001",
        "20240103T000000Z-00000003",
        recent,
    ]


def test_an_older_upload_never_moves_current_backwards(built: Path, tmp_path: Path) -> None:
    store = open_store((tmp_path / "out").as_uri())
    publish_version(store, _as_version(built, tmp_path / "new", "20240102T000000Z-00000002"))
    with pytest.raises(StoreError, match="newer version 20240102T000000Z-00000002"):
        publish_version(store, _as_version(built, tmp_path / "old", "20240101T000000Z-00000001"))
    assert read_current(store) == "20240102T000000Z-00000002"


def test_a_later_build_in_the_same_second_still_moves_current(built: Path, tmp_path: Path) -> None:
    store = open_store((tmp_path / "out").as_uri())
    publish_version(store, _as_version(built, tmp_path / "a", "20240102T000000Z-ffffffff"))
    publish_version(store, _as_version(built, tmp_path / "b", "20240102T000000Z-00000001"))
    assert read_current(store) == "20240102T000000Z-00000001"


def _served_store(built: Path, http_server: LocalHttpServer, change: Callable[[Path], None]) -> tuple[ObjectStore, str]:
    """A published version, changed by `change` in the store, served read-only over HTTP (requests counted)."""
    version = publish_version(open_store((http_server.root / "out").as_uri()), built)
    change(http_server.root / "out" / "versions" / version)
    return open_store(f"{http_server.url}/out"), version


def _category_file_is(target: str) -> Callable[[Path], None]:
    def change(folder: Path) -> None:
        manifest = json.loads((folder / "manifest.json").read_text())
        next(iter(manifest["categories"].values()))["file"] = target
        (folder / "manifest.json").write_text(json.dumps(manifest))

    return change


@pytest.mark.parametrize("target", ["/etc/hostname", "../x.ann"])
def test_sync_refuses_a_manifest_naming_a_file_outside_its_version_before_downloading(
    built: Path, tmp_path: Path, http_server: LocalHttpServer, target: str
) -> None:
    store, version = _served_store(built, http_server, _category_file_is(target))
    with store, pytest.raises(IndexMismatch, match="unsafe file") as err:
        sync_version(store, version, tmp_path / "cache")
    assert err.value.reason == "manifest"
    assert [path for _, path in http_server.requests] == [f"/out/versions/{version}/manifest.json"]
    assert list((tmp_path / "cache").iterdir()) == []


def test_sync_refuses_a_version_whose_listed_file_is_missing_from_the_store(
    built: Path, tmp_path: Path, http_server: LocalHttpServer
) -> None:
    store, version = _served_store(built, http_server, lambda folder: (folder / "meta.sqlite").unlink())
    with store, pytest.raises(IndexMismatch, match="meta.sqlite is listed in the manifest") as err:
        sync_version(store, version, tmp_path / "cache")
    assert err.value.reason == "missing_file"  # the version is bad: not store trouble to retry
    assert list((tmp_path / "cache").iterdir()) == []
