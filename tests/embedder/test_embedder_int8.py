"""fmnist-lite0-int8 against the fp32 model it was quantised from, on real rendered Fashion-MNIST items."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import numpy as np
import onnx
import pytest

from ann_index.version.manifest import check_embedder, embedder_section
from embedder import Embedder
from imgcore.card import sha256_file
from imgcore.errors import ChecksumMismatch, IndexMismatch
from imgcore.fmnist import render_catalog
from tests.helpers.paths import DATA, REPO

INT8_DIR = REPO / "models" / "fmnist-lite0-int8"
FP32_DIR = REPO / "models" / "fmnist-lite0"


@pytest.fixture(scope="module")
def pair() -> tuple[Embedder, Embedder]:
    return Embedder(FP32_DIR), Embedder(INT8_DIR)


@pytest.fixture(scope="module")
def sample() -> tuple[list[np.ndarray], np.ndarray]:
    """6 TEST-split items of each category, catalog-rendered, and their labels."""
    data = np.load(DATA / "emb_fmnist_test_sample.npz")
    return [render_catalog(img) for img in data["images"]], data["labels"]


def test_card_pins_the_int8_file_and_names_its_fp32_source() -> None:
    card = json.loads((INT8_DIR / "card.json").read_text())
    fp32 = json.loads((FP32_DIR / "card.json").read_text())
    assert card["sha256"] == sha256_file(INT8_DIR / "model.onnx") != fp32["sha256"]
    assert card["quantized_from"] == {"name": fp32["name"], "version": fp32["version"], "sha256": fp32["sha256"]}
    # Same preprocessing and output contract: the served code treats it exactly like the fp32 model.
    assert card["input"] == fp32["input"] and card["output"] == fp32["output"]
    assert card["quantization"]["format"] == "QDQ" and card["quantization"]["per_channel"] is True
    for style in ("catalog", "catalog_crop", "shop", "shop_crop"):
        assert abs(card["quality"][style]["delta"]["R@1"]) <= 0.01, style
        assert abs(card["quality"][style]["delta"]["P@10"]) <= 0.01, style


def test_the_file_is_a_qdq_graph_with_int8_convolution_weights() -> None:
    graph = onnx.load(str(INT8_DIR / "model.onnx")).graph
    ops = Counter(node.op_type for node in graph.node)
    assert ops["QuantizeLinear"] > 0 and ops["DequantizeLinear"] > ops["Conv"] > 0
    int8_weights = [i for i in graph.initializer if i.data_type == onnx.TensorProto.INT8 and len(i.dims) == 4]
    assert len(int8_weights) == ops["Conv"]


def test_int8_vectors_are_unit_and_point_where_the_fp32_ones_do(
    pair: tuple[Embedder, Embedder], sample: tuple[list[np.ndarray], np.ndarray]
) -> None:
    fp32, int8 = (m.embed_batch(sample[0]) for m in pair)
    assert int8.shape == fp32.shape and int8.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(int8, axis=1), 1.0, atol=1e-5)
    cosine = np.sum(fp32 * int8, axis=1)
    assert cosine.min() > 0.9 and np.median(cosine) > 0.97
    # Each int8 query's nearest fp32 vector (other items excluded) is its own.
    assert np.array_equal(np.argmax(int8 @ fp32.T, axis=1), np.arange(len(fp32)))


def test_int8_finds_the_same_categories_as_fp32_leave_one_out(
    pair: tuple[Embedder, Embedder], sample: tuple[list[np.ndarray], np.ndarray]
) -> None:
    labels = sample[1]
    hits = []
    for model in pair:
        vecs = model.embed_batch(sample[0])
        sims = vecs @ vecs.T
        np.fill_diagonal(sims, -2.0)
        hits.append(float(np.mean(labels[np.argmax(sims, axis=1)] == labels)))
    assert hits[0] > 0.8 and abs(hits[1] - hits[0]) <= 0.05, hits


def test_an_index_built_with_one_embedder_is_refused_by_the_other(pair: tuple[Embedder, Embedder]) -> None:
    fp32, int8 = pair
    for built, served in ((int8, fp32), (fp32, int8)):
        manifest = {"version": "v", "embedder": embedder_section(built)}
        check_embedder(manifest, embedder_sha256=built.sha256, dim=built.dim)
        with pytest.raises(IndexMismatch) as err:
            check_embedder(manifest, embedder_sha256=served.sha256, dim=served.dim)
        assert err.value.reason == "embedder_sha256"


def test_the_model_store_serves_it_under_its_pin_and_refuses_the_fp32_pin(tmp_path: Path) -> None:
    from services.common.loading import load_model
    from services.common.settings import EmbedderSettings

    card = json.loads((INT8_DIR / "card.json").read_text())
    settings = EmbedderSettings(model_uri=INT8_DIR.as_uri(), model_sha256=card["sha256"], model_cache_dir=tmp_path)
    assert load_model(settings, Embedder).info()["name"] == "fmnist-lite0-int8"
    fp32_pin = json.loads((FP32_DIR / "card.json").read_text())["sha256"]
    with pytest.raises(ChecksumMismatch):
        load_model(
            settings.model_copy(update={"model": settings.model.model_copy(update={"sha256": fp32_pin})}), Embedder
        )
