"""Catalog image references stay inside the catalog's folder: a rebuild never reads a file a row points
outside it to (`..`, percent-encoded dots), and absolute references work only when the catalog's owner
allows them (`--allow-absolute-images`). Refused rows are skipped with their reason, within the budget."""

from __future__ import annotations

import json
import shutil
from dataclasses import replace
from pathlib import Path

import pytest

from ann_index.build.rebuild import RebuildOptions, rebuild
from ann_index.catalog.demo import write_fmnist_catalog
from ann_index.serving.reader import IndexReader
from imgcore.errors import NotFound
from services.cli import build_parser
from services.cli.index import _options
from tests.ann_index.fakes import FakeEmbedder
from tests.conftest import LocalHttpServer

OPTS = RebuildOptions(  # counts requests: the gate's self-match sample (test_self_match.py) fetches more
    progress=False, n_trees=8, gate_queries=100, max_fail_fraction=0.1, self_match_queries=0
)
TO_ROOT = "../" * 40  # more than enough to climb from any temp folder to "/"
INSIDE_ONLY = "is not a path inside the catalog's folder"
ABSOLUTE = "is absolute; this catalog allows only paths inside its folder"


@pytest.fixture(scope="module")
def fmnist_100(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_fmnist_catalog(tmp_path_factory.mktemp("cat") / "shop", limit=100)


def _with_rows(src: Path, dest: Path, images: dict[str, str]) -> Path:
    """A copy of the catalog folder in `dest`/shop plus one row per (item_id, image ref)."""
    shutil.copytree(src.parent, dest / "shop")
    lines = (dest / "shop" / "catalog.jsonl").read_text().splitlines()
    rows = [json.dumps({"item_id": k, "image": v, "category": "Bag", "title": k}) for k, v in images.items()]
    (dest / "shop" / "catalog.jsonl").write_text("\n".join([*lines, *rows]) + "\n")
    return dest / "shop" / "catalog.jsonl"


def _reasons(manifest: dict[str, object]) -> dict[str, str]:
    return {row["item_id"]: row["reason"] for row in manifest["skipped"]["rows"]}  # type: ignore[index]


def test_refs_leaving_the_catalog_folder_are_skipped_and_never_read(fmnist_100: Path, tmp_path: Path) -> None:
    # A valid image just outside the catalog folder: if any row reached it, it would be in the index.
    shutil.copy(fmnist_100.parent / "images" / "fmnist-train-00000.png", tmp_path / "outside.png")
    climbs = {
        "dotdot": "../outside.png",
        "encoded": "%2e%2e/outside.png",
        "mixed-case": "images/%2E%2e/../outside.png",
        "hostname": TO_ROOT + "etc/hostname",
        "hostname-encoded": "%2e%2e/" * 40 + "etc/hostname",
        "backslash": "images\\..\\..\\outside.png",
    }
    absolute = {"file-uri": (tmp_path / "outside.png").as_uri(), "path": str(tmp_path / "outside.png")}
    catalog = _with_rows(fmnist_100, tmp_path, {**climbs, **absolute})
    manifest = rebuild(str(catalog), (tmp_path / "idx").as_uri(), FakeEmbedder(), OPTS)
    reasons = _reasons(manifest)
    assert manifest["count"] == 100 and sorted(reasons) == sorted([*climbs, *absolute])
    assert all(INSIDE_ONLY in reasons[k] or "backslash" in reasons[k] for k in climbs), reasons
    assert all(ABSOLUTE in reasons[k] for k in absolute), reasons
    with IndexReader.open(tmp_path / "idx" / "versions" / manifest["version"], embedder_sha256=None, dim=64) as r:
        for item_id in reasons:
            with pytest.raises(NotFound):
                r.item(item_id)


def test_absolute_refs_are_indexed_only_with_the_option(fmnist_100: Path, tmp_path: Path) -> None:
    outside = tmp_path / "elsewhere" / "shoe.png"
    outside.parent.mkdir()
    shutil.copy(fmnist_100.parent / "images" / "fmnist-train-00003.png", outside)
    catalog = _with_rows(fmnist_100, tmp_path, {"uri": outside.as_uri(), "path": str(outside), "up": "../x.png"})
    opts = replace(OPTS, allow_absolute_images=True)
    manifest = rebuild(str(catalog), (tmp_path / "idx").as_uri(), FakeEmbedder(), opts)
    assert manifest["count"] == 102 and list(_reasons(manifest)) == ["up"]  # relative refs stay confined
    with IndexReader.open(tmp_path / "idx" / "versions" / manifest["version"], embedder_sha256=None, dim=64) as r:
        assert r.item("uri").image == r.item("path").image == outside.as_uri()


def test_refs_of_a_catalog_over_http_request_nothing_outside_its_prefix(
    fmnist_100: Path, tmp_path: Path, http_server: LocalHttpServer
) -> None:
    shutil.copy(fmnist_100.parent / "images" / "fmnist-train-00001.png", http_server.root / "secret.png")
    catalog = _with_rows(fmnist_100, http_server.root, {"up": "../secret.png", "encoded": "%2e%2e/secret.png"})
    assert catalog.parent == http_server.root / "shop"
    manifest = rebuild(f"{http_server.url}/shop/catalog.jsonl", (tmp_path / "idx").as_uri(), FakeEmbedder(), OPTS)
    assert sorted(_reasons(manifest)) == ["encoded", "up"] and manifest["count"] == 100
    outside = {path for _, path in http_server.requests if not path.startswith("/shop/")}
    assert outside == set() and len(http_server.requests) == 102  # the catalog, its kinds.json, its 100 images


def test_the_build_flag_sets_the_option() -> None:
    base = ["index", "build", "--catalog", "c.jsonl", "--out", "idx"]
    assert _options(build_parser().parse_args(base)).allow_absolute_images is False
    assert _options(build_parser().parse_args([*base, "--allow-absolute-images"])).allow_absolute_images is True
