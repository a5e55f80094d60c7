"""Sharded rebuild end to end: `imgsearch index build --shard i/N` pods, then `--merge-shards N`.

Why a sharded build can equal a single-process one exactly: the merge returns the vectors in catalog
order (ann_index.shards.spec.merge_shards), the index items are built from the same catalog rows, and annoy is
seeded; what remains is whether the embedder gives an image the same vector whatever batch it lands in.
The ONNX CPU kernels compute each batch row on its own, so the vectors are bit-identical (checked below on
vectors.npy first, so a failure says which link broke), hence identical annoy files and search results.
"""

from __future__ import annotations

import json
import os
import shutil
import sqlite3
import subprocess
from collections import Counter
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from ann_index.build.rebuild import RebuildOptions, RebuildRefused, rebuild
from ann_index.catalog.demo import write_fmnist_catalog
from ann_index.serving.reader import IndexReader
from ann_index.shards.job import embed_shard, merge_and_publish, shard_run_id
from ann_index.shards.spec import ShardSpec, shard_of
from services.defaults import MODELS_DIR, REPO_ROOT
from tests.ann_index.fakes import FakeEmbedder
from tests.helpers.cli import imgsearch_cmd

N = 3
ITEMS = 200
FLAGS = ("--n-trees", "16", "--seed", "7", "--workers", "2", "--no-progress")
# Self-match off in the in-process builds: the fake embedder's vectors say nothing of it (the CLI test runs it).
OPTS = RebuildOptions(progress=False, n_trees=16, seed=7, gate_queries=200, self_match_queries=0)
HAVE_MODEL = (MODELS_DIR / "fmnist-lite0" / "model.onnx").is_file()


def _version_dir(out: Path) -> Path:
    return out / "versions" / (out / "CURRENT").read_text().strip()


def assert_same_index(sharded: Path, plain: Path) -> None:
    """Two published version folders hold the same index: vectors, files, and every search result."""
    a, b = json.loads((sharded / "manifest.json").read_text()), json.loads((plain / "manifest.json").read_text())
    va, vb = np.load(sharded / "vectors.npy"), np.load(plain / "vectors.npy")
    assert va.shape == vb.shape == (a["count"], a["embedder"]["dim"])
    assert np.array_equal(va, vb), (
        f"merged vectors differ from the single-process ones (max |diff| {np.abs(va - vb).max():.3g}): the "
        "merge order is wrong, or the embedder's output depends on the batch an image is in"
    )
    assert a["files"] == b["files"], "same vectors, items and seed must give byte-identical index files"
    assert a["version"].split("-")[-1] == b["version"].split("-")[-1]  # the content part of the version
    for key in ("count", "categories", "search_k", "n_trees", "seed", "embedder", "quality", "skipped"):
        assert a[key] == b[key], key
    with (
        IndexReader.open(sharded, embedder_sha256=None, dim=None) as ra,
        IndexReader.open(plain, embedder_sha256=None, dim=None) as rb,
    ):
        ids = [row[0] for row in sqlite3.connect(plain / "meta.sqlite").execute("SELECT item_id FROM items")]
        queries = np.stack([rb.vector_of(x) for x in ids])
        for category in (None, *sorted(rb.categories)):
            got = ra.query(queries, k=10, category=category)
            want = rb.query(queries, k=10, category=category)
            assert [[(h.item_id, h.score) for h in hits] for hits in got] == [
                [(h.item_id, h.score) for h in hits] for hits in want
            ], f"neighbours differ (category {category})"


def assert_every_item_once(version: Path, catalog: Path) -> None:
    expected = [json.loads(line)["item_id"] for line in catalog.read_text().splitlines()]
    rows = [r[0] for r in sqlite3.connect(version / "meta.sqlite").execute("SELECT item_id FROM items")]
    assert not [x for x, n in Counter(rows).items() if n > 1], "an item indexed twice"
    assert sorted(rows) == sorted(expected), "every catalog item, and nothing else"
    assert np.load(version / "vectors.npy", mmap_mode="r").shape[0] == len(expected)
    manifest = json.loads((version / "manifest.json").read_text())
    assert manifest["count"] == len(expected) and sum(c["count"] for c in manifest["categories"].values()) == ITEMS


# --- real subprocesses, real embedder -------------------------------------------------------------------


@dataclass
class Runs:
    catalog: Path
    sharded: Path
    plain: Path
    early_merge: subprocess.CompletedProcess[str]
    rerun: subprocess.CompletedProcess[str]
    shard_bytes_before_rerun: bytes
    shard_bytes_after_rerun: bytes
    merge: subprocess.CompletedProcess[str]


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> Runs:
    if not HAVE_MODEL:
        pytest.skip("embedder model missing (models/fmnist-lite0/model.onnx)")
    tmp = tmp_path_factory.mktemp("sharded-cli")
    catalog = write_fmnist_catalog(tmp / "shop", limit=ITEMS)
    env = {**os.environ, "IMGSEARCH_VAR_DIR": str(tmp / "var"), "PYTHONUNBUFFERED": "1"}
    sharded, plain = tmp / "sharded", tmp / "plain"
    base = ("index", "build", "--catalog", str(catalog), *FLAGS)

    def run(*args: str) -> subprocess.CompletedProcess[str]:
        cmd = imgsearch_cmd(*base, *args)
        return subprocess.run(cmd, cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=240)

    def ok(done: subprocess.CompletedProcess[str]) -> subprocess.CompletedProcess[str]:
        assert done.returncode == 0, f"{' '.join(done.args)}\n{done.stdout}\n{done.stderr[-3000:]}"
        return done

    # Shards 0 and 2 run at once (like pods of the Indexed Job), then a premature merge, then shard 1.
    procs = [
        subprocess.Popen(
            imgsearch_cmd(*base, "--out", sharded.as_uri(), f"--shard={i}/{N}"),
            cwd=REPO_ROOT,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )  # fmt: skip
        for i in (0, 2)
    ]
    for proc in procs:
        out, err = proc.communicate(timeout=240)
        assert proc.returncode == 0, f"{proc.args}\n{out}\n{err[-3000:]}"
    early_merge = run("--out", sharded.as_uri(), f"--merge-shards={N}")
    ok(run("--out", sharded.as_uri(), "--shard", f"1/{N}"))
    (shard_file,) = (sharded / "shards").glob("*/1.npz")
    before = shard_file.read_bytes()
    rerun = ok(run("--out", sharded.as_uri(), "--shard", f"1/{N}"))
    after = shard_file.read_bytes()
    merge = ok(run("--out", sharded.as_uri(), "--merge-shards", str(N)))
    ok(run("--out", str(plain)))
    return Runs(catalog, _version_dir(sharded), _version_dir(plain), early_merge, rerun, before, after, merge)


@pytest.mark.stack
def test_merge_before_every_shard_is_there_refuses(runs: Runs) -> None:
    assert runs.early_merge.returncode == 3, runs.early_merge.stderr[-2000:]
    assert "REFUSED, nothing published, CURRENT unchanged" in runs.early_merge.stderr
    assert "missing [1]" in runs.early_merge.stderr


@pytest.mark.stack
def test_a_complete_shard_is_not_embedded_again(runs: Runs) -> None:
    assert "already complete" in runs.rerun.stdout
    assert runs.shard_bytes_after_rerun == runs.shard_bytes_before_rerun


@pytest.mark.stack
def test_sharded_build_publishes_every_item_once_and_cleans_up(runs: Runs) -> None:
    assert f"from {N} shards" in runs.merge.stdout
    assert_every_item_once(runs.sharded, runs.catalog)
    manifest = json.loads((runs.sharded / "manifest.json").read_text())
    assert manifest["shards"]["count"] == N and manifest["shards"]["run"].startswith(f"hash{N}-")
    assert not list((runs.sharded.parent.parent / "shards").rglob("*.npz")), "spent shard files are deleted"


@pytest.mark.stack
def test_sharded_build_equals_a_single_process_build(runs: Runs) -> None:
    assert_every_item_once(runs.plain, runs.catalog)
    assert_same_index(runs.sharded, runs.plain)


# --- in process, fake embedder: the same properties without the model, and the refusals ----------------


@pytest.fixture(scope="module")
def fmnist(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_fmnist_catalog(tmp_path_factory.mktemp("cat") / "shop", limit=ITEMS)


@pytest.fixture
def catalog(fmnist: Path, tmp_path: Path) -> Path:
    shutil.copytree(fmnist.parent, tmp_path / "shop")
    return tmp_path / "shop" / "catalog.jsonl"


def _sharded(catalog: Path, out: Path, count: int = N) -> dict[str, Any]:
    for i in range(count):
        embed_shard(str(catalog), out.as_uri(), FakeEmbedder(), ShardSpec(i, count), OPTS)
    return merge_and_publish(str(catalog), out.as_uri(), FakeEmbedder(), count, OPTS)


def test_in_process_sharded_equals_rebuild_with_skipped_rows(catalog: Path, tmp_path: Path) -> None:
    (catalog.parent / "images" / "fmnist-train-00009.png").unlink()  # one bad row: within the 1 % budget
    sharded = _sharded(catalog, tmp_path / "sharded")
    plain = rebuild(str(catalog), (tmp_path / "plain").as_uri(), FakeEmbedder(), OPTS)
    assert sharded["count"] == plain["count"] == ITEMS - 1
    assert sharded["skipped"] == plain["skipped"]  # same line, id and reason
    assert sharded["skipped"]["rows"][0]["item_id"] == "fmnist-train-00009"
    assert_same_index(_version_dir(tmp_path / "sharded"), _version_dir(tmp_path / "plain"))


def test_a_catalog_changed_after_embedding_is_refused(catalog: Path, tmp_path: Path) -> None:
    out = tmp_path / "idx"
    for i in range(N):
        embed_shard(str(catalog), out.as_uri(), FakeEmbedder(), ShardSpec(i, N), OPTS)
    lines = catalog.read_text().splitlines()
    catalog.write_text("\n".join(lines[:-1]) + "\n")  # a row removed: another run id
    with pytest.raises(RebuildRefused, match=r"missing \[0, 1, 2\]"):
        merge_and_publish(str(catalog), out.as_uri(), FakeEmbedder(), N, OPTS)
    with pytest.raises(RebuildRefused, match=r"missing \[0, 1\]"):  # N must agree with the embed step
        merge_and_publish(str(catalog), out.as_uri(), FakeEmbedder(), 2, OPTS)
    assert not (out / "CURRENT").exists()


def test_a_shard_over_the_failure_budget_writes_nothing(catalog: Path, tmp_path: Path) -> None:
    ids = [json.loads(line)["item_id"] for line in catalog.read_text().splitlines()]
    bad = [x for x in ids if shard_of(x, N) == 1][:3]  # 3 of 200 rows > 1 %, all in shard 1
    for x in bad:
        (catalog.parent / "images" / f"{x}.png").write_bytes(b"\x89PNG\r\n\x1a\n broken")
    out = tmp_path / "idx"
    assert embed_shard(str(catalog), out.as_uri(), FakeEmbedder(), ShardSpec(0, N), OPTS).embedded > 0
    with pytest.raises(RebuildRefused, match=r"shard 1/3: 3 of 200 rows failed"):
        embed_shard(str(catalog), out.as_uri(), FakeEmbedder(), ShardSpec(1, N), OPTS)
    assert [p.name for p in (out / "shards").rglob("*.npz")] == ["0.npz"]


def test_crop_mode_is_part_of_the_run_id() -> None:
    sha = "a" * 64
    full = shard_run_id(sha, sha, 8, RebuildOptions(crop="full"))
    fg = shard_run_id(sha, sha, 8, RebuildOptions(crop="foreground"))
    assert full != fg and full.startswith("hash8-") and fg.startswith("hash8-")


def test_a_sharded_rebuild_publishes_a_partitioned_version_like_a_single_process_one(
    catalog: Path, tmp_path: Path
) -> None:
    opts = replace(OPTS, partitions=2)
    for i in range(N):
        embed_shard(str(catalog), (tmp_path / "sharded").as_uri(), FakeEmbedder(), ShardSpec(i, N), opts)
    sharded = merge_and_publish(str(catalog), (tmp_path / "sharded").as_uri(), FakeEmbedder(), N, opts)
    plain = rebuild(str(catalog), (tmp_path / "plain").as_uri(), FakeEmbedder(), opts)
    assert sharded["partitions"] == plain["partitions"] == 2 and sharded["count"] == ITEMS
    data_files = [{k: v for k, v in m["files"].items() if not k.endswith("manifest.json")} for m in (sharded, plain)]
    assert data_files[0] == data_files[1]  # every part's data files byte-identical (manifests carry the build time)
    assert (_version_dir(tmp_path / "sharded") / "part-1" / "index.ann").is_file()
