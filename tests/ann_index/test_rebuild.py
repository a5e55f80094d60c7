"""The rebuild job: publishes gated versions, refuses bad catalogs, never leaves CURRENT on a partial version."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import threading
from pathlib import Path

import pytest

from ann_index.build.rebuild import RebuildOptions, RebuildRefused, rebuild
from ann_index.catalog.demo import write_fmnist_catalog
from ann_index.serving.reader import IndexReader
from ann_index.version.publish import list_versions, read_current, sync_version
from imgcore.storage import open_store
from services.defaults import MODELS_DIR, REPO_ROOT
from tests.ann_index.fakes import FakeEmbedder
from tests.conftest import env_vars
from tests.helpers.cli import imgsearch_cmd
from tests.helpers.wait import wait_until

OPTS = RebuildOptions(progress=False, n_trees=16, gate_queries=200)


@pytest.fixture(scope="module")
def fmnist_200(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_fmnist_catalog(tmp_path_factory.mktemp("cat") / "shop", limit=200)


@pytest.fixture
def catalog(fmnist_200: Path, tmp_path: Path) -> Path:
    """A private copy, so a test may damage it."""
    shutil.copytree(fmnist_200.parent, tmp_path / "shop")
    return tmp_path / "shop" / "catalog.jsonl"


def _lines(path: Path) -> list[str]:
    return path.read_text().splitlines()


def test_rebuild_publishes_a_gated_version_bound_to_its_embedder(catalog: Path, tmp_path: Path) -> None:
    out = tmp_path / "idx"
    emb = FakeEmbedder()
    manifest = rebuild(str(catalog), out.as_uri(), emb, OPTS)
    assert (out / "CURRENT").read_text().strip() == manifest["version"]
    assert manifest["count"] == 200 and manifest["skipped"] == {"count": 0, "rows": []}
    assert manifest["embedder"]["sha256"] == emb.sha256 and manifest["embedder"]["dim"] == 64
    assert manifest["quality"]["recall_at_10"] >= 0.95 and manifest["quality"]["category_p_at_10"] > 0.5
    assert manifest["catalog"]["rows"] == 200 and manifest["timings_s"]["items_per_s"] > 0
    with IndexReader.open(out / "versions" / manifest["version"], embedder_sha256=emb.sha256, dim=64) as reader:
        hit = reader.query(reader.vector_of("fmnist-train-00005"), k=1)[0][0]
        assert hit.item_id == "fmnist-train-00005" and hit.title.endswith("#00005")
        assert hit.image == (catalog.parent / "images" / "fmnist-train-00005.png").as_uri()


def test_duplicate_ids_are_refused_and_leave_no_current(catalog: Path, tmp_path: Path) -> None:
    lines = _lines(catalog)
    catalog.write_text("\n".join([*lines, lines[7]]) + "\n")
    with pytest.raises(RebuildRefused, match=r"duplicate item_id.*line 201 \(fmnist-train-00007\)"):
        rebuild(str(catalog), (tmp_path / "idx").as_uri(), FakeEmbedder(), OPTS)
    assert not (tmp_path / "idx").exists()


def test_unreadable_images_over_one_percent_are_refused_and_leave_no_current(catalog: Path, tmp_path: Path) -> None:
    for i in (3, 50, 120):  # 1.5 % of the rows
        (catalog.parent / "images" / f"fmnist-train-{i:05d}.png").write_bytes(b"\x89PNG\r\n\x1a\n broken")
    with pytest.raises(RebuildRefused, match=r"3 of 200 rows failed.*line 4 \(fmnist-train-00003\)") as err:
        rebuild(str(catalog), (tmp_path / "idx").as_uri(), FakeEmbedder(), OPTS)
    assert "corrupt" in err.value.message or "not a recognised image" in err.value.message
    assert not (tmp_path / "idx" / "CURRENT").exists()


def test_a_few_bad_rows_are_skipped_and_listed_in_the_manifest(catalog: Path, tmp_path: Path) -> None:
    (catalog.parent / "images" / "fmnist-train-00009.png").unlink()
    manifest = rebuild(str(catalog), str(tmp_path / "idx"), FakeEmbedder(), OPTS)
    assert manifest["count"] == 199
    assert manifest["skipped"]["count"] == 1
    assert manifest["skipped"]["rows"][0]["line"] == 10
    assert manifest["skipped"]["rows"][0]["item_id"] == "fmnist-train-00009"


def test_empty_catalog_is_refused(tmp_path: Path) -> None:
    (tmp_path / "catalog.jsonl").write_text("\n\n")
    with pytest.raises(RebuildRefused, match="empty"):
        rebuild(str(tmp_path / "catalog.jsonl"), str(tmp_path / "idx"), FakeEmbedder(), OPTS)
    assert not (tmp_path / "idx").exists()


def test_gate_failure_keeps_the_old_current(catalog: Path, tmp_path: Path) -> None:
    out = tmp_path / "idx"
    old = rebuild(str(catalog), out.as_uri(), FakeEmbedder(), OPTS)["version"]
    impossible = RebuildOptions(progress=False, n_trees=1, recall_target=1.01)
    with pytest.raises(RebuildRefused, match="quality gate failed"):
        rebuild(str(catalog), out.as_uri(), FakeEmbedder(), impossible)
    assert (out / "CURRENT").read_text().strip() == old
    assert list_versions(open_store(out.as_uri()), complete_only=False) == [old]


def test_catalog_images_and_index_on_s3(fmnist_200: Path, tmp_path: Path, s3_endpoint: str, s3_bucket: str) -> None:
    with open_store(f"{s3_bucket}/catalog", s3_endpoint_url=s3_endpoint) as store:
        lines = _lines(fmnist_200)[:60]
        store.put_bytes("catalog.jsonl", ("\n".join(lines) + "\n").encode())
        for line in lines:
            image = json.loads(line)["image"]
            store.put_file(image, fmnist_200.parent / image)
    opts = RebuildOptions(progress=False, n_trees=8, s3_endpoint_url=s3_endpoint)
    manifest = rebuild(f"{s3_bucket}/catalog/catalog.jsonl", f"{s3_bucket}/index", FakeEmbedder(), opts)
    with open_store(f"{s3_bucket}/index", s3_endpoint_url=s3_endpoint) as store:
        assert read_current(store) == manifest["version"]
        local = sync_version(store, manifest["version"], tmp_path / "cache")
    with IndexReader.open(local, embedder_sha256=FakeEmbedder().sha256, dim=64) as reader:
        hit = reader.query(reader.vector_of("fmnist-train-00001"), k=1)[0][0]
        assert hit.image == f"{s3_bucket}/catalog/images/fmnist-train-00001.png"


@pytest.mark.stack
@pytest.mark.skipif(not (MODELS_DIR / "fmnist-lite0" / "model.onnx").is_file(), reason="embedder model missing")
@pytest.mark.parametrize("kill_when", ["embedding", "publishing"])
def test_killed_cli_build_never_moves_current_to_a_partial_version(
    kill_when: str, fmnist_200: Path, tmp_path: Path
) -> None:
    catalog = write_fmnist_catalog(tmp_path / "shop", limit=600)
    out = tmp_path / "idx"
    old = rebuild(str(catalog), out.as_uri(), FakeEmbedder(), OPTS)["version"]
    env = {**os.environ, "IMGSEARCH_VAR_DIR": str(tmp_path / "var"), "PYTHONUNBUFFERED": "1"}
    cmd = imgsearch_cmd("index", "build", "--catalog", str(catalog), "--out", out.as_uri(), "--n-trees", "8")
    proc = subprocess.Popen(cmd, cwd=REPO_ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    stderr = bytearray()

    def pump() -> None:  # the progress bar is how we know the job is mid-way
        assert proc.stderr is not None
        while chunk := os.read(proc.stderr.fileno(), 4096):
            stderr.extend(chunk)

    threading.Thread(target=pump, daemon=True).start()
    versions = out / "versions"

    def kill_now() -> bool:
        if kill_when == "embedding":
            return b"item/s]" in stderr and b" 0/600" not in stderr[-80:]
        return len(os.listdir(versions)) > 1

    wait_until(lambda: proc.poll() is not None or kill_now(), 60, interval_s=0.001)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    current = (out / "CURRENT").read_text().strip()
    if kill_when == "embedding":
        assert current == old, stderr.decode(errors="replace")[-2000:]
    else:  # killed at some point of publishing: CURRENT is the old version or the new, complete one
        assert current == old or proc.returncode == 0 or current in list_versions(open_store(out.as_uri()))
    with IndexReader.open(versions / current, embedder_sha256=None, dim=None) as index:
        assert index.count == 600


@pytest.mark.stack
def test_cli_refusal_exits_non_zero_with_a_clear_message(catalog: Path, tmp_path: Path) -> None:
    lines = _lines(catalog)
    catalog.write_text("\n".join([*lines, lines[0]]) + "\n")
    with env_vars(IMGSEARCH_VAR_DIR=str(tmp_path / "var")):
        done = subprocess.run(
            imgsearch_cmd("index", "build", "--catalog", str(catalog), "--out", str(tmp_path / "idx")),
            cwd=REPO_ROOT, capture_output=True, text=True, timeout=120,
        )  # fmt: skip
    assert done.returncode == 3
    assert "REFUSED, nothing published, CURRENT unchanged" in done.stderr and "duplicate item_id" in done.stderr
    assert not (tmp_path / "idx" / "CURRENT").exists()
