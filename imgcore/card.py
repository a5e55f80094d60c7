"""Model cards: the JSON next to every model.onnx that pins its preprocessing and outputs."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

from imgcore.errors import StoreError

CARD_NAME = "card.json"
MODEL_NAME = "model.onnx"


def load_card(model_dir: Path) -> dict[str, Any]:
    """Read `card.json` from a model folder; raise StoreError if it is missing or not an object."""
    path = Path(model_dir) / CARD_NAME
    try:
        card = json.loads(path.read_text())
    except FileNotFoundError as exc:
        raise StoreError(f"model card not found: {path}") from exc
    except json.JSONDecodeError as exc:
        raise StoreError(f"model card is not valid JSON: {path}: {exc}") from exc
    if not isinstance(card, dict) or "sha256" not in card or "name" not in card:
        raise StoreError(f"model card lacks name/sha256: {path}")
    return card


def sha256_file(path: Path, chunk: int = 1 << 20) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        while block := fh.read(chunk):
            digest.update(block)
    return digest.hexdigest()
