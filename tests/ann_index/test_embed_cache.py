"""The rebuild's embedding cache: a second rebuild re-embeds only new or changed images, and gets the same index."""

from __future__ import annotations

import hashlib
import json
import shutil
import sqlite3
import subprocess
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
import pytest

from ann_index.build.embed_cache import EmbeddingCache
from ann_index.build.rebuild import RebuildOptions, rebuild
from ann_index.catalog.demo import write_fmnist_catalog
from services.defaults import REPO_ROOT
from tests.ann_index.fakes import FakeEmbedder
from tests.conftest import env_vars
from tests.helpers.cli import imgsearch_cmd

# Counts embeds: no self-match sample (tests/ann_index/test_self_match.py), which embeds a few more.
OPTS = RebuildOptions(progress=False, n_trees=16, gate_queries=200, self_match_queries=0)


@dataclass
class CountingEmbedder(FakeEmbedder):
    embedded: int = 0

    def run(self, batch: np.ndarray) -> np.ndarray:
        self.embedded += len(batch)
        return super().run(batch)


@pytest.fixture
def catalog(tmp_path: Path) -> Path:
    return write_fmnist_catalog(tmp_path / "shop", limit=200)


def _build(catalog: Path, out: Path, emb: FakeEmbedder, cache: Path) -> dict[str, object]:
    opts = RebuildOptions(**{**OPTS.__dict__, "embedding_cache": cache})
    return rebuild(str(catalog), out.as_uri(), emb, opts)


def test_second_rebuild_embeds_nothing_and_publishes_the_same_files(catalog: Path, tmp_path: Path) -> None:
    cache = tmp_path / "cache" / "vectors.sqlite"
    first_emb, second_emb = CountingEmbedder(), CountingEmbedder()
    first = _build(catalog, tmp_path / "idx", first_emb, cache)
    second = _build(catalog, tmp_path / "idx2", second_emb, cache)
    assert first_emb.embedded == 200 and first["embedding_cache"]["hits"] == 0  # type: ignore[index]
    assert second_emb.embedded == 0 and second["embedding_cache"] == {"path": str(cache), "hits": 200, "misses": 0}
    assert second["files"] == first["files"]  # same vectors, same order: byte-identical annoy files
    uncached = rebuild(str(catalog), (tmp_path / "plain").as_uri(), FakeEmbedder(), OPTS)
    assert uncached["files"] == first["files"] and "embedding_cache" not in uncached


def test_a_changed_image_is_embedded_again(catalog: Path, tmp_path: Path) -> None:
    cache = tmp_path / "vectors.sqlite"
    _build(catalog, tmp_path / "idx", FakeEmbedder(), cache)
    image = catalog.parent / "images" / "fmnist-train-00007.png"
    cv2.imwrite(str(image), cv2.flip(cv2.imread(str(image)), 1))
    emb = CountingEmbedder()
    manifest = _build(catalog, tmp_path / "idx2", emb, cache)
    assert emb.embedded == 1 and manifest["embedding_cache"]["misses"] == 1  # type: ignore[index]


def test_another_embedder_or_crop_never_reuses_vectors(catalog: Path, tmp_path: Path) -> None:
    cache = tmp_path / "vectors.sqlite"
    _build(catalog, tmp_path / "a", FakeEmbedder(), cache)
    other = CountingEmbedder(sha256=hashlib.sha256(b"another model").hexdigest())
    _build(catalog, tmp_path / "b", other, cache)
    assert other.embedded == 200
    cropped = CountingEmbedder()
    opts = RebuildOptions(**{**OPTS.__dict__, "embedding_cache": cache, "crop": "full"})
    rebuild(str(catalog), (tmp_path / "c").as_uri(), cropped, opts)
    assert cropped.embedded == 200


def test_an_unreadable_cache_is_moved_aside_and_the_rebuild_goes_on(catalog: Path, tmp_path: Path) -> None:
    cache = tmp_path / "vectors.sqlite"
    cache.write_bytes(b"this is not a database" * 100)
    emb = CountingEmbedder()
    manifest = _build(catalog, tmp_path / "idx", emb, cache)
    assert emb.embedded == 200 and manifest["count"] == 200
    aside = list(tmp_path.glob("vectors.sqlite.corrupt-*"))
    assert len(aside) == 1 and aside[0].read_bytes().startswith(b"this is not a database")
    with sqlite3.connect(cache) as conn:
        assert conn.execute("SELECT COUNT(*) FROM vectors").fetchone()[0] == 200


def test_a_cache_that_cannot_be_created_only_slows_the_rebuild(catalog: Path, tmp_path: Path) -> None:
    (tmp_path / "not-a-dir").write_text("a file where the cache folder should be")
    emb = CountingEmbedder()
    manifest = _build(catalog, tmp_path / "idx", emb, tmp_path / "not-a-dir" / "vectors.sqlite")
    assert emb.embedded == 200 and manifest["count"] == 200
    stats = manifest["embedding_cache"]
    assert stats["hits"] == 0 and stats["misses"] == 200 and "Error" in stats["error"]  # type: ignore[index]


def test_a_row_of_the_wrong_size_is_a_miss(tmp_path: Path) -> None:
    with EmbeddingCache(tmp_path / "c.sqlite", "sha", "full", dim=4) as cache:
        cache.put_many(["good", "bad"], np.array([[1, 0, 0, 0], [0, 1, 0, 0]], np.float32))
        with sqlite3.connect(cache.path) as conn:
            conn.execute("UPDATE vectors SET vec = ? WHERE key = 'bad'", (b"\x00" * 12,))
        np.testing.assert_array_equal(cache.get("good"), [1, 0, 0, 0])  # type: ignore[arg-type]
        assert cache.get("bad") is None and cache.get("absent") is None
        assert (cache.hits, cache.misses) == (1, 2)


@pytest.mark.stack
def test_cli_rebuild_with_the_real_embedder_reuses_its_cache(tmp_path: Path) -> None:
    catalog = write_fmnist_catalog(tmp_path / "shop", limit=120)
    cache = tmp_path / "cache.sqlite"
    manifests = []
    for run in range(2):
        out = tmp_path / f"idx{run}"
        with env_vars(IMGSEARCH_VAR_DIR=str(tmp_path / "var")):
            done = subprocess.run(
                imgsearch_cmd("index", "build", "--catalog", str(catalog), "--out", str(out), "--n-trees", "8",
                     "--embedding-cache", str(cache), "--no-progress"),
                cwd=REPO_ROOT, capture_output=True, text=True, timeout=300,
            )  # fmt: skip
        assert done.returncode == 0, done.stderr[-2000:]
        version = (out / "CURRENT").read_text().strip()
        manifests.append(json.loads((out / "versions" / version / "manifest.json").read_text()))
    assert manifests[0]["embedding_cache"]["misses"] == 120 and manifests[0]["embedding_cache"]["hits"] == 0
    assert manifests[1]["embedding_cache"]["hits"] == 120 and manifests[1]["embedding_cache"]["misses"] == 0
    assert manifests[1]["files"] == manifests[0]["files"]
    shutil.rmtree(tmp_path / "var", ignore_errors=True)


def test_a_shard_pod_uses_the_cache_too(catalog: Path, tmp_path: Path) -> None:
    from ann_index.shards.job import embed_shard
    from ann_index.shards.spec import ShardSpec

    opts = RebuildOptions(**{**OPTS.__dict__, "embedding_cache": tmp_path / "shard0.sqlite"})
    first, second = CountingEmbedder(), CountingEmbedder()
    done = embed_shard(str(catalog), (tmp_path / "a").as_uri(), first, ShardSpec(0, 2), opts)
    again = embed_shard(str(catalog), (tmp_path / "b").as_uri(), second, ShardSpec(0, 2), opts)
    assert 0 < done.embedded < 200 and first.embedded == done.embedded
    assert again.embedded == done.embedded and second.embedded == 0
