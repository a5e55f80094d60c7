"""The general-purpose embedder (models/general-lite0): its card pins the model, and it embeds real photos of
any kind (colour, grey, RGBA, odd sizes) into unit vectors that keep a photo nearer its own variants than
other photos."""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest

from ann_index.catalog.demo import write_fmnist_catalog
from embedder import Embedder
from imgcore.card import sha256_file
from imgcore.image import decode_image
from services.defaults import MODELS_DIR, model_uri
from tests.helpers.cli import build_index
from tests.helpers.paths import DATA

MODEL_DIR = MODELS_DIR / "general-lite0"
PHOTOS = sorted((DATA / "photos").glob("*.jpg"))


@pytest.fixture(scope="module")
def general() -> Embedder:
    return Embedder(MODEL_DIR, intra_threads=2, batch_size=8)


def test_card_pins_the_model_and_states_size_dim_projection_and_measured_quality() -> None:
    card = json.loads((MODEL_DIR / "card.json").read_text())
    assert card["sha256"] == sha256_file(MODEL_DIR / "model.onnx")
    assert card["input"]["size"] == [224, 224] and card["input"]["color"] == "RGB"
    assert card["output"] == {"name": "embedding", "dim": 256, "metric": "angular", "normalized": True}
    assert card["projection"]["seed"] and card["good_for"] and card["not_good_for"]
    by_dim = card["quality"]["by_dim"]
    assert set(by_dim) == {"1280", "512", "256", "128"} and by_dim["256"] == card["quality"]["this_model"]


def test_general_lite0_is_a_name_every_embedder_flag_accepts() -> None:
    assert model_uri("general-lite0") == MODEL_DIR.as_uri()
    assert model_uri(str(MODEL_DIR)) == MODEL_DIR.as_uri()


def test_colour_grey_rgba_and_odd_sizes_give_unit_vectors(general: Embedder) -> None:
    photo = decode_image(PHOTOS[0].read_bytes())
    grey = cv2.cvtColor(photo, cv2.COLOR_RGB2GRAY)
    rgba = np.dstack([photo, np.full(photo.shape[:2], 255, np.uint8)])
    variants = [photo, grey, rgba, photo[:7, :300], photo[:, :1], cv2.resize(photo, (1001, 37))]
    vectors = np.concatenate([general.embed(v) for v in variants])
    assert vectors.shape == (len(variants), 256) and np.isfinite(vectors).all()
    assert np.allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-4)


def test_a_photo_is_nearer_its_grey_flipped_and_resized_copies_than_other_photos(general: Embedder) -> None:
    photos = [decode_image(p.read_bytes()) for p in PHOTOS]
    assert len(photos) >= 3
    originals = general.embed_batch(photos)
    for i, photo in enumerate(photos):
        h, w = photo.shape[:2]
        copies = [
            cv2.cvtColor(cv2.cvtColor(photo, cv2.COLOR_RGB2GRAY), cv2.COLOR_GRAY2RGB),
            photo[:, ::-1].copy(),
            cv2.resize(photo, (w // 3, h // 3), interpolation=cv2.INTER_AREA),
        ]
        sims = general.embed_batch(copies) @ originals.T
        assert (sims.argmax(axis=1) == i).all(), (PHOTOS[i].name, sims.round(3))


@pytest.mark.stack  # runs the CLI
def test_index_build_takes_general_lite0_by_name(tmp_path: Path) -> None:
    catalog = write_fmnist_catalog(tmp_path / "catalog", limit=80)
    embedder = build_index(catalog, tmp_path / "index", "general-lite0")["embedder"]
    assert embedder["name"] == "general-lite0" and embedder["dim"] == 256
    assert embedder["sha256"] == sha256_file(MODEL_DIR / "model.onnx")
