"""models/fmnist-lite0/train.py runs the shared training loop (embedder/training) with the demo model's recipe: a
smoke run of a few steps, then export.py, gives a model folder that onnxruntime and the serving `Embedder` load;
and the recipe's choices reach the network the way ff224d1's own loop set it up."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest
import torch

from embedder import Embedder
from embedder.training.loop import train_mode
from embedder.training.model_setup import build
from embedder.training.recipe import Recipe
from imgcore.card import sha256_file
from imgcore.fmnist import load_fmnist, render_catalog
from tests.helpers.paths import REPO

SCRIPTS = REPO / "models" / "fmnist-lite0"


def _script(name: str, *args: str) -> None:
    run = subprocess.run(
        [sys.executable, str(SCRIPTS / name), *args], capture_output=True, text=True, timeout=300, cwd=REPO
    )
    assert run.returncode == 0, run.stderr[-4000:]


@pytest.mark.stack  # runs the model's scripts
def test_a_smoke_run_of_train_then_export_gives_a_model_folder_that_serves(tmp_path: Path) -> None:
    run, model = tmp_path / "run", tmp_path / "model"
    _script("train.py", "--out", str(run), "--limit", "32", "--batch", "8", "--epochs", "1", "--no-progress")
    history = json.loads((run / "stages.json").read_text())
    recipe = history["recipe"]
    assert (recipe["head"], recipe["class_init"], recipe["batchnorm"], recipe["warmup_steps"]) == (
        "linear",
        "imprint",  # every item its own class, its weight imprinted (1.3.0 on; --no-identity: random)
        "batch",
        150,
    )
    assert recipe["image_size"] == 56 and recipe["freeze_blocks"] == 5 and recipe["images"] == 32
    assert [s["epochs"] for s in history["stages"]] == [1.0]

    _script("export.py", "--run", str(run), "--out", str(model), "--skip-eval", "--version", "0.0.1")
    card = json.loads((model / "card.json").read_text())
    assert card["sha256"] == sha256_file(model / "model.onnx") and card["training"]["stages"] == history["stages"]
    assert card["input"]["size"] == [56, 56] and "every item" in card["training"]["loss"]
    sess = ort.InferenceSession(str(model / "model.onnx"), providers=["CPUExecutionProvider"])
    out = sess.run(None, {"image": np.random.default_rng(0).uniform(0, 255, (3, 3, 56, 56)).astype(np.float32)})[0]
    assert out.shape == (3, 128) and np.allclose(np.linalg.norm(out, axis=1), 1.0, atol=1e-5)
    images, _ = load_fmnist("test")
    vec = Embedder(model, intra_threads=1).embed(render_catalog(images[0]))
    assert vec.shape == (1, 128)


def test_the_demo_recipe_sets_up_the_network_as_its_own_loop_did(tmp_path: Path) -> None:
    recipe = Recipe("fmnist", tmp_path, image_size=112, freeze_blocks=5, head="linear", batchnorm="batch")
    parts = build(recipe, categories=10, products=0)
    assert parts.model.head.bias is not None
    frozen = {id(m) for f in parts.frozen for m in f.modules()}
    norms = [m for m in parts.model.modules() if isinstance(m, torch.nn.BatchNorm2d)]
    train_mode(parts, "batch")
    assert all(not m.training for m in parts.frozen)  # no drop-connect in the frozen blocks either
    assert all(m.training == (id(m) not in frozen) for m in norms)  # the trainable blocks follow the batches
    train_mode(parts, "imagenet")  # imgsearch train's: every BatchNorm keeps its ImageNet statistics
    assert not any(m.training for m in norms) and parts.model.head.training


@pytest.mark.stack  # runs the model's script
def test_an_identity_run_trains_a_class_per_item_imprinted_from_its_catalog_image(tmp_path: Path) -> None:
    run = tmp_path / "run"
    _script(
        "train.py", "--out", str(run), "--limit", "32", "--batch", "8", "--epochs", "1", "--identity", "--no-progress"
    )
    assert json.loads((run / "stages.json").read_text())["recipe"]["class_init"] == "imprint"
    heads = torch.load(run / "checkpoint.pt", map_location="cpu", weights_only=False)["heads"]
    assert [tuple(h["weight"].shape) for h in heads] == [(10, 128), (32, 128)]  # categories, then the 32 items
