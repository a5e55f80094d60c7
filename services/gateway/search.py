"""The search pipeline of the gateway: decode once -> detect -> embed crops -> query the index.

Pixels travel to the detector and embedder raw (decoded once here); crops travel as boxes. When nothing is
detected, or the detector fails or is too slow, the whole image (cropped to its foreground) is searched
instead and the response says `"fallback": "whole_image"`.
"""

from __future__ import annotations

import logging
import time
from dataclasses import replace
from typing import Any

from imgcore.errors import ImgSearchError
from services.common import tracing
from services.common.boxes import clip_box
from services.common.metrics import FALLBACKS, STAGE_SECONDS
from services.common.settings import GatewaySettings
from services.common.uploads import Upload, decode_budget, decode_upload_as
from services.common.web_json import dumps
from services.gateway.backends import Backends
from services.gateway.cache import LRUCache
from services.gateway.garments import categories_for, ignored_json, split_items
from services.gateway.kept import embed_boxes, new_image_id
from services.gateway.partitions import served_index
from services.gateway.regions import Region, public_result
from services.gateway.search_parts import (
    ENTRY_OVERHEAD_BYTES,
    STAGES,
    CacheKey,
    Embedded,
    Photo,
    SearchParams,
    photo_of,
    response_body,
    stage_timings,
)
from services.gateway.served_models import ServedModels, detector_identity, model_identity, models_state
from services.gateway.shadow import Shadow, ShadowJob
from services.gateway.speculation import Speculation

__all__ = ["CacheKey", "SearchParams", "SearchService", "public_result"]

log = logging.getLogger("imgsearch.gateway")


def _shadow_job(photo: Photo, embedded: Embedded, k: int) -> ShadowJob:
    """What the candidate pair must repeat: the same forwarded pixels, boxes (or whole-image foreground as
    production embedded it) and categories."""
    regions = embedded.regions
    boxes = None if regions[0].fallback else [photo.to_forward(region.box) for region in regions]
    ids = [[str(hit["item_id"]) for hit in region.results] for region in regions]
    categories = [region.searched_category for region in regions]
    return ShadowJob(photo.pixels, photo.forward, boxes, k, categories, ids)


class SearchService:
    """Runs searches; keeps the result cache and the view of the served index."""

    def __init__(self, settings: GatewaySettings, backends: Backends) -> None:
        self.settings = settings
        self.backends = backends
        self.limits = settings.uploads.decode_limits()
        self.decode_budget = decode_budget(settings.decode)
        self.cache: LRUCache[CacheKey, bytes] = LRUCache("search", settings.cache.size, settings.cache.max_bytes)
        # Entries of an old index version can never be hit again: a swap empties the cache.
        self.index = served_index(backends, on_swap=self.cache.clear)
        # Models have no order (a sha256 is not newer than another): their identity is part of the key instead
        # of a reason to empty the cache, so replicas of two models during a roll-out do not empty it each poll.
        self.models = ServedModels(backends)
        self._inflight = 0
        self.shadow = Shadow(settings)

    async def search(self, upload: Upload, params: SearchParams) -> bytes:
        """The `/v1/search` response body (JSON) for one uploaded photo."""
        t_start = time.perf_counter()
        key = CacheKey.of(upload, params, self.index.state, self.models.state(detected=params.box is None))
        cached = self.cache.get(key)
        if cached is not None:
            timings = dict.fromkeys(STAGES, 0.0) | {"total": (time.perf_counter() - t_start) * 1e3}
            return response_body(cached, cached=True, timings=timings)
        # Decoded straight to at most forward_max_side pixels (JPEG DCT scaling, whole-factor reduction).
        with tracing.stage("decode"):
            photo = await decode_upload_as(
                upload, self.limits, self.decode_budget, self.settings.search.forward_max_side, photo_of
            )
        t_decoded = time.perf_counter()
        embedded, ahead = await self._embed_regions(photo, params)
        t_embedded = time.perf_counter()
        await self.index.check_binding(embedded.embedder_model)
        with tracing.stage("query"):
            version, t_searched = await self._query(embedded, params, ahead)
        t_searched = max(t_searched, t_embedded)  # a query answered beside detection took no time of its own
        timings = stage_timings([t_start, t_decoded, t_decoded + embedded.detect_s, t_embedded, t_searched])
        if embedded.embed_s is not None:  # the whole-image vector was made during detection: its own time
            timings["embed"] = embedded.embed_s * 1e3
        for stage, ms in timings.items():
            STAGE_SECONDS.labels(stage=stage).observe(ms / 1e3)
        body: dict[str, Any] = {
            "items": [region.to_json() for region in embedded.regions],
            "index_version": version,
            "models": {"detector": embedded.detector_model, "embedder": embedded.embedder_model},
            "image": {"width": photo.width, "height": photo.height},
        }
        if embedded.ignored:
            body["ignored"] = [ignored_json(region) for region in embedded.ignored]
        if any(region.fallback for region in embedded.regions):  # said at the top level too, for clients
            body["fallback"] = "whole_image"
        if embedded.missing_partitions:  # some partitions failed or were too slow: never cached
            body.update(partial=True, missing_partitions=embedded.missing_partitions)
        answer = dumps(body)  # cached as JSON: its length is the memory it holds, so the byte bound is exact
        if self._cacheable(key, embedded):
            self.cache.put(replace(key, index_version=self.index.state), answer, len(answer) + ENTRY_OVERHEAD_BYTES)
        if self.shadow.sampled():  # after the answer is complete; queued, never awaited
            self.shadow.offer(_shadow_job(photo, embedded, params.k))
        return response_body(answer, cached=False, timings=timings)

    def _cacheable(self, key: CacheKey, embedded: Embedded) -> bool:
        """Never cache an answer shaped by a backend failure (a partial one included), nor one from a replica
        behind on changes, nor one computed by other models than those it would be found under (a replica of
        the old model answering during a roll-out, or models not known yet)."""
        detected = key.params.box is None
        answered_by = models_state(
            detector_identity(embedded.detector_model, embedded.pose_model),
            model_identity(embedded.embedder_model),
            detected=detected,
        )
        return (
            embedded.source in ("detector", "user_box")
            and not embedded.missing_partitions
            and self.index.answered == self.index.state
            and answered_by is not None
            and answered_by == key.models
        )

    async def _query(
        self, embedded: Embedded, params: SearchParams, ahead: Speculation | None
    ) -> tuple[str | None, float]:
        """Fill in each region's similar items (within its category when the index knows it); the index
        version that answered, and when it did (for the whole image: the query started beside detection)."""
        regions = embedded.regions
        early = await ahead.found() if ahead is not None and regions[0].fallback else None
        if early is not None:
            found, categories, t_searched = early.answer, early.categories, early.at
        else:
            categories = categories_for(regions, await self.index.known_categories(), params.category)
            found = await self.index.query(embedded.vectors, params.k, categories, params.index_options())
            t_searched = time.perf_counter()
        embedded.missing_partitions = found.get("missing_partitions")
        version: str | None = found.get("version")
        self.index.set_version(version, found.get("changes"))
        for region, hits, category in zip(regions, found["results"], categories, strict=True):
            region.searched_category = category
            region.results = [public_result(h) for h in hits]
        return version, t_searched

    async def _embed_regions(self, photo: Photo, params: SearchParams) -> tuple[Embedded, Speculation | None]:
        """Detect (or take the user's box), then embed each region — or the whole image when there is none;
        the whole-image search started beside detection, when it was (services/gateway/speculation.py).

        While no other search is running, the whole image is embedded and searched alongside detection (the
        cores are idle), so a photo with nothing detected costs no extra round trip.
        """
        t0 = time.perf_counter()
        kept = new_image_id()  # the embedder keeps the photo, the boxes follow alone
        ahead = self._speculate(photo, params, kept)
        speculative = ahead.embedded if ahead is not None else None
        self._inflight += 1
        try:
            with tracing.stage("detect"):
                regions, detector_model, pose_model, source = await self._regions(photo, params)
                known = await self.index.known_categories()
                regions, ignored = split_items(regions, self.index.kinds, known, params.category)
                regions = regions[: self.settings.search.max_items]
            detect_s = time.perf_counter() - t0
            if regions and ahead is not None:
                ahead.drop_query()
            with tracing.stage("embed"):
                if not regions and speculative is not None:
                    vectors, answer = await speculative
                elif regions and speculative is not None:
                    crops = [photo.to_forward(region.box) for region in regions]
                    vectors, answer = await embed_boxes(
                        self.backends, photo.pixels, photo.forward, crops, speculative, kept
                    )
                else:
                    boxes = [photo.to_forward(region.box) for region in regions] if regions else None
                    vectors, answer = await self.backends.embed(
                        photo.pixels, photo.forward, boxes, foreground=not regions
                    )
        except BaseException:
            if ahead is not None:
                ahead.drop_query()
            raise
        finally:
            self._inflight -= 1
        if not regions:
            FALLBACKS.labels(why="no_detections" if source == "detector" else source).inc()
            used = answer.get("boxes") or [[0, 0, photo.forward.shape[1], photo.forward.shape[0]]]
            regions = [Region(box=photo.to_original(used[0]), fallback="whole_image")]
        embedded = Embedded(
            regions,
            vectors,
            detect_s,
            detector_model,
            answer.get("model"),
            source,
            ignored=ignored,
            pose_model=pose_model,
            embed_s=ahead.embed_s if ahead is not None and regions[0].fallback else None,
        )
        return embedded, ahead

    def _speculate(self, photo: Photo, params: SearchParams, kept: str) -> Speculation | None:
        """The whole-image embed and search started beside detection (none with a box or when busy)."""
        if params.box is not None or self._inflight >= self.settings.search.speculate_max_inflight:
            return None
        return Speculation(self.backends, self.index, photo, params, kept)

    async def _regions(
        self, photo: Photo, params: SearchParams
    ) -> tuple[list[Region], dict[str, Any] | None, dict[str, Any] | None, str]:
        """The regions to search (boxes in original pixels), the detector's model and pose model, and where they
        came from."""
        if params.box is not None:
            clipped = clip_box(params.box, photo.width, photo.height)
            return [Region(box=list(clipped), source="user_box")], None, None, "user_box"
        try:
            detected = await self.backends.detect(photo.pixels, photo.forward)
        except ImgSearchError as exc:  # unavailable, timed out, refused: degrade to the whole image
            log.warning("detector failed, searching the whole image: %s", exc.message)
            return [], None, None, "detector_timeout" if exc.status == 504 else "detector_error"
        regions = []
        for n, det in enumerate(detected.get("detections", [])):
            box = photo.to_original(det["box"])
            if box[2] - box[0] < self.settings.search.min_item_px or box[3] - box[1] < self.settings.search.min_item_px:
                continue
            region = Region(box=box, label=det["label"], category=det.get("category"), score=det.get("score"))
            region.source = det.get("source")
            region.detection, region.part_of = n, det.get("part_of")
            regions.append(region)
        regions.sort(key=lambda region: -float(region.score or 0.0))
        return regions, detected.get("model"), detected.get("pose_model"), "detector"  # max_items once split
