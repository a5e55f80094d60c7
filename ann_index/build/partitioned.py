"""Build one index version as N partitions (issue 16): items split by `partition_of(product, N)` (a product's
images stay together, issue 28), each part an ordinary version folder (`build_index`), gated together on the
merged answer, one manifest over all parts.

The version's name hashes every part's files, and every part manifest carries that name, so all partitions of
one build report the same version and the gateway can tell when all of them serve it.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

from ann_index.build.forest import BuildResult, _category_ranges, build_index
from ann_index.build.gate import GateResult
from ann_index.build.partition_gate import GatePart, run_partition_gate
from ann_index.build.self_match import Probes
from ann_index.files import MANIFEST_NAME, METRIC, l2_normalise
from ann_index.items import IndexItem
from ann_index.thumbs import MAX_SIDE as THUMB_SIDE
from ann_index.thumbs import THUMBS_NAME, ThumbPack
from ann_index.version.manifest import (
    FORMAT,
    EmbedderInfo,
    embedder_section,
    file_sizes,
    make_version,
    merge_sections,
    write_manifest,
)
from ann_index.version.partition_layout import part_dir
from imgcore.card import sha256_file
from imgcore.errors import InvalidInput
from imgcore.index_wire import partition_of, product_key


@dataclass(frozen=True)
class PartitionedBuild:
    parts: list[BuildResult]
    gate_parts: list[GatePart]
    vecs: np.ndarray  # whole catalog, normalised, in global order (by category, then input order)
    categories: dict[str, Any]  # whole-catalog CategoryInfo per name, in that order
    order: np.ndarray  # order[global aid] = position of that item in the caller's input
    filter_keys: list[str]  # every attrs key of the catalog: a filter names them in any partition (issue 28)


def split_rows(items: Sequence[IndexItem], partitions: int) -> list[list[int]]:
    """Input positions of each partition's items, in input order; refused when a partition would be empty."""
    rows: list[list[int]] = [[] for _ in range(partitions)]
    for i, item in enumerate(items):
        rows[partition_of(product_key(item.item_id, item.attrs), partitions)].append(i)
    empty = [p for p, r in enumerate(rows) if not r]
    if empty:
        raise InvalidInput(f"{len(items)} items leave partitions {empty[:10]} of {partitions} empty: use fewer")
    return rows


def build_partitions(
    vectors: np.ndarray,
    items: Sequence[IndexItem],
    out_dir: Path,
    partitions: int,
    *,
    n_trees: int,
    seed: int,
    workers: int,
    thumbs: ThumbPack | None,
) -> PartitionedBuild:
    """Write `out_dir/part-<i>/` for every partition (annoy files, metadata, vectors, thumbnails)."""
    order = np.array(sorted(range(len(items)), key=lambda i: (items[i].category, i)), dtype=np.int64)
    global_aid = np.empty(len(items), dtype=np.int64)
    global_aid[order] = np.arange(len(items))
    parts: list[BuildResult] = []
    gate_parts: list[GatePart] = []
    for p, rows in enumerate(split_rows(items, partitions)):
        pack = ThumbPack.gather([thumbs], rows) if thumbs is not None else None
        built = build_index(
            vectors[rows], [items[i] for i in rows], out_dir / part_dir(p),
            n_trees=n_trees, seed=seed, workers=workers, thumbs=pack,
        )  # fmt: skip
        parts.append(built)
        gate_parts.append(GatePart(built.out_dir, built.categories, global_aid[np.asarray(rows)[built.order]]))
    categories = _category_ranges([items[i] for i in order])
    keys = sorted({key for item in items for key in item.attrs})
    return PartitionedBuild(parts, gate_parts, l2_normalise(vectors)[order], categories, order, keys)


def _files(build: PartitionedBuild) -> dict[str, str]:
    return {f"{part_dir(p)}/{name}": sha for p, part in enumerate(build.parts) for name, sha in part.files.items()}


def write_partitioned_manifests(
    out_dir: Path, build: PartitionedBuild, common: dict[str, Any], embedder_sha256: str, now: datetime
) -> dict[str, Any]:
    """Each part's manifest (an ordinary one, plus `partition`), then the version's; return the version's.

    `common` holds what every manifest says alike (format, embedder, n_trees, search_k, quality, ...).
    """
    files = _files(build)
    version = make_version(files, embedder_sha256, now)
    n = len(build.parts)
    parts: list[dict[str, Any]] = []
    for p, part in enumerate(build.parts):
        manifest = {
            **common,
            "version": version,
            "count": part.count,
            "categories": {name: info.to_dict() for name, info in part.categories.items()},
            "files": part.files,
            "sizes": file_sizes(out_dir / part_dir(p), part.files),
            # Every category of the version: one this part has no item of answers empty, not "unknown".
            "partition": {
                "index": p,
                "of": n,
                "categories": sorted(build.categories),
                "filter_keys": build.filter_keys,
            },
        }
        path = out_dir / part_dir(p) / MANIFEST_NAME
        write_manifest(path, manifest)
        files[f"{part_dir(p)}/{MANIFEST_NAME}"] = sha256 = sha256_file(path)
        parts.append({"dir": part_dir(p), "count": part.count, "manifest_sha256": sha256})
    top = {
        **common,
        "version": version,
        "count": sum(part.count for part in build.parts),
        "categories": {name: {"count": info.count} for name, info in build.categories.items()},
        "partitions": n,
        "parts": parts,
        "files": dict(sorted(files.items())),
        "sizes": file_sizes(out_dir, files),
    }
    write_manifest(out_dir / MANIFEST_NAME, top)
    return top


def manifest_common(
    embedder: EmbedderInfo, gate: GateResult, *, n_trees: int, seed: int, now: datetime, timings: dict[str, float]
) -> dict[str, Any]:
    """What a version's manifest says besides its own files, items and name (every part's says it too)."""
    return {
        "format": FORMAT,
        "created_at": now.isoformat(timespec="seconds"),
        "embedder": embedder_section(embedder),
        "metric": METRIC,
        "n_trees": n_trees,
        "search_k": gate.search_k,
        "seed": seed,
        "quality": gate.to_dict(),
        "skipped": {"count": 0, "rows": []},
        "timings_s": timings,
    }


def thumbnails_section(thumbs: ThumbPack) -> dict[str, Any]:
    return {"file": THUMBS_NAME, "max_side": THUMB_SIDE, "bytes": thumbs.nbytes}


def build_partitioned_version(
    out_dir: Path, vectors: np.ndarray, items: list[IndexItem], *, embedder: EmbedderInfo, opts: Any, **more: Any
) -> tuple[dict[str, Any] | None, GateResult]:
    """Build and gate `opts.partitions` partitions into `out_dir`; (the version's manifest, the gate result).

    `opts` is a RebuildOptions with `partitions`; `more` may give `thumbs` (a ThumbPack, one per item),
    `probes` (the gate's self-match sample, ann_index.build.self_match) and `extra` sections (skipped rows,
    catalog, timings) for every manifest. A failed gate writes no manifest (None): the caller refuses the build.
    """
    thumbs: ThumbPack | None = more.get("thumbs")
    probes: Probes | None = more.get("probes")
    t0 = time.monotonic()
    build = build_partitions(
        vectors, items, out_dir, opts.partitions, n_trees=opts.n_trees, seed=opts.seed, workers=opts.workers,
        thumbs=thumbs,
    )  # fmt: skip
    t_build = time.monotonic()
    found = (probes, build.order) if probes is not None else None
    gate = run_partition_gate(build.gate_parts, build.vecs, build.categories, probes=found, **opts.gate_options())
    now = datetime.now(UTC)
    timings = {"build": round(t_build - t0, 2), "gate": round(time.monotonic() - t_build, 2)}
    common = manifest_common(embedder, gate, n_trees=opts.n_trees, seed=opts.seed, now=now, timings=timings)
    if thumbs is not None:
        common["thumbnails"] = thumbnails_section(thumbs)
    if not gate.passed:
        return None, gate
    merge_sections(common, more.get("extra") or {})
    return write_partitioned_manifests(out_dir, build, common, embedder.sha256, now), gate
