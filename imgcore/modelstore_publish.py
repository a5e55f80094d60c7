"""Publishing model folders to a store: every folder verified against its card before any upload."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path

from imgcore.card import CARD_NAME, MODEL_NAME, parse_card, sha256_file
from imgcore.errors import ChecksumMismatch, NotFound, StoreError
from imgcore.storage import open_store

log = logging.getLogger("imgcore.modelstore")


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
    # A model folder itself (the --out of `imgsearch train`) is published as it is, or every one under a folder.
    single = (models_dir / CARD_NAME).is_file()
    folders = [models_dir] if single else sorted(p for p in models_dir.iterdir() if (p / CARD_NAME).is_file())
    if names is not None:
        missing = sorted(set(names) - {p.name for p in folders})
        if missing:
            raise NotFound(f"no model folder with a card for {missing} under {models_dir}")
        folders = [p for p in folders if p.name in set(names)]
    if not folders:
        raise NotFound(f"no model folders (with {CARD_NAME}) under {models_dir}")
    cards: dict[Path, bytes] = {}
    keys: dict[Path, str] = {}
    for folder in folders:
        raw = (folder / CARD_NAME).read_bytes()
        card = parse_card(raw, str(folder / CARD_NAME))
        sha, keys[folder] = card["sha256"], card["name"] if single else folder.name
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
            store.put_file(f"{keys[folder]}/{MODEL_NAME}", folder / MODEL_NAME)
            store.put_bytes(f"{keys[folder]}/{CARD_NAME}", raw)
            published.append(store.url_of(keys[folder]))
            log.info("published %s to %s", folder, published[-1])
    return published
