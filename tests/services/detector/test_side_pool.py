"""The detector service's side pool (the multi-pose pass beside the detector, the people's crops) runs below
the detector's own threads, so that where cores are short the detector keeps its core."""

from __future__ import annotations

import os
import threading

from services.detector.garments import SPARE_NICE, side_pool


def _nice() -> int:
    return os.getpriority(os.PRIO_PROCESS, threading.get_native_id())


def test_side_threads_run_below_the_callers_priority() -> None:
    caller = _nice()
    pool = side_pool(2)
    try:
        side = set(pool.map(lambda _: _nice(), range(4)))
    finally:
        pool.shutdown(wait=True)
    assert side == {min(caller + SPARE_NICE, 19)}
    assert _nice() == caller  # the caller's own priority is untouched
