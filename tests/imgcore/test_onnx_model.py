"""OnnxModel, the lifecycle Detector and Embedder share: card, checksum, session, input/output checks.

Real ONNX models from models/ where a session is needed; a fake session where the point is what is
checked before or instead of onnxruntime. Also the one card parser and the one L2 normalisation.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from detector import Detector
from embedder import Embedder
from imgcore.card import load_card, sha256_file
from imgcore.errors import ChecksumMismatch, StoreError
from imgcore.onnx_model import OnnxModel
from imgcore.runtime import ModelSession
from imgcore.vectors import l2_normalise
from tests.helpers.paths import REPO

MODELS = REPO / "models"
EMBEDDER_DIR = MODELS / "fmnist-lite0"
DETECTOR_DIR = MODELS / "nanodet-m"


class Recording(OnnxModel):
    """Records the order of the hooks and what they were given."""

    def __init__(self, model_dir: Path, **kw: Any) -> None:
        self.calls: list[str] = []
        super().__init__(model_dir, **kw)

    def _read_card(self, card: dict[str, Any]) -> None:
        self.calls.append(f"read_card:{card['name']}")
        if card.get("input", {}).get("name") == "refuse-me":
            raise StoreError("this card is not usable")

    def _bind(self, session: ModelSession) -> None:
        self.calls.append("bind")
        self.inputs, self.outputs = session.input_names, session.output_names
        self._require("input", self._card["input"]["name"], session.input_names)


class FakeSession:
    def __init__(self, inputs: list[str], outputs: list[str]) -> None:
        self.input_names, self.output_names = inputs, outputs

    def run(self, feeds: dict[str, np.ndarray]) -> list[np.ndarray]:
        raise AssertionError("not run in these tests")


def copy_card(src: Path, dest: Path, **changes: Any) -> dict[str, Any]:
    """dest/card.json = src's card with `changes`; a key set to None is removed."""
    card = json.loads((src / "card.json").read_text())
    for key, value in changes.items():
        if value is None:
            card.pop(key, None)
        else:
            card[key] = value
    dest.mkdir(parents=True, exist_ok=True)
    (dest / "card.json").write_text(json.dumps(card))
    return card


# --- real models -----------------------------------------------------------------------------------


@pytest.mark.parametrize("folder", [EMBEDDER_DIR, DETECTOR_DIR], ids=lambda p: p.name)
def test_hooks_run_in_order_on_a_real_model_and_see_its_session(folder: Path) -> None:
    model = Recording(folder)
    card = json.loads((folder / "card.json").read_text())
    assert model.calls == [f"read_card:{card['name']}", "bind"]
    assert model.inputs == [card["input"]["name"]]
    assert len(model.outputs) >= 1


@pytest.mark.parametrize("cls, folder", [(Embedder, EMBEDDER_DIR), (Detector, DETECTOR_DIR)], ids=["emb", "det"])
def test_info_is_the_cards_identity_and_the_files_hash(cls: type[OnnxModel], folder: Path) -> None:
    model = cls(folder)
    card = json.loads((folder / "card.json").read_text())
    assert isinstance(model, OnnxModel)
    assert model.info() == {"name": card["name"], "version": card["version"], "sha256": card["sha256"]}
    assert model.sha256 == sha256_file(folder / "model.onnx")


def test_card_is_a_copy_callers_cannot_change_the_model_through() -> None:
    model = Recording(EMBEDDER_DIR)
    model.card["name"] = "changed"
    assert model.name == "fmnist-lite0"


@pytest.mark.parametrize("cls", [Recording, Embedder, Detector])
def test_model_not_matching_its_card_is_refused_unless_told_to_skip(cls: type[OnnxModel], tmp_path: Path) -> None:
    source = EMBEDDER_DIR if cls is not Detector else DETECTOR_DIR
    copy_card(source, tmp_path, sha256="ab" * 32)
    (tmp_path / "model.onnx").symlink_to(source / "model.onnx")
    with pytest.raises(ChecksumMismatch, match="ab" * 32):
        cls(tmp_path)
    # The store has just verified the file: no second hash, and the real model loads.
    assert cls(tmp_path, verify_sha256=False).sha256 == "ab" * 32


@pytest.mark.parametrize("cls", [Recording, Embedder, Detector])
def test_missing_model_file_is_a_store_error(cls: type[OnnxModel], tmp_path: Path) -> None:
    copy_card(EMBEDDER_DIR if cls is not Detector else DETECTOR_DIR, tmp_path)
    with pytest.raises(StoreError, match="model file not found"):
        cls(tmp_path, verify_sha256=False)


def test_a_card_the_subclass_refuses_stops_before_onnxruntime_opens_the_file(tmp_path: Path) -> None:
    card = copy_card(EMBEDDER_DIR, tmp_path, input={"name": "refuse-me"})
    (tmp_path / "model.onnx").write_bytes(b"not an onnx graph")
    with pytest.raises(StoreError, match="this card is not usable"):
        Recording(tmp_path, verify_sha256=False)
    copy_card(EMBEDDER_DIR, tmp_path, input={**card["input"], "name": "image"})
    with pytest.raises(StoreError, match="cannot load ONNX model"):
        Recording(tmp_path, verify_sha256=False)


# --- fake sessions ---------------------------------------------------------------------------------


def test_a_fake_session_needs_no_model_file_and_is_what_bind_sees(tmp_path: Path) -> None:
    copy_card(EMBEDDER_DIR, tmp_path, sha256="cd" * 32)  # no model.onnx at all, and a card that lies
    model = Recording(tmp_path, session=FakeSession(["image"], ["embedding", "extra"]))
    assert model.outputs == ["embedding", "extra"]
    assert model.sha256 == "cd" * 32


def test_card_input_the_session_lacks_is_refused(tmp_path: Path) -> None:
    copy_card(EMBEDDER_DIR, tmp_path)
    with pytest.raises(StoreError, match=r"card input 'image' not among model inputs \['pixels'\]"):
        Recording(tmp_path, session=FakeSession(["pixels"], ["embedding"]))


def test_embedder_refuses_a_session_without_its_card_output(tmp_path: Path) -> None:
    copy_card(EMBEDDER_DIR, tmp_path)
    with pytest.raises(StoreError, match="card output 'embedding'"):
        Embedder(tmp_path, session=FakeSession(["image"], ["logits"]))
    assert Embedder(tmp_path, session=FakeSession(["image"], ["logits", "embedding"])).dim == 128


def test_a_card_without_version_keeps_each_models_old_default(tmp_path: Path) -> None:
    emb_dir, det_dir = tmp_path / "emb", tmp_path / "det"
    copy_card(EMBEDDER_DIR, emb_dir, version=None)
    copy_card(DETECTOR_DIR, det_dir, version=None)
    embedder = Embedder(emb_dir, session=FakeSession(["image"], ["embedding"]))
    assert embedder.info()["version"] == "0"
    real = Detector(DETECTOR_DIR)._session
    detector = Detector(det_dir, session=FakeSession(real.input_names, real.output_names))
    assert detector.info() == {"name": "nanodet-m", "version": "", "sha256": load_card(DETECTOR_DIR)["sha256"]}


# --- the one card parser and the one normalisation -------------------------------------------------


def test_load_card_applies_the_store_rules_to_local_folders(tmp_path: Path) -> None:
    copy_card(EMBEDDER_DIR, tmp_path, sha256="AB" * 32)
    assert load_card(tmp_path)["sha256"] == "ab" * 32  # normalised, as the store compares lowercase hex
    copy_card(EMBEDDER_DIR, tmp_path, name="../escape")
    with pytest.raises(StoreError, match="not a safe folder name"):
        load_card(tmp_path)
    (tmp_path / "card.json").write_text("{not json")
    with pytest.raises(StoreError, match="not valid JSON"):
        load_card(tmp_path)
    with pytest.raises(StoreError, match="model card not found"):
        load_card(tmp_path / "nowhere")


def test_l2_normalise_gives_unit_rows_and_keeps_zero_rows_zero() -> None:
    out = l2_normalise(np.array([[3, 4], [0, 0], [-2, 0]], dtype=np.float64))
    assert out.dtype == np.float32 and out.flags.c_contiguous
    np.testing.assert_allclose(out, [[0.6, 0.8], [0.0, 0.0], [-1.0, 0.0]])
    with pytest.raises(ValueError, match="2-d"):
        l2_normalise(np.ones(3))
