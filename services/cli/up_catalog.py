"""`imgsearch up --catalog FILE [--embedder ...]`: index a user's own catalog for the local stack.

Each catalog (by the sha256 of its bytes) gets its own index store under the data folder, built once per
embedder; the flags returned point the stack's embedder and index services at that model and that store.
"""

from __future__ import annotations

import argparse
import hashlib
import logging
import sys
from pathlib import Path

from services import defaults
from services.demo_index import has_index, index_root

log = logging.getLogger("imgsearch.up")


def catalog_folder(data: Path, catalog: Path) -> Path:
    """data/catalogs/<first 16 hex of the catalog's sha256>: its index store, work files and index cache."""
    return data / "catalogs" / hashlib.sha256(catalog.read_bytes()).hexdigest()[:16]


def index_catalog(data: Path, catalog: Path, embedder_uri: str, progress: bool = True) -> dict[str, list[str]]:
    """Build the catalog's index with the embedder unless one is already there; return the services' flags.

    A catalog the rebuild job refuses raises `ann_index.build.rebuild.RebuildRefused` (nothing published).
    """
    from ann_index.build.rebuild import RebuildOptions, rebuild
    from services.common.loading import model_store, rebuild_embedder

    catalog = catalog.expanduser().resolve()
    if not catalog.is_file():
        raise FileNotFoundError(f"catalog not found: {catalog}")
    folder = catalog_folder(data, catalog)
    model_dir = model_store(data / "cache" / "models").fetch(embedder_uri)
    embedder = rebuild_embedder(model_dir)
    if not has_index(folder, embedder.sha256):
        index_root(folder).mkdir(parents=True, exist_ok=True)
        log.info("indexing %s with %s %s into %s", catalog, embedder.name, embedder.version, index_root(folder))
        opts = RebuildOptions(progress=progress, work_dir=folder, keep=2, model_lanes=2)
        manifest = rebuild(catalog.as_uri(), index_root(folder).as_uri(), embedder, opts)
        log.info("catalog index %s: %d items", manifest["version"], manifest["count"])
    return {
        "embedder": ["--model-uri", embedder_uri],
        "index": [
            "--index-uri",
            index_root(folder).as_uri(),
            "--local-dir",
            str(folder / "cache"),
            "--embedder-sha256",
            embedder.sha256,
        ],
    }


def own_catalog(data: Path, catalog: str | None, embedder: str | None) -> tuple[int, dict[str, list[str]]]:
    """(exit code, service flags) of `up --catalog`: 0 and the flags, 3 when the rebuild refuses the catalog."""
    from ann_index.build.rebuild import RebuildRefused

    if catalog is None:
        log.error("--embedder goes with --catalog (the demo always runs its own trained model)")
        return 2, {}
    try:
        return 0, index_catalog(data, Path(catalog), embedder or defaults.model_uri("general-lite0"))
    except RebuildRefused as exc:
        print(f"imgsearch up: REFUSED, nothing published: {exc.message}", file=sys.stderr)
        return 3, {}
    except KeyboardInterrupt:
        log.error("interrupted while indexing the catalog; nothing was published")
        return 130, {}


def add_catalog_flags(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--catalog", default=None, metavar="FILE", help="index this JSON Lines catalog, not the demo")
    parser.add_argument(
        "--embedder",
        type=defaults.model_uri,
        default=None,
        metavar="NAME|PATH|URI",
        help="embedder for --catalog: general-lite0 (default), fmnist-lite0, or a trained folder/URI",
    )
