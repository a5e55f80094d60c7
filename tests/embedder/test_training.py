"""`imgsearch train` for real: a short run on a small Fashion-MNIST catalog improves held-out R@1 over its base
(read from the card it writes), resumes from its checkpoint, and its folder is taken as it is by `index build
--embedder`, `models publish` and `imgsearch up --catalog --embedder` (served, with a bound index)."""

from __future__ import annotations

import hashlib
import json
import subprocess
from pathlib import Path
from typing import Any

import httpx
import pytest

from ann_index.catalog.demo import write_fmnist_catalog
from imgcore.card import sha256_file
from services.stack import free_port
from tests.helpers.cli import build_index, imgsearch_cmd
from tests.helpers.paths import DATA
from tests.helpers.wait import wait_until

pytestmark = pytest.mark.stack  # runs the CLI (and, once, the whole stack)

MINUTES = "0.75"
# 112 px (the catalog's own size) and a mostly frozen backbone: enough steps in 45 s on 2 busy cores.
RECIPE = ("--minutes", MINUTES, "--image-size", "112", "--freeze-blocks", "12", "--batch", "32", "--no-progress")


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, dict[str, Any]]:
    root = tmp_path_factory.mktemp("train")
    catalog = write_fmnist_catalog(root / "catalog", limit=400)
    out = root / "shop-model"
    run = subprocess.run(
        imgsearch_cmd("train", "--catalog", str(catalog), "--out", str(out), *RECIPE),
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert run.returncode == 0, run.stderr[-4000:]
    return catalog, out, json.loads((out / "card.json").read_text())


def test_a_short_run_beats_its_base_on_held_out_items_and_cards_how(trained: tuple[Path, Path, dict[str, Any]]) -> None:
    catalog, out, card = trained
    assert card["sha256"] == sha256_file(out / "model.onnx") and card["name"] == "shop-model"
    assert card["input"]["size"] == [112, 112] and card["output"]["dim"] == 128
    training = card["training"]
    assert training["catalog"]["sha256"] == hashlib.sha256(catalog.read_bytes()).hexdigest()
    assert training["recipe"]["freeze_blocks"] == 12 and training["steps"] > 0
    assert training["seconds"] <= float(MINUTES) * 60 + 30  # one step may end past the budget, not much more
    val = training["validation"]
    assert val["base"]["queries"] == val["trained"]["queries"] > 30
    assert val["trained"]["R@1"] > val["base"]["R@1"], val
    assert (out / "checkpoint.pt").is_file()


def test_resume_continues_from_the_checkpoint_without_training_past_the_budget(
    trained: tuple[Path, Path, dict[str, Any]],
) -> None:
    catalog, out, card = trained
    run = subprocess.run(
        imgsearch_cmd("train", "--catalog", str(catalog), "--out", str(out), "--resume", *RECIPE),
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert run.returncode == 0, run.stderr[-4000:]
    again = json.loads((out / "card.json").read_text())["training"]
    assert again["resumed"] is True and again["steps"] == card["training"]["steps"]


def test_the_folder_is_what_index_build_and_models_publish_take(
    trained: tuple[Path, Path, dict[str, Any]], tmp_path: Path
) -> None:
    catalog, out, card = trained
    manifest = build_index(catalog, tmp_path / "index", str(out))
    assert manifest["embedder"]["sha256"] == card["sha256"] and manifest["embedder"]["dim"] == 128
    store = tmp_path / "models"
    pub = subprocess.run(
        imgsearch_cmd("models", "publish", "--to", store.as_uri(), "--models-dir", str(out)),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert pub.returncode == 0, pub.stderr
    assert sha256_file(store / "shop-model" / "model.onnx") == card["sha256"]


def test_up_catalog_serves_the_trained_model_with_a_bound_index(
    trained: tuple[Path, Path, dict[str, Any]], tmp_path: Path
) -> None:
    catalog, out, card = trained
    port, data = free_port(), tmp_path / "var"
    proc = subprocess.Popen(
        imgsearch_cmd(
            "up", "--catalog", str(catalog), "--embedder", str(out), "--port", str(port), "--data", str(data)
        ),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        wait_until(
            lambda: httpx.get(url + "/readyz", timeout=2, trust_env=False).status_code == 200,
            240,
            ignoring=httpx.HTTPError,
            interval_s=0.5,
        )
        photo = (DATA / "photos" / "person.jpg").read_bytes()
        resp = httpx.post(url + "/v1/search?k=5", files={"image": photo}, timeout=60, trust_env=False)
        assert resp.status_code == 200, resp.text
        body = resp.json()
        assert body["models"]["embedder"]["sha256"] == card["sha256"]
        ids = {r["item_id"] for item in body["items"] for r in item["results"]}
        assert ids and all(i.startswith("fmnist-train-") for i in ids)
    finally:
        proc.terminate()
        assert proc.wait(timeout=60) == 0


def test_up_catalog_refuses_a_catalog_the_rebuild_would_refuse(tmp_path: Path) -> None:
    bad = tmp_path / "catalog.jsonl"
    row = {"item_id": "a", "image": "a.png", "category": "Bag", "title": "A"}
    bad.write_text(json.dumps(row) + "\n" + json.dumps(row) + "\n")
    run = subprocess.run(
        imgsearch_cmd("up", "--catalog", str(bad), "--data", str(tmp_path / "var")),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert run.returncode == 3 and "REFUSED" in run.stderr and "duplicate item_id" in run.stderr, run.stderr
