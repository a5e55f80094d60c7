"""Retrieval measures, one definition each: R@n / P@k over category labels, item R@n, overlap@k of two result
lists, and the accepted range of k.

R@n and P@k: a query's results count as hits when they are in the query's category. Per query, R@n is
whether a hit is among the first n results and P@k the share of hits among the first k. Means (per category,
overall) are rounded to 4 decimals. The build's quality gate, `imgsearch eval`, models/evaluate.py and the
training's validation all report these.

Item R@n (`item_row`): the same R@n when a hit is the very item the query shows (a shopper's photo of it, or
its own catalog image: self-match@1), so an embedder that only knows categories cannot score well.
"""

from __future__ import annotations

from collections.abc import Sequence
from fractions import Fraction

import numpy as np

from imgcore.errors import InvalidInput

KS = (1, 5, 10)
ITEM_KS = (1, 10)

Row = dict[str, Fraction]


def check_k(k: int, max_k: int | None = None) -> int:
    """`k` when it is a number of results the caller may ask for: at least 1, and at most `max_k` if given.

    Raises InvalidInput (reason "bad_k", HTTP 400) with the range in its message.
    """
    if max_k is None:
        if k < 1:
            raise InvalidInput("k must be at least 1", reason="bad_k")
    elif not 1 <= k <= max_k:
        raise InvalidInput(f"k must be between 1 and {max_k}", reason="bad_k")
    return k


def query_metrics(hits: Sequence[bool], k: int, recall_at: Sequence[int] = KS, out_of: int | None = None) -> Row:
    """R@n for each n <= k in `recall_at`, then P@k: hits among the first k over `out_of` (default k).

    `hits[i]`: whether result i (best first) is in the query's category. The values are exact fractions, so
    that a mean of them does not depend on the order it is summed in (see `mean_rows`).
    """
    row = {f"r_at_{n}": Fraction(int(any(hits[:n]))) for n in recall_at if n <= k}
    row[f"p_at_{k}"] = Fraction(int(sum(hits[:k])), out_of or k)
    return row


def item_row(hits: Sequence[bool], recall_at: Sequence[int] = ITEM_KS, prefix: str = "item_") -> Row:
    """`{prefix}r_at_{n}` for each n: whether the query's item (`hits[i]`: result i is it) is among the first n."""
    return {f"{prefix}r_at_{n}": Fraction(int(any(hits[:n]))) for n in recall_at}


def mean_rows(rows: Sequence[Row]) -> dict[str, float]:
    """Per-key means of per-query rows (same keys in each), rounded to 4 decimals; {} for no rows.

    Each mean is the float nearest the exact mean, rounded once: for a matrix of hits that is numpy's
    `round(hit.mean(), 4)` (count / cells), as models/evaluate.py and the training's validation computed it.
    The gate and `imgsearch eval` used to add the per-query floats instead; the two agree except when the exact
    mean ends in 5 at the 5th decimal (3743/4000 = 0.93575), where the old sum's rounding error, and so the
    order of the queries, decided between 0.9357 and 0.9358. Now such a tie rounds as its float does.
    """
    return {key: round(float(sum(r[key] for r in rows) / len(rows)), 4) for key in rows[0]} if rows else {}


def by_category(rows: dict[str, list[Row]]) -> tuple[dict[str, float], dict[str, dict[str, float]]]:
    """(overall means, {category: {"queries": n, means...}}) of per-query rows grouped by category."""
    overall = mean_rows([row for per in rows.values() for row in per])
    return overall, {cat: {"queries": len(per), **mean_rows(per)} for cat, per in sorted(rows.items())}


def matrix_means(hit: np.ndarray, k: int, recall_at: Sequence[int] = KS) -> dict[str, float]:
    """`mean_rows` of a [queries, >= k] boolean matrix of hits (row i: query i's results, best first)."""
    return mean_rows([query_metrics(row, k, recall_at) for row in hit.tolist()])


def shown_as(means: dict[str, float]) -> dict[str, float]:
    """The same means keyed "R@n" / "P@k", as the model cards and training cards record them."""
    return {key.replace("r_at_", "R@").replace("p_at_", "P@"): value for key, value in means.items()}


def overlap_at(a: Sequence[str], b: Sequence[str], k: int) -> float | None:
    """overlap@k of two ranked lists of ids: |top-k(a) ∩ top-k(b)| / max(|top-k(a)|, |top-k(b)|).

    Order inside the top k does not count. The denominator is k whenever either list has k results; when
    both have fewer (a category with few items, a k below the depth asked), it is the longer of the two, so
    two equal short lists score 1.0 and each result one side lacks counts against the score. None when both
    lists are empty: nothing to compare, and callers leave it out of their means.
    """
    top_a, top_b = a[:k], b[:k]
    depth = max(len(top_a), len(top_b))
    if depth == 0:
        return None
    return len(set(top_a) & set(top_b)) / depth
