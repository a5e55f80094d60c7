"""The index service's `POST /v1/query` with category sets: a list of names means "any of these"."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from typing import Any

import httpx
import numpy as np
import pytest

from services.index.query import QueryRequest, answers_inline
from tests.helpers import shared_stack

pytestmark = pytest.mark.stack


def _query(body: dict[str, Any]) -> httpx.Response:
    return httpx.post(shared_stack().url("index") + "/v1/query", json=body, trust_env=False, timeout=30)


def _dim() -> int:
    ready = httpx.get(shared_stack().url("index") + "/readyz", trust_env=False, timeout=10).json()
    return int(ready["index"]["embedder"]["dim"])


def test_category_sets_per_row_and_for_all_rows_return_only_those_categories_by_score() -> None:
    vectors = np.random.default_rng(1).normal(size=(3, _dim())).round(4).tolist()
    shoes = ["Sneaker", "Sandal", "ankle-boot"]
    resp = _query({"vectors": vectors, "k": 12, "categories": [shoes, "Bag", None]})
    assert resp.status_code == 200, resp.text
    rows = resp.json()["results"]
    assert {hit["category"] for hit in rows[0]} <= {"Sneaker", "Sandal", "Ankle boot"}
    assert len(rows[0]) == 12 and [h["score"] for h in rows[0]] == sorted((h["score"] for h in rows[0]), reverse=True)
    assert {hit["category"] for hit in rows[1]} == {"Bag"}
    # The set's answer is the best of its categories' own answers, merged by score.
    singles = [_query({"vectors": vectors[:1], "k": 12, "category": c}).json()["results"][0] for c in shoes]
    best = sorted((h for hits in singles for h in hits), key=lambda h: -h["score"])[:12]
    assert [h["item_id"] for h in rows[0]] == [h["item_id"] for h in best]
    every = _query({"vectors": vectors[:2], "k": 5, "category": ["Bag", "Trouser"]}).json()["results"]
    assert all({h["category"] for h in hits} <= {"Bag", "Trouser"} for hits in every)


def test_bad_category_sets_are_4xx_json_and_the_service_stays_up() -> None:
    vec = [[0.1] * _dim()]
    empty = _query({"vectors": vec, "k": 3, "categories": [[]]})
    assert empty.status_code == 400 and "category" in empty.json()["error"]
    unknown = _query({"vectors": vec, "k": 3, "category": ["Bag", "Hats"]})
    assert unknown.status_code == 404 and "Hats" in unknown.json()["error"]
    nested = _query({"vectors": vec, "k": 3, "category": [["Bag"]]})
    assert nested.status_code in (400, 422) and "error" in nested.json()
    assert _query({"vectors": vec, "k": 3, "category": ["Bag"]}).status_code == 200


def test_a_lone_small_query_answered_on_the_event_loop_is_the_one_the_thread_pool_gives() -> None:
    # 4 rows: answered inline when alone; 5 rows and 4 rows beside other queries go through the thread pool.
    vectors = np.random.default_rng(7).normal(size=(5, _dim())).round(4).tolist()
    alone = _query({"vectors": vectors[:4], "k": 10}).json()["results"]
    pooled = _query({"vectors": vectors, "k": 10}).json()["results"][:4]
    assert [[h["item_id"] for h in hits] for hits in alone] == [[h["item_id"] for h in hits] for hits in pooled]
    with ThreadPoolExecutor(4) as pool:
        together = list(pool.map(lambda _: _query({"vectors": vectors[:4], "k": 10}).json()["results"], range(8)))
    assert all(rows == alone for rows in together)


def test_only_a_lone_small_unfiltered_query_runs_inline() -> None:
    small, filtered = QueryRequest(vectors_b64="", dim=2), QueryRequest(vectors_b64="", dim=2, filter="price < 3")
    assert answers_inline(1, 4, small)
    assert not answers_inline(2, 1, small)  # another query in flight: the pool keeps the loop free
    assert not answers_inline(1, 5, small) and not answers_inline(1, 1, filtered)
    assert not answers_inline(1, 1, QueryRequest(vectors_b64="", dim=2, with_prints=True))
