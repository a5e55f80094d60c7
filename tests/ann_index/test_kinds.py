"""A catalog's kinds.json (item kinds -> categories): parsed, checked, carried into the published manifest."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from ann_index.build.rebuild import RebuildOptions, rebuild
from ann_index.catalog.demo import FMNIST_KINDS, write_fmnist_catalog
from ann_index.catalog.kinds import KINDS_NAME, parse_kinds, restrict_kinds
from imgcore.errors import InvalidInput
from tests.ann_index.fakes import FakeEmbedder

OPTS = RebuildOptions(progress=False, n_trees=16, gate_queries=200)


@pytest.fixture(scope="module")
def shop(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_fmnist_catalog(tmp_path_factory.mktemp("cat") / "shop", limit=200).parent


def test_kinds_json_must_map_each_kind_to_a_list_of_categories() -> None:
    assert parse_kinds('{"kinds": {"top": ["Shirt", "Coat", "Shirt"]}}') == {"top": ["Shirt", "Coat"]}
    for bad in ("[]", '{"top": ["Shirt"]}', '{"kinds": {"top": "Shirt"}}', '{"kinds": {"top": []}}', "{"):
        with pytest.raises(InvalidInput):
            parse_kinds(bad)


def test_categories_the_catalog_lacks_are_left_out() -> None:
    kinds = {"top": ["Shirt", "Cape"], "hat": ["Hat"]}
    assert restrict_kinds(kinds, {"Shirt": 3, "Bag": 1}) == {"top": ["Shirt"]}


def test_the_demo_catalog_declares_its_kinds_and_the_manifest_carries_them(shop: Path, tmp_path: Path) -> None:
    assert json.loads((shop / KINDS_NAME).read_text()) == {"kinds": FMNIST_KINDS}
    manifest = rebuild(str(shop / "catalog.jsonl"), (tmp_path / "idx").as_uri(), FakeEmbedder(), OPTS)
    assert manifest["kinds"] == FMNIST_KINDS  # 200 items hold every Fashion-MNIST class


def test_a_catalog_without_kinds_publishes_none_and_a_broken_one_is_refused(shop: Path, tmp_path: Path) -> None:
    plain = tmp_path / "plain"
    shutil.copytree(shop, plain)
    (plain / KINDS_NAME).unlink()
    assert "kinds" not in rebuild(str(plain / "catalog.jsonl"), (tmp_path / "a").as_uri(), FakeEmbedder(), OPTS)
    (plain / KINDS_NAME).write_text('{"kinds": {"top": "Shirt"}}')
    with pytest.raises(InvalidInput, match="top"):
        rebuild(str(plain / "catalog.jsonl"), (tmp_path / "b").as_uri(), FakeEmbedder(), OPTS)
    assert not (tmp_path / "b" / "CURRENT").exists()
