"""Shop the look (#15) through the whole stack: people become garments, each item is searched among its own
kind's categories (the catalog's kinds.json, carried by the served index), unrelated objects are not searched."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from ann_index.catalog.demo import FMNIST_KINDS
from tests.helpers import shared_stack
from tests.helpers.http import search
from tests.helpers.paths import DATA, REPO

pytestmark = pytest.mark.stack

PHOTOS = DATA / "photos"
GARMENTS = {"top", "bottom", "footwear"}


def _search(name: str, **params: Any) -> dict[str, Any]:
    resp = search(shared_stack().gateway_url, (PHOTOS / name).read_bytes(), **({"k": 8} | params))
    assert resp.status_code == 200, resp.text
    body: dict[str, Any] = resp.json()
    return body


def _assert_within_kinds(items: list[dict[str, Any]]) -> None:
    for item in items:
        allowed = FMNIST_KINDS[item["label"]]
        assert item["results"], item["label"]
        assert {hit["category"] for hit in item["results"]} <= set(allowed), (item["label"], item["results"])
        searched = item["searched_category"]
        assert sorted(searched) == sorted(allowed) if isinstance(searched, list) else [searched] == allowed


def test_the_index_tells_the_gateway_its_catalog_kinds() -> None:
    ready = httpx.get(shared_stack().url("index") + "/readyz", trust_env=False, timeout=10).json()
    assert ready["index"]["kinds"] == FMNIST_KINDS


def test_two_people_in_a_park_become_garments_searched_among_their_kinds() -> None:
    body = _search("people/park.jpg")
    labels = [item["label"] for item in body["items"]]
    assert "fallback" not in body
    assert sorted(labels) == sorted([*GARMENTS] * 2)  # each of the two: top, bottom, footwear
    _assert_within_kinds(body["items"])
    why = [(ignored["label"], ignored["why"]) for ignored in body["ignored"]]
    assert why == [("person", "garments_searched")] * 2  # both people searched as their garments, nothing else
    for item in body["items"]:  # drawn on the photo: boxes inside it
        x1, y1, x2, y2 = item["box"]
        assert 0 <= x1 < x2 <= body["image"]["width"] and 0 <= y1 < y2 <= body["image"]["height"]


def test_animals_beside_a_person_are_listed_as_ignored_not_searched() -> None:
    body = _search("person.jpg")
    assert {item["label"] for item in body["items"]} == GARMENTS
    _assert_within_kinds(body["items"])
    ignored = {item["label"]: item["why"] for item in body["ignored"]}
    assert ignored["horse"] == "not_a_catalog_kind" and ignored["dog"] == "not_a_catalog_kind"


def test_a_portrait_gives_only_a_top() -> None:
    body = _search("people/astronaut.jpg")
    assert [item["label"] for item in body["items"]] == ["top"]
    _assert_within_kinds(body["items"])


def test_nothing_searchable_falls_back_to_the_whole_image_and_lists_what_was_seen() -> None:
    body = _search("dog.jpg", k=7)  # a bicycle and a dog: neither is a catalog kind; k of its own: not cached
    assert body["fallback"] == "whole_image" and len(body["items"]) == 1
    assert not body["cached"] and body["timings_ms"]["embed"] >= 1.0  # the whole-image call's own time
    assert {item["label"] for item in body["ignored"]} >= {"bicycle", "dog"}


def test_a_category_the_caller_names_applies_to_the_items_of_its_kind() -> None:
    body = _search("people/park.jpg", category="Sneaker")
    assert [item["label"] for item in body["items"]] == ["footwear", "footwear"]
    assert all({hit["category"] for hit in item["results"]} == {"Sneaker"} for item in body["items"])
    why = sorted((ignored["label"], ignored["why"]) for ignored in body["ignored"])
    assert why == sorted(
        [("top", "other_category"), ("bottom", "other_category")] * 2 + [("person", "garments_searched")] * 2
    )


def test_a_category_of_no_detected_kind_searches_the_whole_photo_in_it() -> None:
    body = _search("people/park.jpg", category="Bag")  # nobody carries a bag
    assert body["fallback"] == "whole_image" and len(body["items"]) == 1
    assert {hit["category"] for hit in body["items"][0]["results"]} == {"Bag"}
    assert {ignored["why"] for ignored in body["ignored"]} == {"other_category", "garments_searched"}


FLAT_LAY = REPO / "services" / "static" / "samples" / "flat-lay.jpg"
# The sample's items, left to right then below (services/static/samples/LICENSES.md), and the categories
# each one's best hit may have.
FLAT_LAY_ITEMS = [({"T-shirt/top", "Shirt"}, 54), ({"Trouser"}, 324), ({"Bag"}, 469), ({"Sneaker"}, 476)]


def test_a_flat_lay_is_searched_as_its_separate_items() -> None:
    resp = search(shared_stack().gateway_url, FLAT_LAY.read_bytes(), k=5)
    assert resp.status_code == 200, resp.text
    body = resp.json()
    assert "fallback" not in body
    items = sorted(body["items"], key=lambda item: (item["box"][1] > 280, item["box"][0]))
    assert [item["source"] for item in items] == ["foreground"] * 4, items
    for item, (categories, left) in zip(items, FLAT_LAY_ITEMS, strict=True):
        assert abs(item["box"][0] - left) <= 12, (item["box"], left)
        assert item["searched_category"] is None  # no kind: among all categories
        assert item["results"][0]["category"] in categories, (left, [hit["category"] for hit in item["results"]])
    # What COCO made of the flat-lay, not searched: a "cup" (at a square input it also saw a "toilet" in the bag).
    assert [(ignored["label"], ignored["why"]) for ignored in body["ignored"]] == [("cup", "not_a_catalog_kind")]
