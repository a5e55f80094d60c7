"""`--nice`: a service raises its own niceness at start, and every thread it starts inherits it; the local
stack of `imgsearch up` nices its embedder so the speculative embed yields the cores to detection. In the
detector only its side pool (the multi-pose pass beside the detector, services/detector/garments.py) runs lower."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from services.detector.garments import SPARE_NICE
from services.stack import EMBEDDER_NICE
from tests.helpers import Stack, shared_stack


def _thread_niceness(pid: int) -> set[int]:
    """The niceness of every thread of a process (field 19 of /proc/PID/task/TID/stat)."""
    out = set()
    for task in Path(f"/proc/{pid}/task").iterdir():
        fields = (task / "stat").read_text().rsplit(")", 1)[1].split()
        out.add(int(fields[16]))
    return out


@pytest.mark.stack
def test_the_local_stacks_embedder_and_all_its_threads_run_niced_the_detector_does_not() -> None:
    stack: Stack = shared_stack()
    pids = stack.pids()
    base = os.getpriority(os.PRIO_PROCESS, 0)
    embedder_threads = _thread_niceness(pids["embedder"])
    assert embedder_threads == {min(base + EMBEDDER_NICE, 19)}
    assert len(list(Path(f"/proc/{pids['embedder']}/task").iterdir())) > 1  # the model's and the pool's threads too
    detector = _thread_niceness(pids["detector"])
    assert base in detector and detector <= {base, min(base + SPARE_NICE, 19)}
    assert os.getpriority(os.PRIO_PROCESS, pids["detector"]) == base  # its main thread
    assert _thread_niceness(pids["gateway"]) == {base}
