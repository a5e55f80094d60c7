"""Build the general-purpose embedder: EfficientNet-Lite0 ImageNet weights, no training at all.

    python models/general-lite0/convert.py [--dim 256] [--gallery-limit 10000] [--queries 1000]

Steps: EmbedNet(224, dim) (backbone -> mean pool 1280 -> seeded orthogonal projection -> L2) -> ONNX ->
max |ORT - torch| on real photos and rendered items -> latency (1 thread) -> card.json. Then, unless
--skip-eval, the cost of the projection: the same model with the full 1280 dimensions (a rotation, which keeps
every cosine) embeds a Fashion-MNIST gallery and queries once; the first `d` coordinates of those vectors are
exactly what the `d`-dim model computes, so every `d` is scored on the same vectors; fmnist-lite0 is scored on
the same gallery and queries (models/evaluate.py) for comparison. The numbers go into card.json -> quality.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import torch

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "models"))

from evaluate import evaluate, score, vectors  # noqa: E402

from embedder import Embedder, foreground_box  # noqa: E402
from embedder.training.export import CROP_MARGIN, RESIZE, base_card, export_onnx, latency_ms, onnx_vs_torch  # noqa: E402
from embedder.training.net import FEATURES, PROJECTION_SEED, EmbedNet  # noqa: E402
from embedder.transforms import prepare  # noqa: E402
from imgcore.card import sha256_file  # noqa: E402
from imgcore.fmnist import load_fmnist, render_catalog, render_shop_photo  # noqa: E402
from imgcore.image import decode_image  # noqa: E402

IMAGE_SIZE = 224  # the size the ImageNet weights were trained at
PHOTOS = ROOT / "tests" / "data" / "photos"
DIMS = (FEATURES, 512, 256, 128)


def sample_images(n: int, seed: int = 1) -> np.ndarray:
    """Real inputs: the colour photos in tests/data, then rendered catalog items and shop photos."""
    out = [prepare(decode_image(p.read_bytes()), None, IMAGE_SIZE, 0.0, RESIZE) for p in sorted(PHOTOS.glob("*.jpg"))]
    x, _ = load_fmnist("test")
    rng = np.random.default_rng(seed)
    for k, i in enumerate(rng.choice(len(x), n - len(out), replace=False)):
        photo = render_catalog(x[i], 112) if k % 2 == 0 else render_shop_photo(x[i], rng, 224)
        out.append(prepare(photo, foreground_box(photo), IMAGE_SIZE, CROP_MARGIN, RESIZE))
    return np.stack(out)


def write_card(folder: Path, model: EmbedNet, dim: int, version: str, extra: dict[str, Any]) -> dict[str, Any]:
    arch = f"EfficientNet-Lite0 ImageNet (image_size={IMAGE_SIZE}) -> global average pool {FEATURES}"
    arch += f" -> fixed orthogonal projection {dim} (seed {PROJECTION_SEED}) -> L2" if dim < FEATURES else " -> L2"
    card = base_card(
        folder.name if dim < FEATURES else "general-lite0-full",
        version,
        sha256_file(folder / "model.onnx"),
        IMAGE_SIZE,
        dim,
        arch,
    )
    card["projection"] = {
        "kind": "seeded random orthogonal (numpy default_rng(seed).standard_normal((1280, 1280)) -> QR, "
        "columns sign-fixed by diag(R), first `dim` columns)",
        "seed": PROJECTION_SEED,
        "fitted_on": "nothing: no data, so no bias towards any catalog",
        "code": "embedder/training/net.py:orthogonal_projection",
    }
    card |= extra
    (folder / "card.json").write_text(json.dumps(card, indent=2) + "\n")
    return card


def projection_cost(gallery_limit: int, queries: int, dim: int, threads: int) -> dict[str, Any]:
    """Metrics of every d in DIMS from one embedding pass of the full model, plus a check that the shipped
    d-dim ONNX computes the first d coordinates of the full model's vectors."""
    with tempfile.TemporaryDirectory() as tmp:
        full = EmbedNet(IMAGE_SIZE, FEATURES).eval()
        folder = Path(tmp) / "general-lite0-full"
        folder.mkdir()
        export_onnx(full, folder / "model.onnx")
        write_card(folder, full, FEATURES, "0", {})
        emb = Embedder(folder, intra_threads=threads, batch_size=64)
        gallery, g_labels, qs, q_labels = vectors(emb, gallery_limit, queries, seed=0)
        sample = sample_images(16)
        cut16 = _unit(emb.run(sample)[:, :dim])
    shipped = Embedder(HERE, intra_threads=threads).run(sample)
    report: dict[str, Any] = {}
    for d in DIMS:
        cut = {s: _unit(q[:, :d]) for s, q in qs.items()}
        styles = score(_unit(gallery[:, :d]), g_labels, cut, q_labels)
        report[str(d)] = {s: v["overall"] for s, v in styles.items()}  # type: ignore[index]
    report["shipped_dim"] = dim
    # The shipped model must be the full one cut to `dim`: otherwise the table above says nothing about it.
    report["shipped_vs_cut_max_abs_diff"] = float(np.abs(shipped - cut16).max())
    if report["shipped_vs_cut_max_abs_diff"] > 1e-4:
        raise SystemExit("the shipped model is not the full model's first dimensions")
    return report


def _unit(v: np.ndarray) -> np.ndarray:
    return v / np.linalg.norm(v, axis=1, keepdims=True)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--dim", type=int, default=256)
    ap.add_argument("--version", default="1.0.0")
    ap.add_argument("--gallery-limit", type=int, default=10000)
    ap.add_argument("--queries", type=int, default=1000)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--skip-eval", action="store_true")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)

    model = EmbedNet(IMAGE_SIZE, args.dim).eval()
    export_onnx(model, HERE / "model.onnx")
    images = sample_images(32)
    measured = {"onnx_vs_torch_max_abs_diff": onnx_vs_torch(model, HERE / "model.onnx", images)}
    measured["latency_ms"] = latency_ms(HERE / "model.onnx", images)  # type: ignore[assignment]
    print(json.dumps(measured), flush=True)
    write_card(
        HERE, model, args.dim, args.version, _usage() | measured | {"produced_by": "models/general-lite0/convert.py"}
    )
    if args.skip_eval:
        return 0
    cost = projection_cost(args.gallery_limit, args.queries, args.dim, args.threads)
    demo = evaluate(ROOT / "models" / "fmnist-lite0", args.gallery_limit, args.queries, 0, args.threads, None)
    quality = {
        "gallery": args.gallery_limit,
        "queries": args.queries,
        "seed": 0,
        "gallery_style": "Fashion-MNIST train split, catalog-style",
        "query_split": "test",
        "this_model": cost[str(args.dim)],
        "by_dim": {d: cost[str(d)] for d in map(str, DIMS)},
        "fmnist_lite0_same_queries": {s: v["overall"] for s, v in demo["styles"].items()},  # type: ignore[union-attr]
    }
    write_card(
        HERE,
        model,
        args.dim,
        args.version,
        _usage() | measured | {"quality": quality, "produced_by": "models/general-lite0/convert.py"},
    )
    print(json.dumps(quality))
    return 0


def _usage() -> dict[str, Any]:
    return {
        "good_for": "a first index of any catalog of colour product photos before anything is trained: near-"
        "duplicates, same product in another shot, overall shape, colour and texture (ImageNet features)",
        "not_good_for": "fine distinctions a shop cares about (T-shirt vs shirt, one sneaker model vs another): "
        "ImageNet features know objects, not your taxonomy. Train on your catalog: `imgsearch train`",
    }


if __name__ == "__main__":
    raise SystemExit(main())
