"""Shadow evaluation: sampled searches replayed on a candidate embedder+index after production has answered.

A sampled search leaves its forwarded pixels, the boxes production embedded and production's item ids in a
bounded queue (never awaited: full means dropped, counted); one background task runs each through the
candidate pair under its own budget and exports how far the two result lists agree. Production answers
are the same bytes with shadowing on or off, and a dead or slow candidate only shows in the shadow metrics.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import logging
import random
import time
from dataclasses import dataclass

import numpy as np

from imgcore.errors import ImgSearchError
from imgcore.retrieval import overlap_at
from services.common import tracing
from services.common.metrics import SHADOW_OVERLAP, SHADOW_RBO, SHADOW_REQUESTS, SHADOW_SECONDS
from services.common.settings import GatewaySettings
from services.common.wire import PixelBody
from services.gateway.backends import Backends
from services.gateway.partitions import served_index
from services.gateway.served_index import ServedIndex
from services.gateway.supervise import supervised

log = logging.getLogger("imgsearch.gateway.shadow")

OVERLAP_KS = (1, 5, 10)  # fixed depths: a bounded label set, comparable between searches of any k
RBO_P = 0.9  # the weight of rank d is p**(d-1): the top ten carry about two thirds of it


@dataclass(frozen=True)
class ShadowJob:
    """One production search as the candidate must repeat it."""

    pixels: PixelBody  # the forwarded image's raw RGB body
    image: np.ndarray  # the forwarded image (its shape makes the raw body's headers)
    boxes: list[list[float]] | None  # in forwarded pixels; None: the whole image's foreground, as production
    k: int
    categories: list[str | list[str] | None]
    production: list[list[str]]  # item ids per region, best first


def rank_biased_overlap(a: list[str], b: list[str], p: float = RBO_P) -> float | None:
    """Rank-biased overlap (Webber et al. 2010) to the depth of the longer list, normalised so that two
    equal lists score 1.0; None when both are empty."""
    depth = max(len(a), len(b))
    if depth == 0:
        return None
    seen_a: set[str] = set()
    seen_b: set[str] = set()
    total = 0.0
    for d in range(depth):
        if d < len(a):
            seen_a.add(a[d])
        if d < len(b):
            seen_b.add(b[d])
        total += p**d * len(seen_a & seen_b) / (d + 1)
    return total * (1 - p) / (1 - p**depth)


def observe(production: list[list[str]], candidate: list[list[str]]) -> None:
    """Export the agreement of each region's two result lists: overlap@k as `imgcore.retrieval.overlap_at`
    defines it (a region with no result on either side is not observed) and rank-biased overlap."""
    for prod, cand in zip(production, candidate, strict=True):
        for k in OVERLAP_KS:
            value = overlap_at(prod, cand, k)
            if value is not None:
                SHADOW_OVERLAP.labels(k=str(k)).observe(value)
        rbo = rank_biased_overlap(prod, cand)
        if rbo is not None:
            SHADOW_RBO.observe(rbo)


class Shadow:
    """The queue of sampled searches and the task that replays them on the candidate pair."""

    def __init__(self, settings: GatewaySettings) -> None:
        shadow, live = settings.shadow, settings.backends
        self.rate = shadow.sample_rate
        self.timeout_s = shadow.timeout_s
        # Each job keeps the context of the search it repeats: its request id (and trace) reach the candidate.
        self.queue: asyncio.Queue[tuple[contextvars.Context, ShadowJob]] = asyncio.Queue(shadow.queue_size)
        candidate = live.model_copy(
            update={
                "embedder_url": shadow.embedder_url or live.embedder_url,
                "index_url": shadow.index_url or live.index_url,
                "retries": 0,  # a failing candidate gets no second try: its errors are the evidence
                "max_connections": 2,
            }
        )
        self.backends = Backends(candidate, label_prefix="shadow_")
        # The live path's index client: a comma list of partitions is scattered to all and merged by score,
        # so the candidate is judged on its whole catalog, not its first partition. Nothing is cached here,
        # so a version swap needs no action.
        self.index: ServedIndex = served_index(self.backends, on_swap=lambda: None)
        self._worker: asyncio.Task[None] | None = None

    @property
    def enabled(self) -> bool:
        return self.rate > 0

    def sampled(self) -> bool:
        """Whether this search is replayed on the candidate (cheap: called on the request path)."""
        return self.enabled and random.random() < self.rate

    def offer(self, job: ShadowJob) -> None:
        """Queue a sampled search; when the candidate is behind, drop it (production never waits)."""
        try:
            self.queue.put_nowait((contextvars.copy_context(), job))
        except asyncio.QueueFull:
            SHADOW_REQUESTS.labels(result="dropped").inc()

    def start(self) -> None:
        """Start the replaying task (in the app's lifespan, so it runs on the server's event loop)."""
        if self.enabled and self._worker is None:
            self._worker = supervised("shadow", self._drain)

    async def stop(self) -> None:
        """Stop replaying (queued jobs are abandoned) and close the candidate's connections."""
        if self._worker is not None:
            self._worker.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._worker
            self._worker = None
        await self.backends.close()

    async def _drain(self) -> None:
        while True:
            context, job = await self.queue.get()
            t0 = time.perf_counter()
            try:
                replay = asyncio.create_task(self._replay(job), context=context)
                candidate = await asyncio.wait_for(replay, self.timeout_s)
                observe(job.production, candidate)
            except TimeoutError:
                SHADOW_REQUESTS.labels(result="timeout").inc()
                continue
            except ImgSearchError as exc:
                result = "timeout" if exc.status == 504 else "error"
                SHADOW_REQUESTS.labels(result=result).inc()
                log.debug("shadow search failed: %s", exc.message)
                continue
            except Exception:  # a bug here must not end the task: later searches are still evaluated
                SHADOW_REQUESTS.labels(result="error").inc()
                log.exception("shadow search failed")
                continue
            SHADOW_SECONDS.observe(time.perf_counter() - t0)
            SHADOW_REQUESTS.labels(result="ok").inc()

    async def _replay(self, job: ShadowJob) -> list[list[str]]:
        """The candidate's item ids per region for the job's regions."""
        foreground = job.boxes is None
        with tracing.stage("shadow"):  # runs in the search's context: the span joins the search's trace
            vectors, _ = await self.backends.embed(job.pixels, job.image, job.boxes, foreground=foreground)
            found = await self.index.query(vectors, job.k, job.categories)
        return [[str(hit["item_id"]) for hit in hits] for hits in found["results"]]
