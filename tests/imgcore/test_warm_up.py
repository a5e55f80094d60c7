"""Warm-up: each model runs once on every batch shape it will serve, through its real onnxruntime session."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from detector import Detector
from embedder import Embedder
from imgcore.card import MODEL_NAME
from imgcore.runtime import OrtSession
from services.common.loading import load_model
from services.common.metrics import MODEL_WARMUP_SECONDS
from services.common.settings import EmbedderSettings
from tests.helpers.paths import REPO

MODELS = REPO / "models"


class Shapes:
    """The real session of a model, recording the shape of every input it is run on."""

    def __init__(self, model_dir: Path) -> None:
        self._session = OrtSession(model_dir / MODEL_NAME)
        self.input_names, self.output_names = self._session.input_names, self._session.output_names
        self.seen: list[tuple[int, ...]] = []

    def run(self, feeds: dict[str, np.ndarray]) -> list[np.ndarray]:
        self.seen += [tuple(x.shape) for x in feeds.values()]
        return self._session.run(feeds)


def test_embedder_warms_every_batch_size_up_to_its_batch_size() -> None:
    session = Shapes(MODELS / "fmnist-lite0")
    embedder = Embedder(MODELS / "fmnist-lite0", batch_size=5, session=session)
    assert embedder.warm_up() == 5
    assert session.seen == [(n, 3, 56, 56) for n in range(1, 6)]


def test_detector_warms_its_one_input_shape() -> None:
    session = Shapes(MODELS / "nanodet-m")
    assert Detector(MODELS / "nanodet-m", session=session).warm_up() == 1
    assert session.seen == [(1, 3, 416, 416)]


def test_loading_a_service_model_warms_it_unless_told_not_to(tmp_path: Path) -> None:
    uri = (MODELS / "fmnist-lite0").as_uri()
    gauge = MODEL_WARMUP_SECONDS.labels(model="fmnist-lite0")
    gauge.set(0)
    cold = EmbedderSettings(model_uri=uri, model_cache_dir=tmp_path, warm_up=False, max_batch_size=2)
    load_model(cold, Embedder, batch_size=2)
    assert gauge._value.get() == 0
    warm = cold.model_copy(update={"runtime": cold.runtime.model_copy(update={"warm_up": True})})
    load_model(warm, Embedder, batch_size=2)
    assert gauge._value.get() > 0
