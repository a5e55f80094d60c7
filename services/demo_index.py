"""The demo index of `imgsearch up`: a Fashion-MNIST catalog embedded and published into a data folder."""

from __future__ import annotations

import logging
import time
from pathlib import Path

from ann_index.version.publish import published_manifest, read_current
from imgcore.errors import ImgSearchError
from imgcore.storage import open_store
from services import defaults

log = logging.getLogger("imgsearch.demo")


def index_root(data_dir: Path) -> Path:
    """Where the demo index store lives (holds CURRENT and versions/)."""
    return Path(data_dir).resolve() / "index"


def has_index(data_dir: Path, embedder_sha256: str | None = None) -> bool:
    """Whether an index with thumbnails has been published in this data folder (built with that embedder, when
    given)."""
    try:
        with open_store(index_root(data_dir).as_uri()) as store:
            version = read_current(store)
            manifest = published_manifest(store, version) if version else None
    except ImgSearchError:
        return False
    if manifest is None or "thumbnails" not in manifest:  # built before item thumbnails: build it again
        return False
    if "kinds" not in manifest:  # built before the catalog declared its item kinds (#15): build it again
        return False
    if manifest.get("crop") != "foreground":  # embedded unlike the search path embeds a photo (#27): again
        return False
    return embedder_sha256 is None or manifest["embedder"].get("sha256") == embedder_sha256


def has_demo_index(data_dir: Path, embedder_sha256: str | None = None) -> bool:
    """`has_index`, and of today's demo catalog: one written before products (#28) is written and indexed again."""
    from ann_index.catalog.demo import CATALOG_NAME, is_current_demo

    return is_current_demo(Path(data_dir) / "catalog" / CATALOG_NAME) and has_index(data_dir, embedder_sha256)


def build_demo_index(
    data_dir: Path,
    *,
    limit: int | None = None,
    split: str = "train",
    embedder_uri: str = defaults.DEFAULT_EMBEDDER_URI,
    progress: bool = True,
) -> str:
    """Write the Fashion-MNIST catalog (once) and run the rebuild job into `data_dir/index`; return its URI."""
    from ann_index.build.rebuild import RebuildOptions, rebuild
    from ann_index.catalog.demo import CATALOG_NAME, is_current_demo, write_fmnist_catalog, write_kinds
    from services.common.loading import model_store, rebuild_embedder

    data_dir = Path(data_dir).resolve()
    catalog_dir = data_dir / "catalog"
    catalog = catalog_dir / CATALOG_NAME
    t0 = time.monotonic()
    if not is_current_demo(catalog):
        log.info("writing the Fashion-MNIST %s catalog into %s", split, catalog_dir)
        write_fmnist_catalog(catalog_dir, split=split, limit=limit, shop_photos=True)  # type: ignore[arg-type]
    write_kinds(catalog_dir)  # a catalog written before kinds.json existed gets it too
    model_dir = model_store(data_dir / "cache" / "models").fetch(embedder_uri)
    embedder = rebuild_embedder(model_dir)
    root = index_root(data_dir)
    root.mkdir(parents=True, exist_ok=True)
    log.info("building the demo index from %s (this takes a minute or two on 2 cores)", catalog)
    opts = RebuildOptions(progress=progress, work_dir=data_dir, keep=2, model_lanes=2)
    manifest = rebuild(catalog.as_uri(), root.as_uri(), embedder, opts)
    log.info("demo index %s (%d items) built in %.0fs", manifest["version"], manifest["count"], time.monotonic() - t0)
    return root.as_uri()
