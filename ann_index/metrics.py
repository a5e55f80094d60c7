"""Retrieval metrics over category labels, shared by the build's quality gate and `imgsearch eval`.

A query's results count as hits when they are in the query's category. Per query: R@n, whether a hit
is among the first n results; P@k, the share of hits among the first k. Reported as means per category
and overall, rounded to 4 decimals.
"""

from __future__ import annotations

from collections.abc import Sequence

KS = (1, 5, 10)


def query_metrics(
    hits: Sequence[bool], k: int, recall_at: Sequence[int] = KS, out_of: int | None = None
) -> dict[str, float]:
    """R@n for each n <= k in `recall_at`, then P@k: hits among the first k over `out_of` (default k).

    `hits[i]`: whether result i (best first) is in the query's category.
    """
    row = {f"r_at_{n}": float(any(hits[:n])) for n in recall_at if n <= k}
    row[f"p_at_{k}"] = sum(hits[:k]) / (out_of or k)
    return row


def mean_rows(rows: Sequence[dict[str, float]]) -> dict[str, float]:
    """Per-key means of per-query rows (same keys in each), rounded to 4 decimals; {} for no rows."""
    return {key: round(sum(r[key] for r in rows) / len(rows), 4) for key in rows[0]} if rows else {}


def by_category(rows: dict[str, list[dict[str, float]]]) -> tuple[dict[str, float], dict[str, dict[str, float]]]:
    """(overall means, {category: {"queries": n, means...}}) of per-query rows grouped by category."""
    overall = mean_rows([row for per in rows.values() for row in per])
    return overall, {cat: {"queries": len(per), **mean_rows(per)} for cat, per in sorted(rows.items())}
