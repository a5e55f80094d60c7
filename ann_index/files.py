"""Small pieces shared by the builder, the gate and the reader: names, normalisation, distances."""

from __future__ import annotations

import hashlib
import re
from typing import Final

from imgcore.vectors import l2_normalise as l2_normalise  # re-exported for builder and reader

METRIC: Final = "angular"
MANIFEST_NAME = "manifest.json"
GLOBAL_INDEX_NAME = "index.ann"
META_NAME = "meta.sqlite"
VECTORS_NAME = "vectors.npy"
CURRENT_NAME = "CURRENT"
VERSIONS_PREFIX = "versions"


def angular_to_cosine(distance: float) -> float:
    """annoy's angular distance is sqrt(2 - 2 cos) on normalised vectors, so cos = 1 - d^2 / 2."""
    return 1.0 - distance * distance / 2.0


def category_slug(category: str) -> str:
    """A file-name-safe, case-folded form of a category ("T-shirt/top" -> "t-shirt-top")."""
    slug = re.sub(r"[^a-z0-9]+", "-", category.lower()).strip("-")
    return slug or "x" + hashlib.sha1(category.encode()).hexdigest()[:8]


def category_files(categories: list[str]) -> dict[str, str]:
    """Deterministic file name per category; a hash suffix only where two names share a slug."""
    out: dict[str, str] = {}
    used: set[str] = set()
    for cat in sorted(categories):
        slug = category_slug(cat)
        if slug in used:
            slug = f"{slug}-{hashlib.sha1(cat.encode()).hexdigest()[:8]}"
        used.add(slug)
        out[cat] = f"cat-{slug}.ann"
    return out
