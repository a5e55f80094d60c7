"""The gate's self-match check: catalog images embedded as a search embeds them must come back first."""

from __future__ import annotations

import shutil
from dataclasses import replace
from pathlib import Path

import cv2
import numpy as np
import pytest

from ann_index.build.rebuild import RebuildOptions, RebuildRefused, rebuild
from ann_index.build.self_match import Probes, measure
from ann_index.catalog.demo import write_fmnist_catalog
from tests.ann_index.fakes import FakeEmbedder

OPTS = RebuildOptions(progress=False, n_trees=16, gate_queries=200)


@pytest.fixture(scope="module")
def fmnist_300(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_fmnist_catalog(tmp_path_factory.mktemp("cat") / "shop", limit=300)


@pytest.mark.parametrize("partitions", [1, 2])
def test_a_rebuild_embedding_as_the_search_path_passes_with_every_image_first(
    fmnist_300: Path, tmp_path: Path, partitions: int
) -> None:
    manifest = rebuild(
        str(fmnist_300), (tmp_path / "idx").as_uri(), FakeEmbedder(), replace(OPTS, partitions=partitions)
    )
    quality = manifest["quality"]
    assert quality["self_match_at_1"] == 1.0 and quality["self_match"]["queries"] == 300
    assert quality["self_match"]["own_cosine_min"] >= 0.9999 and quality["self_match"]["misses"] == []
    assert manifest["crop"] == "foreground"


def test_an_index_embedded_unlike_a_search_is_refused_and_the_misses_are_named(
    fmnist_300: Path, tmp_path: Path
) -> None:
    shutil.copytree(fmnist_300.parent, tmp_path / "shop")
    for n, path in enumerate(sorted((tmp_path / "shop" / "images").iterdir())):  # items off-centre on white
        img = cv2.imread(str(path))
        cv2.imwrite(
            str(path), cv2.copyMakeBorder(img, n % 97, 0, 0, 3 * (n % 61), cv2.BORDER_CONSTANT, value=(255,) * 3)
        )
    catalog, out = str(tmp_path / "shop" / "catalog.jsonl"), tmp_path / "idx"
    with pytest.raises(RebuildRefused, match=r"self-match@1 0\.\d+ < 0\.99: \d+ of 300 .*fmnist-train-\d{5} \(first"):
        rebuild(catalog, out.as_uri(), FakeEmbedder(), replace(OPTS, crop="full"))  # searches crop the foreground
    assert not (out / "CURRENT").exists()
    # Switched off, the same build publishes (and says nothing about self-match).
    manifest = rebuild(catalog, out.as_uri(), FakeEmbedder(), replace(OPTS, crop="full", self_match_queries=0))
    assert manifest["quality"]["self_match_at_1"] is None


def test_an_exact_duplicate_image_of_another_item_counts_as_found(fmnist_300: Path, tmp_path: Path) -> None:
    shutil.copytree(fmnist_300.parent, tmp_path / "shop")
    images = tmp_path / "shop" / "images"
    for n in range(1, 20):  # 20 items share one image: 19 of them cannot come back before all the others
        shutil.copy(images / "fmnist-train-00000.png", images / f"fmnist-train-{n:05d}.png")
    manifest = rebuild(str(tmp_path / "shop" / "catalog.jsonl"), (tmp_path / "idx").as_uri(), FakeEmbedder(), OPTS)
    assert manifest["quality"]["self_match_at_1"] == 1.0


def test_measure_names_what_came_first_instead() -> None:
    vecs = np.eye(4, dtype=np.float32)
    order = np.array([2, 0, 1, 3])  # annoy id -> input position
    probes = Probes(np.array([0, 1]), vecs[[1, 2]], ["a", "b", "c", "d"])  # inputs 0, 1 are annoy ids 1, 2
    got = measure(probes, order, vecs, lambda q: 1)  # the forest answers annoy id 1 (input 0, "a") to anything
    assert got.rate == 0.5 and got.missed == 1
    assert got.misses == [{"item_id": "b", "first": "a", "cosine": 1.0}]
