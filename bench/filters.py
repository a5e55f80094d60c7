"""Benchmark: filtered search (issue 28): recall@10 against exact filtered search, and p95 latency, at every
selectivity from 50 % to 0.01 %, next to the unfiltered query, in one run.

A real version (annoy forest, meta.sqlite, vectors.npy, gated search_k) is built once from synthetic clustered
128-d vectors (bench/ann.py's data model) with 10 categories and a synthetic attribute `sel`, uniform in
[0, 100000) and independent of the vectors (the hard case for post-filtering: matches are spread over every
cluster), and cached under /tmp/imgsearch-bench. Queries are held-out points; each runs through
`IndexReader.query` with the service's default options (one hit per product, here one image each), first
unfiltered, then with `sel < X` for each selectivity, in a rotating order so the machine's noise falls on all
of them alike. Ground truth is exact (numpy) search over the items passing the filter.

    python bench/filters.py                    # 200 000 items, 300 queries
    python bench/filters.py --items 20000      # a quick look
"""

from __future__ import annotations

import hashlib
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from ann import make_data
from common import CACHE, arg_parser, emit, machine, pct, table

from ann_index.build.rebuild import RebuildOptions, build_version
from ann_index.items import IndexItem
from ann_index.serving.filters import parse_filter
from ann_index.serving.hits import QueryOptions
from ann_index.serving.reader import IndexReader

K = 10
SELECTIVITIES = (0.5, 0.1, 0.01, 0.001, 0.0001)
SEL_RANGE = 100_000


@dataclass(frozen=True)
class SyntheticEmbedder:
    """What a manifest records about the embedder; these vectors come from no model."""

    dim: int
    name: str = "synthetic"
    version: str = "1"
    sha256: str = hashlib.sha256(b"bench-filters").hexdigest()
    metric: str = "angular"
    card: dict[str, Any] = field(default_factory=dict)


def build(items: int, dim: int, queries: int, seed: int) -> tuple[Path, np.ndarray, np.ndarray, np.ndarray]:
    """(version folder, item vectors, attribute `sel` per item, query vectors); the version cached on disk."""
    vectors, held_out = make_data(items, queries, dim, clusters=200, seed=seed)
    sel = np.random.default_rng(seed + 1).integers(0, SEL_RANGE, items)
    out = CACHE / f"filters-{items}-{dim}-{seed}"
    if not (out / "manifest.json").exists():
        shutil.rmtree(out, ignore_errors=True)
        rows = [
            IndexItem(f"item-{i:07d}", f"cat{i % 10}", f"Item {i}", f"file:///img/{i}.png", {"sel": int(sel[i])})
            for i in range(items)
        ]
        t0 = time.monotonic()
        build_version(vectors, rows, out, SyntheticEmbedder(dim), RebuildOptions(workers=2, progress=False))
        print(f"built {items} items in {time.monotonic() - t0:.0f} s", flush=True)
    return out, vectors, sel, held_out


def exact_top(vectors: np.ndarray, mask: np.ndarray, query: np.ndarray) -> set[int]:
    ids = np.flatnonzero(mask)
    scores = vectors[ids] @ query
    top = np.argsort(-scores, kind="stable")[:K]
    return {int(i) for i in ids[top]}


def run(reader: IndexReader, vectors: np.ndarray, sel: np.ndarray, queries: np.ndarray) -> dict[str, Any]:
    names = ["none", *(f"{s:g}" for s in SELECTIVITIES)]
    options = {"none": QueryOptions(group=True)}
    masks: dict[str, np.ndarray] = {}
    for s, name in zip(SELECTIVITIES, names[1:], strict=True):
        options[name] = QueryOptions(where=parse_filter(f"sel < {int(s * SEL_RANGE)}"), group=True)
        masks[name] = sel < int(s * SEL_RANGE)
    unit = queries / np.linalg.norm(queries, axis=1, keepdims=True)
    times: dict[str, list[float]] = {n: [] for n in names}
    recall: dict[str, list[float]] = {n: [] for n in names}
    for q, query in enumerate(unit):
        for name in names[q % len(names) :] + names[: q % len(names)]:
            t0 = time.perf_counter()
            hits = reader.query(query, K, None, options[name])[0]
            times[name].append((time.perf_counter() - t0) * 1e3)
            truth = exact_top(vectors, masks.get(name, np.ones(len(sel), bool)), query)
            got = {int(h.item_id[5:]) for h in hits}
            recall[name].append(len(got & truth) / len(truth))
    return {n: {"recall_at_10": float(np.mean(recall[n])), "ms": pct(times[n])} for n in names}


def main() -> None:
    parser = arg_parser(__doc__)
    parser.add_argument("--items", type=int, default=200_000)
    parser.add_argument("--queries", type=int, default=300)
    parser.add_argument("--dim", type=int, default=128)
    parser.add_argument("--seed", type=int, default=7)
    args = parser.parse_args()
    path, vectors, sel, queries = build(args.items, args.dim, args.queries, args.seed)
    with IndexReader.open(path, embedder_sha256=None, dim=None) as reader:
        result = run(reader, vectors / np.linalg.norm(vectors, axis=1, keepdims=True), sel, queries)
        search_k = reader.search_k
    base = result["none"]["ms"]["p95"]
    rows = []
    by_selectivity: dict[str, Any] = {}
    for name, r in result.items():
        ratio = r["ms"]["p95"] / base
        rows.append([name, r["recall_at_10"], r["ms"]["p50"], r["ms"]["p95"], ratio])
        if name != "none":
            by_selectivity[name] = {"recall_at_10": round(r["recall_at_10"], 4), "p95_ms": round(r["ms"]["p95"], 2)}
            by_selectivity[name]["p95_vs_unfiltered"] = round(ratio, 2)
    print(table(["selectivity", "recall@10", "p50 ms", "p95 ms", "p95 / unfiltered"], rows))
    ok = all(v["recall_at_10"] >= 0.95 and v["p95_vs_unfiltered"] <= 2.0 for v in by_selectivity.values())
    emit(
        {
            "bench": "filters",
            "items": args.items,
            "queries": args.queries,
            "dim": args.dim,
            "search_k": search_k,
            "unfiltered": {"recall_at_10": round(result["none"]["recall_at_10"], 4), "p95_ms": round(base, 2)},
            "by_selectivity": by_selectivity,
            "meets_targets": ok,
            "machine": machine(),
        }
    )


if __name__ == "__main__":
    main()
