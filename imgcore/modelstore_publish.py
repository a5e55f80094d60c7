"""Publishing model folders to a store, and the card checks that publisher and fetcher both apply."""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from imgcore.card import CARD_NAME, MODEL_NAME, sha256_file
from imgcore.errors import ChecksumMismatch, NotFound, StoreError
from imgcore.storage import open_store
from imgcore.storage_base import is_safe_name

log = logging.getLogger("imgcore.modelstore")

# The card name becomes a cache folder name, so it must be a plain, safe path segment.
_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")
SHA_RE = re.compile(r"^[0-9a-f]{64}$")


def parse_card(raw: bytes, where: str) -> dict[str, Any]:
    """Parse card bytes and check the two fields the cache relies on: a safe name and a sha256."""
    try:
        card = json.loads(raw)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise StoreError(f"{where}: card is not valid JSON: {exc}") from exc
    if not isinstance(card, dict):
        raise StoreError(f"{where}: card is not a JSON object")
    name, sha = card.get("name"), card.get("sha256")
    if not is_safe_name(name):
        raise StoreError(f"{where}: card name {name!r} is missing or not a safe folder name")
    if not isinstance(sha, str) or not SHA_RE.match(sha.lower()):
        raise StoreError(f"{where}: card sha256 {sha!r} is missing or not 64 hex digits")
    card["sha256"] = sha.lower()
    return card


def publish_models(
    models_dir: Path,
    to_uri: str,
    *,
    names: Sequence[str] | None = None,
    s3_endpoint_url: str | None = None,
    timeout_s: float = 30.0,
) -> list[str]:
    """Upload every `<models_dir>/<name>/{card.json,model.onnx}` to `<to_uri>/<name>/`; return their URIs.

    Every folder is verified before anything is uploaded, so one bad model never leaves a half-published
    set. Within a folder model.onnx goes first and card.json last: readers start from the card.
    """
    models_dir = Path(models_dir)
    if not models_dir.is_dir():
        raise NotFound(f"models folder not found: {models_dir}")
    folders = sorted(p for p in models_dir.iterdir() if (p / CARD_NAME).is_file())
    if names is not None:
        missing = sorted(set(names) - {p.name for p in folders})
        if missing:
            raise NotFound(f"no model folder with a card for {missing} under {models_dir}")
        folders = [p for p in folders if p.name in set(names)]
    if not folders:
        raise NotFound(f"no model folders (with {CARD_NAME}) under {models_dir}")
    cards: dict[Path, bytes] = {}
    for folder in folders:
        raw = (folder / CARD_NAME).read_bytes()
        sha = parse_card(raw, str(folder / CARD_NAME))["sha256"]
        model = folder / MODEL_NAME
        if not model.is_file():
            raise StoreError(f"{folder} has a {CARD_NAME} but no {MODEL_NAME}")
        got = sha256_file(model)
        if got != sha:
            raise ChecksumMismatch(f"{model} has sha256 {got}, but its card declares {sha}: refusing to publish")
        cards[folder] = raw
    published: list[str] = []
    with open_store(to_uri, s3_endpoint_url=s3_endpoint_url, timeout_s=timeout_s) as store:
        for folder, raw in cards.items():
            store.put_file(f"{folder.name}/{MODEL_NAME}", folder / MODEL_NAME)
            store.put_bytes(f"{folder.name}/{CARD_NAME}", raw)
            published.append(store.url_of(folder.name))
            log.info("published %s to %s", folder, published[-1])
    return published
