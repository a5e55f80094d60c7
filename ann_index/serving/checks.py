"""What a server checks and keeps of the versions it serves: a self-test, the build time, local copies."""

from __future__ import annotations

import logging
import shutil
from datetime import datetime
from pathlib import Path
from typing import Any

import numpy as np

from ann_index.serving.reader import IndexReader
from ann_index.version.manifest import version_time
from imgcore.errors import IndexMismatch

log = logging.getLogger(__name__)


def self_test(reader: IndexReader) -> None:
    """A fresh reader must answer a query and find a stored item as its own nearest neighbour, in the
    global index and in every category index (a category file or offset that does not fit its items
    would otherwise surface as errors on that category's queries only)."""
    if reader.count < 1:
        raise IndexMismatch(f"index {reader.version} is empty", reason="selftest")
    probe = np.random.default_rng(0).standard_normal((1, reader.dim)).astype(np.float32)
    _finds_itself(reader, probe, None)
    for category in reader.categories:
        _finds_itself(reader, probe, category)


def _finds_itself(reader: IndexReader, probe: np.ndarray, category: str | None) -> None:
    where = f"index {reader.version}" + (f" category {category!r}" if category is not None else "")
    try:
        first = reader.query(probe, 1, category)[0]
        if not first:
            raise IndexMismatch(f"{where} returned nothing for a probe query", reason="selftest")
        if category is not None and first[0].category != category:
            raise IndexMismatch(f"{where} answered with an item of {first[0].category!r}", reason="selftest")
        again = reader.query(reader.vector_of(first[0].item_id)[None, :], 5, category)[0]
    except (KeyError, IndexError, ValueError) as exc:  # ids that map to no stored row
        raise IndexMismatch(f"{where} fails a probe query: {exc!r}", reason="selftest") from exc
    if first[0].item_id not in [h.item_id for h in again] or again[0].score < 0.99:
        raise IndexMismatch(f"{where} does not find its own item back", reason="selftest")


def built_at(manifest: dict[str, Any]) -> float | None:
    """Build time (epoch seconds) from the manifest, or from the version's UTC timestamp prefix."""
    for key in ("created_at", "built_at", "created"):
        value = manifest.get(key)
        if isinstance(value, str):
            try:
                return datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp()
            except ValueError:
                pass
    stamp = version_time(str(manifest.get("version", "")))
    return stamp.timestamp() if stamp else None


def drop_refused(root: Path, version: str, serving: set[str]) -> list[str]:
    """Delete the local copies of a refused `version` (whole, or a partition's `<version>.part-<i>`) unless one
    is being served: kept, a refused newer copy would outlast the good ones `prune_local` deletes."""
    if version in serving or not Path(root).is_dir():
        return []
    copies = [p for p in Path(root).iterdir() if p.is_dir() and (p.name == version or p.name.startswith(version + "."))]
    for path in copies:
        shutil.rmtree(path, ignore_errors=True)
        log.info("index %s refused: local copy %s deleted", version, path)
    return [p.name for p in copies]


def prune_local(root: Path, keep: int, current: str | None) -> list[str]:
    """Delete local version copies under `root` but the newest `keep` and `current`; return the deleted."""
    versions = sorted((p for p in Path(root).iterdir() if p.is_dir() and not p.name.startswith(".")), reverse=True)
    kept = {current} | {p.name for p in versions[:keep]}
    deleted = [p for p in versions if p.name not in kept]
    for path in deleted:
        shutil.rmtree(path, ignore_errors=True)
    return [p.name for p in deleted]
