"""`imgsearch search`'s table (services/cli/search.py): short whatever the answer, every item named."""

from __future__ import annotations

from typing import Any

import pytest

from services.cli.search import MAX_LINES, format_table


def _answer(n_items: int, k: int) -> dict[str, Any]:
    hits = [
        {"item_id": f"fmnist-train-{i:05d}", "score": 0.9 - i / 100, "category": "Coat", "title": f"Coat #{i:05d}"}
        for i in range(k)
    ]
    items = [
        {
            "label": "top",
            "score": 0.7,
            "box": [1.0, 2.0, 30.4, 40.6],
            "searched_category": ["Coat", "Shirt"],
            "results": hits,
        }
        for _ in range(n_items)
    ]
    for item in items:
        item["results"] = hits
    return {
        "items": items,
        "ignored": [{"label": "person", "why": "garments_searched"}],
        "index_version": "v1",
        "timings_ms": {"decode": 3.0, "detect": 40.0, "embed": 20.0, "search": 1.0, "total": 66.0},
    }


@pytest.mark.parametrize("n_items", [1, 3, 8, 30])
def test_the_table_fits_in_forty_lines_and_names_every_shown_item(n_items: int) -> None:
    lines = format_table(_answer(n_items, 10), 10)
    assert len(lines) <= MAX_LINES
    item_lines = [line for line in lines if line.startswith(tuple(f"{n}. " for n in range(1, 31)))]
    assert len(item_lines) == min(n_items, 18)
    assert item_lines[0] == "1. top 0.70 [1,2,30,41] in Coat, Shirt"
    assert lines[-1].startswith("(showing") == (n_items > 3)  # up to three items: all ten results each
    assert "not searched: person (garments_searched)" in lines


def test_one_item_shows_all_its_results_with_rank_score_id_category_and_title() -> None:
    lines = format_table(_answer(1, 10), 10)
    assert lines[0].startswith("1 item(s), index v1, 66 ms (decode 3, detect 40, embed 20, search 1)")
    rows = lines[2:12]
    assert rows[0].split() == ["1", "0.900", "fmnist-train-00000", "Coat", "Coat", "#00000"]
    assert rows[9].split()[0] == "10"
    assert not any(line.startswith("(showing") for line in lines)


def test_a_whole_photo_fallback_is_named_as_such() -> None:
    body = _answer(1, 2)
    body["items"][0] = {"label": None, "fallback": "whole_image", "box": [0, 0, 10, 10], "results": []}
    assert format_table(body, 2)[1] == "1. whole photo [0,0,10,10] in all categories"
