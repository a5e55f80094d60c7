"""`imgsearch detect` and `imgsearch embed`: run one model on local images and print JSON."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from imgcore.errors import InvalidInput
from services.common.boxes import Box, parse_box_param
from services.defaults import DEFAULT_CACHE_DIR, DEFAULT_DETECTOR_URI, DEFAULT_EMBEDDER_URI


def _model_uri(value: str) -> str:
    """A URI as given; a plain folder path becomes its file:// URI (the model store speaks URIs only)."""
    return value if "://" in value else Path(value).resolve().as_uri()


def _fetch(uri: str) -> Path:
    from services.common.loading import model_store

    return model_store(DEFAULT_CACHE_DIR).fetch(_model_uri(uri))


def _read_image(path: Path) -> Any:
    from imgcore.image import decode_image

    try:
        data = path.read_bytes()
    except OSError as exc:
        raise InvalidInput(f"cannot read {path}: {exc.strerror or exc}") from exc
    return decode_image(data)


def _box_arg(text: str) -> Box:
    """`--box x1,y1,x2,y2`: parsed as the gateway parses `box=`; argparse reports what is wrong."""
    try:
        x1, y1, x2, y2 = parse_box_param(text)
    except InvalidInput as exc:
        raise argparse.ArgumentTypeError(f"expected x1,y1,x2,y2 got {text!r}") from exc
    if not (x2 > x1 and y2 > y1):
        raise argparse.ArgumentTypeError(f"box {text!r} is empty: need x2 > x1 and y2 > y1")
    return x1, y1, x2, y2


def _detect(args: argparse.Namespace) -> int:
    from detector import Detector

    # The store has just verified the file against the card: no second hash needed.
    detector = Detector(_fetch(args.model), score_threshold=args.threshold, verify_sha256=False)
    detections = detector.detect(_read_image(args.image))
    out = {"model": detector.info(), "detections": [d.to_dict() for d in detections]}
    print(json.dumps(out))
    return 0


def _embed(args: argparse.Namespace) -> int:
    from embedder import Embedder

    embedder = Embedder(_fetch(args.model), verify_sha256=False)
    info = embedder.info()
    for path in args.images:
        vectors = embedder.embed(_read_image(path), boxes=args.box)
        line: dict[str, Any] = {
            "image": str(path),
            "model": info,
            "dim": embedder.dim,
            "vectors": [[round(float(v), 6) for v in row] for row in vectors],
        }
        print(json.dumps(line), flush=True)  # one line per image as soon as it is done
    return 0


def register(sub: Any) -> None:
    det = sub.add_parser("detect", help="detect objects in an image; prints JSON")
    det.add_argument("image", type=Path, metavar="IMAGE")
    det.add_argument("--model", default=DEFAULT_DETECTOR_URI, metavar="URI", help="detector model folder URI or path")
    det.add_argument("--threshold", type=float, default=None, help="score threshold (default: the card's)")
    det.set_defaults(func=_detect)

    emb = sub.add_parser("embed", help="embedding vectors of images (or boxes in them); one JSON line per image")
    emb.add_argument("images", type=Path, nargs="+", metavar="IMAGE")
    emb.add_argument("--model", default=DEFAULT_EMBEDDER_URI, metavar="URI", help="embedder model folder URI or path")
    emb.add_argument(
        "--box",
        type=_box_arg,
        action="append",
        default=None,
        metavar="x1,y1,x2,y2",
        help="embed this box (original pixels) instead of the whole image; repeat for several boxes",
    )
    emb.set_defaults(func=_embed)
