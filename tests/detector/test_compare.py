"""detector.compare: pairing two detectors' outputs, on hand-made detections."""

from __future__ import annotations

from detector import Detection
from detector.compare import agreement


def det(label: str, score: float, box: tuple[float, float, float, float]) -> Detection:
    return Detection(label, None, score, box)


def test_same_label_and_overlap_pair_up_and_the_rest_is_left_on_its_side() -> None:
    ref = [det("horse", 0.5, (0, 0, 10, 10)), det("cow", 0.4, (0, 0, 10, 10)), det("dog", 0.6, (50, 50, 60, 60))]
    cand = [det("horse", 0.45, (1, 0, 10, 10)), det("dog", 0.6, (80, 80, 90, 90)), det("vase", 0.36, (5, 5, 9, 9))]
    agree = agreement(ref, cand)
    assert [(a.label, b.label, round(iou, 2)) for a, b, iou in agree.pairs] == [("horse", "horse", 0.9)]
    assert [d.label for d in agree.only_reference] == ["dog", "cow"]  # dog: too far; cow: no cow in cand
    assert [d.label for d in agree.only_candidate] == ["dog", "vase"]
    assert agree.matched == 1 and agree.total == 5


def test_a_candidate_is_used_once_and_the_better_scored_reference_gets_it() -> None:
    ref = [det("person", 0.3, (0, 0, 10, 10)), det("person", 0.9, (0, 0, 10, 11))]
    agree = agreement(ref, [det("person", 0.8, (0, 0, 10, 10))])
    assert [a.score for a, _, _ in agree.pairs] == [0.9]
    assert [d.score for d in agree.only_reference] == [0.3]


def test_nothing_against_nothing_agrees_trivially() -> None:
    agree = agreement([], [])
    assert agree.matched == agree.total == 0
