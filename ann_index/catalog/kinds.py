"""Item kinds -> catalog categories: which categories a detected item (a top, a handbag) is searched among.

A catalog declares them in `kinds.json` beside its catalog file:

    {"kinds": {"top": ["T-shirt/top", "Shirt"], "handbag": ["Bag"]}}

The rebuild copies the mapping (restricted to the categories the catalog really has) into the manifest of
every version it publishes, so the mapping travels with the index the gateway queries: another catalog
brings its own kinds, and an index swap changes both at once.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping
from typing import Any

from imgcore.errors import InvalidInput, NotFound
from imgcore.storage import fetch_uri_bytes

KINDS_NAME = "kinds.json"
Kinds = dict[str, list[str]]

log = logging.getLogger(__name__)


def parse_kinds(data: bytes | str, where: str = KINDS_NAME) -> Kinds:
    """The mapping of a kinds.json; InvalidInput unless it is `{"kinds": {kind: [category, ...]}}`."""
    try:
        doc: Any = json.loads(data)
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise InvalidInput(f"{where}: not JSON: {exc}", reason="bad_kinds") from exc
    kinds = doc.get("kinds") if isinstance(doc, dict) else None
    if not isinstance(kinds, dict):
        raise InvalidInput(f'{where}: expected {{"kinds": {{kind: [category, ...]}}}}', reason="bad_kinds")
    out: Kinds = {}
    for kind, categories in kinds.items():
        if not isinstance(categories, list) or not categories or not all(isinstance(c, str) for c in categories):
            raise InvalidInput(f"{where}: kind {kind!r} must map to a non-empty list of categories", reason="bad_kinds")
        out[str(kind)] = list(dict.fromkeys(categories))
    return out


def restrict_kinds(kinds: Kinds, categories: Mapping[str, int]) -> Kinds:
    """Only the categories the catalog has (a partial catalog lacks some); kinds left with none are dropped."""
    out = {kind: [c for c in cats if c in categories] for kind, cats in kinds.items()}
    missing = sorted({c for cats in kinds.values() for c in cats} - set(categories))
    if missing:
        log.warning("kinds.json names categories the catalog does not have (left out): %s", ", ".join(missing))
    return {kind: cats for kind, cats in out.items() if cats}


def read_catalog_kinds(base_uri: str, s3_endpoint_url: str | None = None) -> Kinds | None:
    """The kinds.json in the catalog's folder (`base_uri` ends with /), or None when it has none."""
    try:
        data = fetch_uri_bytes(base_uri + KINDS_NAME, s3_endpoint_url=s3_endpoint_url)
    except NotFound:
        return None
    return parse_kinds(data, base_uri + KINDS_NAME)
