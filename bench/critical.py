"""Critical-path CPU time of one photo's detection: the latency it has when each of its threads has a core.

On a machine whose cores are busy with other work, a pipeline that runs two models side by side is no faster by the
wall clock than one that runs them in turn, though on a core of its own each would finish sooner. The CPU seconds
each thread spends (waiting costs none) say what the latency is with free cores: the caller's own CPU, plus what
the side threads add beyond it: the longer of the multi-pose pass's excess (with any work traced under its stage,
such as the plain-frame check before it) over the detector run it overlaps and the busiest side thread's early
crops (the detector's people, started while the pass still runs: detector.crops.EarlyCrops), then the busiest side
thread's later crops (the caller waits for them). A crop is early when it starts before the pass has ended.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any


class CpuTrace:
    """Thread CPU seconds of the wrapped model calls, each with its stage and thread."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, int, float, float, float]] = []  # stage, thread, CPU s, wall start, wall end
        self._lock = threading.Lock()

    def wrap(self, obj: Any, method: str, stage: str) -> None:
        setattr(obj, method, self.traced(getattr(obj, method), stage))

    def traced(self, original: Callable[..., Any], stage: str) -> Callable[..., Any]:
        """`original`, its calls recorded under `stage`."""

        def traced(*args: Any, **kwargs: Any) -> Any:
            t0, w0 = time.thread_time(), time.perf_counter()
            try:
                return original(*args, **kwargs)
            finally:
                with self._lock:
                    self.calls.append((stage, threading.get_ident(), time.thread_time() - t0, w0, time.perf_counter()))

        return traced

    def critical_ms(self, fn: Callable[[], object]) -> float:
        """Run fn once; its critical-path CPU milliseconds (see the module's docstring)."""
        with self._lock:
            self.calls.clear()
        caller, t0 = threading.get_ident(), time.thread_time()
        fn()
        own = time.thread_time() - t0
        with self._lock:
            calls = list(self.calls)
        detect = sum(cpu for stage, thread, cpu, *_ in calls if stage == "detect" and thread == caller)
        passes = [(cpu, end) for stage, thread, cpu, _, end in calls if stage == "multipose" and thread != caller]
        pose = sum(cpu for cpu, _ in passes)
        pass_end = max((end for _, end in passes), default=0.0)
        early: dict[int, float] = {}
        late: dict[int, float] = {}
        for stage, thread, cpu, start, _ in calls:
            if stage == "crop" and thread != caller:
                side = early if start < pass_end else late
                side[thread] = side.get(thread, 0.0) + cpu
        busiest_early, busiest_late = max(early.values(), default=0.0), max(late.values(), default=0.0)
        return 1e3 * (own + max(0.0, pose - detect, busiest_early) + busiest_late)
