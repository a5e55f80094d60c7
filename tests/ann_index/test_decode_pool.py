"""Decode worker processes: the same thumbnails, pixels and index as the decode threads, typed errors across."""

from __future__ import annotations

import os
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from ann_index.build.decode_pool import NICENESS, DecodePool, PixelWork
from ann_index.build.rebuild import RebuildOptions, rebuild
from ann_index.catalog.demo import write_fmnist_catalog
from imgcore.errors import InvalidImage
from imgcore.image import DecodeLimits
from tests.ann_index.fakes import FakeEmbedder

OPTS = RebuildOptions(progress=False, n_trees=16, gate_queries=200)


@pytest.fixture(scope="module")
def catalog(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_fmnist_catalog(tmp_path_factory.mktemp("cat") / "shop", limit=120)


def _images(catalog: Path, n: int) -> list[bytes]:
    return [p.read_bytes() for p in sorted((catalog.parent / "images").glob("*.png"))[:n]]


def test_workers_give_the_thumbnails_and_pixels_of_the_calling_thread(catalog: Path) -> None:
    work = PixelWork(FakeEmbedder(), DecodeLimits(), "foreground")
    with DecodePool(work, 2) as pool:
        for data in _images(catalog, 6):
            thumb, pixels = pool(data, True)
            want_thumb, want_pixels = work(data, True)
            assert thumb == want_thumb and pixels is not None and want_pixels is not None
            np.testing.assert_array_equal(pixels, want_pixels)
        assert pool(data, False) == (want_thumb, None)  # a cache hit: thumbnail only


def test_a_corrupt_image_raises_the_typed_error_through_a_worker(catalog: Path) -> None:
    with DecodePool(PixelWork(FakeEmbedder(), DecodeLimits(), "full"), 1) as pool:
        with pytest.raises(InvalidImage) as err:
            pool(b"\x89PNG\r\n\x1a\n broken", True)
        assert err.value.status == 415 and err.value.reason in ("corrupt", "not_an_image")
        assert pool(_images(catalog, 1)[0], True)[1] is not None  # the worker is still there


def test_workers_run_at_lower_priority(catalog: Path) -> None:
    with DecodePool(PixelWork(FakeEmbedder(), DecodeLimits(), "full"), 1) as pool:
        assert pool._pool is not None
        (child,) = pool._pool._processes.values()  # type: ignore[union-attr]
        fields = Path(f"/proc/{child.pid}/stat").read_text().rsplit(")", 1)[1].split()
        assert int(fields[16]) == os.nice(0) + NICENESS  # field 19 of stat: nice


def test_rebuild_with_decode_processes_publishes_the_same_index(catalog: Path, tmp_path: Path) -> None:
    threads = rebuild(str(catalog), (tmp_path / "a").as_uri(), FakeEmbedder(), OPTS)
    processes = rebuild(str(catalog), (tmp_path / "b").as_uri(), FakeEmbedder(), replace(OPTS, decode_processes=2))
    assert processes["count"] == threads["count"] == 120
    assert processes["files"] == threads["files"]  # name -> sha256: vectors, trees, thumbnails, metadata


def test_decode_processes_with_the_embedding_cache_hit_on_the_second_build(catalog: Path, tmp_path: Path) -> None:
    opts = replace(OPTS, decode_processes=2, embedding_cache=tmp_path / "cache.sqlite")
    cold = rebuild(str(catalog), (tmp_path / "a").as_uri(), FakeEmbedder(), opts)
    warm = rebuild(str(catalog), (tmp_path / "b").as_uri(), FakeEmbedder(), opts)
    assert cold["embedding_cache"]["misses"] == 120 and warm["embedding_cache"]["hits"] == 120
    assert warm["files"] == cold["files"]
