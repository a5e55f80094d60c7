"""Dynamic micro-batching: concurrent requests' crops are gathered into one model batch.

Like Triton's dynamic batcher: a batch starts when `max_batch_size` rows are queued or when the oldest
queued request has waited `max_wait_s`, whichever comes first — or at once when no other request has
announced itself (a lone caller never pays the wait). One worker thread runs the model, so the
event loop never blocks and new requests queue up (and preprocess in other threads) while a batch runs.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import deque
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

import numpy as np

from imgcore.errors import ModelNotReady
from services.common.metrics import BATCH_SIZE, STAGE_SECONDS

log = logging.getLogger("imgsearch.batcher")


SHUTTING_DOWN = "embedder is shutting down"


@dataclass
class _Job:
    rows: np.ndarray
    future: asyncio.Future[np.ndarray]
    queued_at: float = field(default_factory=time.perf_counter)


class MicroBatcher:
    """`await submit(rows)` returns `run(rows)`, computed in a batch with other callers' rows."""

    def __init__(self, run: Callable[[np.ndarray], np.ndarray], max_batch_size: int, max_wait_s: float) -> None:
        self._run = run
        self.max_batch_size = max(1, max_batch_size)
        self.max_wait_s = max(0.0, max_wait_s)
        self._pending: deque[_Job] = deque()
        self._pending_rows = 0
        self._arriving = 0
        self._wakeup = asyncio.Event()
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="batch")
        self._task: asyncio.Task[None] | None = None
        self._stopped = False

    def start(self) -> None:
        """Start the batching loop on the running event loop."""
        if self._task is None:
            self._task = asyncio.create_task(self._loop(), name="micro-batcher")

    async def stop(self) -> None:
        """Stop the loop; queued callers, and any that come later, get a 503 (ModelNotReady), not a 500."""
        self._stopped = True
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        while self._pending:
            _refuse(self._pending.popleft())
        self._executor.shutdown(wait=False, cancel_futures=True)

    def announce(self) -> None:
        """A request will submit soon (it is decoding/preprocessing): worth waiting for it."""
        self._arriving += 1

    def withdraw(self) -> None:
        """An announced request will not submit after all (it failed)."""
        self._arriving -= 1
        self._wakeup.set()

    async def submit(self, rows: np.ndarray, *, announced: bool = False) -> np.ndarray:
        """Queue `rows` ([n, ...]); return the model outputs for them ([n, ...])."""
        if self._stopped:
            raise ModelNotReady(SHUTTING_DOWN)
        if self._task is None:
            raise RuntimeError("batcher is not started")
        if announced:
            self._arriving -= 1
        job = _Job(rows, asyncio.get_running_loop().create_future())
        self._pending.append(job)
        self._pending_rows += len(rows)
        self._wakeup.set()
        return await job.future

    async def _gather(self) -> list[_Job]:
        while not self._pending:
            self._wakeup.clear()
            await self._wakeup.wait()
        deadline = self._pending[0].queued_at + self.max_wait_s
        while self._pending_rows < self.max_batch_size and self._arriving > 0:  # nobody coming: don't wait
            remaining = deadline - time.perf_counter()
            if remaining <= 0:
                break
            self._wakeup.clear()
            try:
                await asyncio.wait_for(self._wakeup.wait(), remaining)
            except TimeoutError:
                break
        jobs = [self._pending.popleft()]
        rows = len(jobs[0].rows)
        while self._pending and rows + len(self._pending[0].rows) <= self.max_batch_size:
            job = self._pending.popleft()
            jobs.append(job)
            rows += len(job.rows)
        self._pending_rows -= rows
        return jobs

    def _run_chunked(self, batch: np.ndarray) -> np.ndarray:
        outputs = []
        for start in range(0, len(batch), self.max_batch_size):
            chunk = batch[start : start + self.max_batch_size]
            BATCH_SIZE.observe(len(chunk))
            outputs.append(self._run(chunk))
        return outputs[0] if len(outputs) == 1 else np.concatenate(outputs)

    async def _loop(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            jobs = await self._gather()
            started = time.perf_counter()
            for job in jobs:
                STAGE_SECONDS.labels(stage="queue").observe(started - job.queued_at)
            batch = jobs[0].rows if len(jobs) == 1 else np.concatenate([j.rows for j in jobs])
            try:
                out = await loop.run_in_executor(self._executor, self._run_chunked, batch)
            except asyncio.CancelledError:  # stopped while this batch ran: its callers must not wait forever
                for job in jobs:
                    _refuse(job)
                raise
            except Exception as exc:  # hand the model's error to every caller of this batch
                log.error("batch of %d rows failed: %s", len(batch), exc)
                for job in jobs:
                    if not job.future.done():
                        job.future.set_exception(exc)
                continue
            STAGE_SECONDS.labels(stage="infer").observe(time.perf_counter() - started)
            offset = 0
            for job in jobs:
                n = len(job.rows)
                if not job.future.done():
                    job.future.set_result(out[offset : offset + n])
                offset += n


def _refuse(job: _Job) -> None:
    if not job.future.done():
        job.future.set_exception(ModelNotReady(SHUTTING_DOWN))
