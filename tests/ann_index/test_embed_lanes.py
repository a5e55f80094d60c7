"""Model lanes (full batches run in several threads at once): the same index as one run at a time."""

from __future__ import annotations

import json
import shutil
import threading
from dataclasses import dataclass, field, replace
from pathlib import Path

import cv2
import numpy as np
import pytest

from ann_index.build.embedding import decode_threads, embed_items
from ann_index.build.rebuild import RebuildOptions, load_catalog, rebuild
from ann_index.catalog.demo import write_fmnist_catalog
from tests.ann_index.fakes import FakeEmbedder

OPTS = RebuildOptions(  # counts batches: the gate's self-match sample (test_self_match.py) would add some
    progress=False, gate_queries=100, batch_size=16, max_fail_fraction=0.05, self_match_queries=0
)
LANES = replace(OPTS, model_lanes=3)


@dataclass
class CountingEmbedder(FakeEmbedder):
    """The fake embedder, noting which threads ran it and how many rows each batch had."""

    threads: set[str] = field(default_factory=set)
    sizes: list[int] = field(default_factory=list)

    def run(self, batch: np.ndarray) -> np.ndarray:
        self.threads.add(threading.current_thread().name)
        self.sizes.append(len(batch))
        return super().run(batch)


@pytest.fixture(scope="module")
def catalog(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """100 rows, two of them broken: one missing image, one that is not an image."""
    path = write_fmnist_catalog(tmp_path_factory.mktemp("cat") / "shop", limit=100)
    rows = [json.loads(line) for line in path.read_text().splitlines()]
    (path.parent / "images" / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n not really")
    rows[7]["image"] = "images/broken.png"
    rows[40]["image"] = "images/missing.png"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def test_lanes_publish_the_same_files_as_one_run_at_a_time(catalog: Path, tmp_path: Path) -> None:
    one = rebuild(str(catalog), (tmp_path / "a").as_uri(), FakeEmbedder(), OPTS)
    embedder = CountingEmbedder()
    lanes = rebuild(str(catalog), (tmp_path / "b").as_uri(), embedder, LANES)
    assert lanes["count"] == one["count"] == 98 and len(lanes["skipped"]) == 2
    assert lanes["files"] == one["files"]  # name -> sha256: vectors, trees, thumbnails, metadata
    assert all(name.startswith("model-lane") for name in embedder.threads)
    assert max(embedder.sizes) <= 16 and sum(embedder.sizes) == 98


def test_skipped_rows_keep_their_line_and_reason_in_lanes(catalog: Path) -> None:
    loaded = load_catalog(catalog.as_uri())
    got = embed_items(loaded.catalog.items, loaded.base_uri, FakeEmbedder(), LANES)
    want = embed_items(loaded.catalog.items, loaded.base_uri, FakeEmbedder(), OPTS)
    assert [s["item_id"] for s in got.skipped] == [s["item_id"] for s in want.skipped]
    assert [s["line"] for s in got.skipped] == [8, 41] and all(s["reason"] for s in got.skipped)
    assert [i.item_id for i in got.items] == [i.item_id for i in want.items]
    np.testing.assert_array_equal(got.vectors, want.vectors)
    assert [got.thumbs[i] for i in range(len(got.thumbs))] == [want.thumbs[i] for i in range(len(want.thumbs))]


def test_lanes_use_and_fill_the_embedding_cache(catalog: Path, tmp_path: Path) -> None:
    opts = replace(LANES, embedding_cache=tmp_path / "cache.sqlite")
    cold = rebuild(str(catalog), (tmp_path / "a").as_uri(), FakeEmbedder(), opts)
    half = tmp_path / "half.jsonl"  # half the rows new to the cache: hits and misses share batches
    rows = catalog.read_text().splitlines()
    shutil.copytree(catalog.parent / "images", tmp_path / "images")
    for i, image in enumerate(sorted((tmp_path / "images").glob("fmnist-*.png"))[::2]):
        image.write_bytes(image.read_bytes() + bytes([i % 251]))  # other bytes, same picture: a cache miss
    half.write_text("\n".join(rows) + "\n")
    mixed = rebuild(str(half), (tmp_path / "b").as_uri(), FakeEmbedder(), opts)
    assert cold["embedding_cache"]["misses"] == 99  # 98 images and the broken one (looked up before decoding)
    assert 0 < mixed["embedding_cache"]["hits"] < 98 and mixed["embedding_cache"]["misses"] > 1
    assert mixed["embedding_cache"]["hits"] + mixed["embedding_cache"]["misses"] == 99
    plain = rebuild(str(half), (tmp_path / "c").as_uri(), FakeEmbedder(), OPTS)
    assert mixed["files"] == plain["files"]


def test_decode_threads_follow_the_lanes_unless_set() -> None:
    assert decode_threads(replace(OPTS, model_lanes=2, workers=2)) == 1  # two cores: one decode thread
    assert decode_threads(replace(OPTS, model_lanes=8, workers=8)) == 4  # int8 lanes on 8 cores stay fed
    assert decode_threads(replace(OPTS, model_lanes=1, workers=3)) == 3  # one run at a time: `workers`
    assert decode_threads(replace(OPTS, model_lanes=2, decode_threads=2)) == 2


@dataclass
class PoolWatchingEmbedder(FakeEmbedder):
    """The fake embedder, noting OpenCV's thread count each time a batch runs."""

    opencv_threads: list[int] = field(default_factory=list)

    def run(self, batch: np.ndarray) -> np.ndarray:
        self.opencv_threads.append(cv2.getNumThreads())
        return super().run(batch)


def test_the_job_runs_opencv_single_threaded_and_gives_its_pool_back(catalog: Path) -> None:
    loaded = load_catalog(catalog.as_uri())
    before = cv2.getNumThreads()
    cv2.setNumThreads(2)
    try:
        embedder = PoolWatchingEmbedder()
        got = embed_items(loaded.catalog.items, loaded.base_uri, embedder, LANES)
        assert len(got.items) == 98 and embedder.opencv_threads and set(embedder.opencv_threads) == {1}
        assert cv2.getNumThreads() == 2
    finally:
        cv2.setNumThreads(before)
