"""The one definition of R@n / P@k, overlap@k and the accepted k (imgcore.retrieval), on cases worked by hand."""

from __future__ import annotations

from fractions import Fraction

import numpy as np
import pytest

from imgcore.errors import InvalidInput
from imgcore.retrieval import by_category, check_k, matrix_means, mean_rows, overlap_at, query_metrics, shown_as


def test_category_metrics_of_one_query() -> None:
    hits = [False, True, False, True, True]
    assert query_metrics(hits, k=5) == {"r_at_1": 0, "r_at_5": 1, "p_at_5": Fraction(3, 5)}
    # The gate's form: precision over the neighbours a tiny catalog returned, recall at 1 only.
    assert query_metrics(hits[:2], k=10, recall_at=(1,), out_of=2) == {"r_at_1": 0, "p_at_10": Fraction(1, 2)}
    overall, per = by_category({"b": [{"p": Fraction(1)}, {"p": Fraction(0)}], "a": [{"p": Fraction(1)}]})
    assert overall == {"p": 0.6667} and list(per) == ["a", "b"]
    assert per["b"] == {"queries": 2, "p": 0.5}
    assert mean_rows([]) == {}


def test_three_queries_worked_by_hand() -> None:
    # q1 finds its category first, q2 third, q3 not at all in its top 3:
    # R@1 = 1/3, R@3 = 2/3, P@3 = (1/3 + 1/3 + 0) / 3 = 2/9.
    hit = np.array([[True, False, False], [False, False, True], [False, False, False]])
    expected = {"r_at_1": 0.3333, "r_at_3": 0.6667, "p_at_3": 0.2222}
    assert matrix_means(hit, 3, recall_at=(1, 3)) == expected
    rows = [query_metrics(row, 3, recall_at=(1, 3)) for row in hit.tolist()]
    overall, per = by_category({"shirt": rows[:2], "bag": rows[2:]})
    assert overall == expected
    assert per == {
        "bag": {"queries": 1, "r_at_1": 0.0, "r_at_3": 0.0, "p_at_3": 0.0},
        "shirt": {"queries": 2, "r_at_1": 0.5, "r_at_3": 1.0, "p_at_3": 0.3333},
    }
    assert shown_as(expected) == {"R@1": 0.3333, "R@3": 0.6667, "P@3": 0.2222}


def test_a_mean_is_the_exact_one_rounded_once_whatever_the_order() -> None:
    # 2469 hits in 2000 queries' top 10: P@10 = 0.12345 exactly, a tie at the 4th decimal. Summing the 2000
    # per-query precisions in floating point lands either side of it depending on the order; the exact mean
    # rounds as numpy's count / cells does, which is what models/evaluate.py and the training cards recorded.
    rng = np.random.default_rng(0)
    hit = np.zeros((2000, 10), dtype=bool)
    hit.flat[rng.choice(hit.size, 2469, replace=False)] = True
    expected = round(float(hit.mean()), 4)
    assert matrix_means(hit, 10)["p_at_10"] == expected
    assert matrix_means(hit[rng.permutation(len(hit))], 10)["p_at_10"] == expected
    for k in (1, 5, 10):
        assert matrix_means(hit, 10)[f"r_at_{k}"] == round(float(hit[:, :k].any(axis=1).mean()), 4)


def test_overlap_counts_shared_ids_of_the_two_top_k_lists() -> None:
    ranked = ["a", "b", "c", "d"]
    assert overlap_at(ranked, list(ranked), 10) == 1.0
    assert overlap_at(ranked, ["x", "y", "z", "w"], 10) == 0.0
    assert overlap_at(ranked, ["a", "x", "c", "y"], 4) == 0.5
    assert overlap_at(ranked, ["b", "a", "x"], 2) == 1.0  # order inside the top k does not count
    assert overlap_at([], [], 5) is None


def test_overlap_of_short_lists_is_over_the_longer_one() -> None:
    ten = [str(i) for i in range(10)]
    assert overlap_at(ten, ten[:7] + ["x", "y", "z"], 10) == 0.7  # both full: over k
    assert overlap_at(["a", "b", "c"], ["c", "b", "a"], 10) == 1.0  # equal short lists agree fully
    assert overlap_at(["a", "b"], ["a", "b", "c", "d"], 10) == 0.5  # the two missing results count against it
    assert overlap_at(["a", "b", "c", "d"], ["a", "b"], 10) == 0.5  # either way round
    assert overlap_at(ten, ["0"], 10) == 0.1
    assert overlap_at([], ["a"], 10) == 0.0


def test_k_must_be_in_range() -> None:
    assert check_k(1) == 1 and check_k(10_000) == 10_000 and check_k(100, 100) == 100
    for k, max_k, message in [(0, None, "k must be at least 1"), (0, 100, "k must be between 1 and 100")]:
        with pytest.raises(InvalidInput, match=message) as caught:
            check_k(k, max_k)
        assert (caught.value.reason, caught.value.status) == ("bad_k", 400)
    with pytest.raises(InvalidInput, match="k must be between 1 and 100"):
        check_k(101, 100)
