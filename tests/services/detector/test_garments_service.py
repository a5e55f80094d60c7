"""The detector service returns each person's garments (#15) in the same answer as the detections."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest

from services.stack import free_port, start_service
from tests.helpers import shared_stack
from tests.helpers.paths import DATA

pytestmark = pytest.mark.stack


def _detect(url: str, name: str, folder: str = "photos") -> dict[str, object]:
    files = {"image": (name, (DATA / folder / name).read_bytes())}
    resp = httpx.post(url + "/v1/detect", files=files, trust_env=False, timeout=60)
    assert resp.status_code == 200, resp.text
    body: dict[str, object] = resp.json()
    return body


def test_garments_follow_the_detections_and_name_their_person() -> None:
    url = shared_stack().url("detector")
    body = _detect(url, "people/park.jpg")
    detections = body["detections"]
    assert isinstance(detections, list)
    garments = [d for d in detections if "part_of" in d]
    assert {g["label"] for g in garments} == {"top", "bottom", "footwear"}
    assert all(detections[g["part_of"]]["label"] == "person" for g in garments)
    assert len({g["part_of"] for g in garments}) == 2  # both people in the photo
    first = detections.index(garments[0])
    assert all("part_of" not in d for d in detections[:first])  # the model's detections first, best first
    assert body["pose_model"]["name"] == "movenet-lightning"  # type: ignore[index]
    ready = httpx.get(url + "/readyz", trust_env=False, timeout=10).json()
    assert ready["ready"] and ready["pose"]["model"]["name"] == "movenet-lightning"
    assert ready["people"]["model"]["name"] == "movenet-multipose"
    assert body["people_model"]["name"] == "movenet-multipose"  # type: ignore[index]


def test_people_the_detector_misses_are_found_by_the_pose_model_and_get_garments() -> None:
    """NanoDet finds neither the man on the utility box nor the woman walking past (issue 29)."""
    body = _detect(shared_stack().url("detector"), "park-f075.jpg", folder="people")
    detections = body["detections"]
    assert isinstance(detections, list)
    people = [n for n, d in enumerate(detections) if d["label"] == "person"]
    assert len(people) == 2 and all(detections[n]["source"] == "pose" for n in people)
    worn: dict[int, set[str]] = {n: set() for n in people}
    for garment in (d for d in detections if "part_of" in d):
        worn[garment["part_of"]].add(garment["label"])
    assert all(kinds == {"top", "bottom", "footwear"} for kinds in worn.values()), worn


def test_an_empty_pose_model_uri_turns_garments_off(tmp_path: Path) -> None:
    svc = start_service(
        "detector",
        free_port(),
        env={
            "IMGSEARCH_DETECTOR_POSE_MODEL_URI": "",
            "IMGSEARCH_DETECTOR_MODEL_CACHE_DIR": str(tmp_path),
        },
        log_path=tmp_path / "detector.log",
    )
    try:
        assert svc.wait_ready(120), svc.log_tail()
        body = _detect(svc.url, "people/park.jpg")
        assert body["pose_model"] is None and body["people_model"] is None  # no garments: no people pass either
        assert all("part_of" not in d for d in body["detections"])  # type: ignore[union-attr]
        assert any(d["label"] == "person" for d in body["detections"])  # type: ignore[union-attr, index]
    finally:
        svc.stop()
