"""Every person in the photo (issue 29) through the whole stack: people NanoDet misses are found by the
multi-pose model and searched as their garments, numbered per person; unrelated objects stay unsearched."""

from __future__ import annotations

import json
from typing import Any

import numpy as np
import pytest

from detector.nms import box_iou
from services.gateway.garments import split_items
from services.gateway.regions import Region
from tests.helpers import shared_stack
from tests.helpers.http import search
from tests.helpers.paths import DATA

PEOPLE = DATA / "people"
LABELS = {p["file"]: p for p in json.loads((PEOPLE / "labels.json").read_text())["photos"]}
GARMENTS = {"top", "bottom", "footwear"}


def _search(name: str) -> dict[str, Any]:
    resp = search(shared_stack().gateway_url, (PEOPLE / name).read_bytes(), k=5)
    assert resp.status_code == 200, resp.text
    body: dict[str, Any] = resp.json()
    return body


def _worn(body: dict[str, Any]) -> dict[int, set[str]]:
    worn: dict[int, set[str]] = {}
    for item in body["items"]:
        worn.setdefault(item["person"], set()).add(item["label"])
    return worn


@pytest.mark.stack
def test_two_people_both_get_garments_though_the_detector_finds_one() -> None:
    """park-f120.jpg: NanoDet finds the man on the utility box, not the woman walking past; MultiPose finds her."""
    body = _search("park-f120.jpg")
    assert {item["label"] for item in body["items"]} <= GARMENTS and "fallback" not in body
    worn = _worn(body)
    assert sorted(worn) == [1, 2] and all(worn.values()), worn
    people = [ignored for ignored in body["ignored"] if ignored["label"] == "person"]
    assert sorted((p["person"], p["why"]) for p in people) == [(1, "garments_searched"), (2, "garments_searched")]


@pytest.mark.stack
def test_objects_that_are_no_catalog_kind_are_still_not_searched() -> None:
    """lab-c3-f033.jpg: two people indoors and a chair; the chair is listed, not searched."""
    body = _search("lab-c3-f033.jpg")
    assert {item["label"] for item in body["items"]} <= GARMENTS and len(_worn(body)) >= 2
    assert ("chair", "not_a_catalog_kind") in [(ignored["label"], ignored["why"]) for ignored in body["ignored"]]


@pytest.mark.stack
def test_an_action_pose_returns_its_footwear() -> None:
    """park-f000.jpg: arms up, feet spread on top of a utility box, against the sun; NanoDet finds nobody."""
    body = _search("park-f000.jpg")
    footwear = [item["box"] for item in body["items"] if item["label"] == "footwear"]
    truth = LABELS["park-f000.jpg"]["people"][0]["garments"]["footwear"]
    assert footwear and box_iou(np.array(truth, float), np.array(footwear, float)).max() >= 0.5, footwear
    assert all(item["results"] for item in body["items"])


def test_garments_and_their_people_are_numbered_in_the_detectors_order() -> None:
    regions = [
        Region(box=[0, 0, 9, 9], label="person", detection=0),
        Region(box=[0, 0, 9, 9], label="chair", detection=1),
        Region(box=[0, 0, 9, 9], label="person", detection=2),
        Region(box=[0, 0, 9, 9], label="person", detection=3),  # no garments found: no number
        Region(box=[0, 0, 9, 9], label="top", detection=4, part_of=2),
        Region(box=[0, 0, 9, 9], label="footwear", detection=5, part_of=0),
    ]
    kinds = {"top": ["Shirt"], "footwear": ["Sneaker"]}
    searched, ignored = split_items(regions, kinds, frozenset({"Shirt", "Sneaker"}), None)
    assert [(r.label, r.person) for r in searched] == [("top", 2), ("footwear", 1)]
    assert [(r.label, r.person, r.ignored) for r in ignored] == [
        ("person", 1, "garments_searched"),
        ("chair", None, "not_a_catalog_kind"),
        ("person", 2, "garments_searched"),
        ("person", None, "not_a_catalog_kind"),
    ]
    assert searched[0].to_json()["person"] == 2 and "person" not in ignored[1].to_json()
