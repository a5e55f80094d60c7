"""Model cards: the JSON next to every model.onnx that pins its preprocessing and outputs."""

from __future__ import annotations

import hashlib
import json
import re
from pathlib import Path
from typing import Any

from imgcore.errors import StoreError
from imgcore.storage_base import is_safe_name

CARD_NAME = "card.json"
MODEL_NAME = "model.onnx"

SHA_RE = re.compile(r"^[0-9a-f]{64}$")


def parse_card(raw: bytes, where: str) -> dict[str, Any]:
    """Parse card bytes and check the two fields everything relies on: a safe name and a sha256."""
    try:
        card = json.loads(raw)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise StoreError(f"{where}: card is not valid JSON: {exc}") from exc
    if not isinstance(card, dict):
        raise StoreError(f"{where}: card is not a JSON object")
    name, sha = card.get("name"), card.get("sha256")
    if not is_safe_name(name):  # the card name becomes a cache folder name
        raise StoreError(f"{where}: card name {name!r} is missing or not a safe folder name")
    if not isinstance(sha, str) or not SHA_RE.match(sha.lower()):
        raise StoreError(f"{where}: card sha256 {sha!r} is missing or not 64 hex digits")
    card["sha256"] = sha.lower()
    return card


def load_card(model_dir: Path) -> dict[str, Any]:
    """Read and check `card.json` of a model folder; StoreError if it is missing or invalid."""
    path = Path(model_dir) / CARD_NAME
    if not path.is_file():
        raise StoreError(f"model card not found: {path}")
    return parse_card(path.read_bytes(), str(path))


def sha256_file(path: Path, chunk: int = 1 << 20) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        while block := fh.read(chunk):
            digest.update(block)
    return digest.hexdigest()
