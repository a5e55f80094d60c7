"""Partitioned index stores (issue 16) made from the demo index's already-embedded rows, and partition servers.

`publish_partitioned(store, n)` republishes the demo catalog (same vectors, items and thumbnails) as a version
of `n` partitions through the real build, gate and publish path, so tests and bench/partitions.py compare one
index with N partitions of the very same catalog without embedding it again.
"""

from __future__ import annotations

import json
import sqlite3
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ann_index.build.rebuild import RebuildOptions, build_version
from ann_index.files import META_NAME, VECTORS_NAME
from ann_index.items import IndexItem
from ann_index.thumbs import THUMBS_NAME, ThumbFile, ThumbPack
from ann_index.version.manifest import read_manifest
from ann_index.version.publish import publish_version
from imgcore.storage import open_store
from services.demo_index import index_root
from services.stack import ServiceProcess, free_port, start_service
from tests.helpers.stack import current_version, demo_data_dir


@dataclass(frozen=True)
class ManifestEmbedder:
    """The embedder a published manifest names (EmbedderInfo), to rebuild its rows without the model."""

    name: str
    version: str
    sha256: str
    dim: int
    metric: str
    card: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Rows:
    vectors: np.ndarray
    items: list[IndexItem]
    thumbs: ThumbPack
    embedder: ManifestEmbedder


def demo_rows() -> Rows:
    """Every row of the demo index's current version, in its annoy order."""
    store = index_root(demo_data_dir())
    folder = store / "versions" / current_version(store)
    manifest = read_manifest(folder)
    emb = manifest["embedder"]
    embedder = ManifestEmbedder(
        emb["name"], emb["version"], emb["sha256"], emb["dim"], emb["metric"], emb.get("preprocessing", {})
    )
    db = sqlite3.connect(folder / META_NAME)
    try:
        rows = db.execute("SELECT item_id, category, title, image, attrs FROM items ORDER BY aid").fetchall()
        thumb_file = ThumbFile(folder / THUMBS_NAME, db, len(rows))
        thumbs = ThumbPack()
        for aid in range(len(rows)):
            thumbs.add(thumb_file.read(aid)[0])
        thumb_file.close()
    finally:
        db.close()
    items = [IndexItem(r[0], r[1], r[2], r[3], json.loads(r[4])) for r in rows]
    return Rows(np.load(folder / VECTORS_NAME), items, thumbs, embedder)


def publish_partitioned(store: Path, partitions: int, *, rows: Rows | None = None, n_trees: int = 32) -> str:
    """Build, gate and publish the demo rows as `partitions` partitions into `store`; the version."""
    rows = rows or demo_rows()
    opts = RebuildOptions(partitions=partitions, n_trees=n_trees, keep=5, progress=False)
    with tempfile.TemporaryDirectory(prefix="parts-") as work, open_store(store.as_uri()) as out:
        build_version(rows.vectors, rows.items, Path(work), rows.embedder, opts, None, rows.thumbs)
        return publish_version(out, Path(work), keep=5)


def start_partitions(store: Path, n: int, root: Path, *, extra: list[str] = ()) -> list[ServiceProcess]:  # type: ignore[assignment]
    """`imgsearch serve index --partition I` for I in 0..n-1 on `store`, each with its own download folder."""
    procs = []
    for i in range(n):
        args = ["--index-uri", store.as_uri(), "--local-dir", str(root / f"p{i}"), "--partition", str(i), *extra]
        procs.append(start_service("index", free_port(), args=args, log_path=root / f"index-p{i}.log"))
    for proc in procs:
        proc.wait_ready(120)
    return procs
