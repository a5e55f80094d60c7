"""Reading a catalog for a job: fetched, parsed, checked against the failure budget, with its kinds.json.

The rebuild job and the trainer (`imgsearch train`) read catalogs through `load_catalog`, so a catalog one
refuses the other refuses with the same message.
"""

from __future__ import annotations

import hashlib
import time
from dataclasses import dataclass, field
from typing import Any, Protocol

from ann_index.catalog.kinds import Kinds, read_catalog_kinds, restrict_kinds
from ann_index.catalog.rows import Catalog, decode_catalog_bytes, parse_catalog
from imgcore.errors import ImgSearchError
from imgcore.image import DecodeLimits
from imgcore.storage import as_uri, fetch_uri_bytes


class CatalogReading(Protocol):
    """What reading a catalog needs of a job's options (`RebuildOptions` and `ReadOptions` both have it)."""

    @property
    def s3_endpoint_url(self) -> str | None: ...
    @property
    def max_fail_fraction(self) -> float: ...


@dataclass(frozen=True)
class ReadOptions:
    """A job that reads a catalog and its images without building an index (the trainer)."""

    s3_endpoint_url: str | None = None
    max_fail_fraction: float = 0.01
    allow_absolute_images: bool = False  # catalog images may be absolute URIs; else only inside its folder
    limits: DecodeLimits = DecodeLimits()
    progress: bool = True


class RebuildRefused(ImgSearchError):
    """The job decided not to publish (a catalog it cannot use, a failed gate); CURRENT was not touched."""

    status = 422
    reason = "rebuild_refused"


@dataclass(frozen=True)
class LoadedCatalog:
    catalog: Catalog
    uri: str  # the catalog file's absolute URI
    base_uri: str  # the folder its relative image paths hang off
    sha256: str  # of the catalog's bytes (what a sharded run is named after)
    read_at: float = field(default_factory=time.time)  # changes written later are carried over (issue 17)
    kinds: Kinds | None = None  # the catalog's kinds.json (item kinds -> categories), if it has one


def load_catalog(catalog_uri: str, opts: CatalogReading | None = None) -> LoadedCatalog:
    """Read and validate a catalog; refuse it when it is empty, has duplicate ids or too many invalid rows."""
    opts = opts or ReadOptions()
    uri = as_uri(catalog_uri)
    data = fetch_uri_bytes(uri, s3_endpoint_url=opts.s3_endpoint_url)
    catalog = parse_catalog(decode_catalog_bytes(data))
    if not catalog.items and not catalog.errors and not catalog.duplicates:
        raise RebuildRefused("catalog is empty: nothing to index")
    if catalog.duplicates:
        shown = "; ".join(str(d) for d in catalog.duplicates[:10])
        raise RebuildRefused(f"catalog has {len(catalog.duplicates)} duplicate item_id(s): {shown}")
    check_budget(catalog, [], opts.max_fail_fraction)
    base = uri.rsplit("/", 1)[0] + "/"
    kinds = read_catalog_kinds(base, opts.s3_endpoint_url)
    kinds = restrict_kinds(kinds, catalog.categories) if kinds is not None else None
    return LoadedCatalog(catalog, uri, base, hashlib.sha256(data).hexdigest(), kinds=kinds)


def check_budget(
    catalog: Catalog, failed: list[dict[str, Any]], max_fail_fraction: float, where: str = ""
) -> list[dict[str, Any]]:
    """The invalid catalog rows plus the `failed` ones; refused when they are over the failure budget."""
    skipped = [e.to_dict() for e in catalog.errors] + failed
    if len(skipped) > max_fail_fraction * catalog.rows:
        shown = "; ".join(f"line {s['line']} ({s['item_id']}): {s['reason']}" for s in skipped[:10])
        raise RebuildRefused(
            f"{where}{len(skipped)} of {catalog.rows} rows failed (limit {max_fail_fraction:.0%}): {shown}"
        )
    return skipped
