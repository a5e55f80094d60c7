"""The query log: a sample of searches (image, parameters, answer) written to a store in JSON Lines batches.

Never on the request path: a search only appends a record to a queue bounded in bytes (dropped when full);
one background task writes whole batches with the store calls in a thread. An object's key carries its UTC
time (`queries-20261129T082700Z-<random>.jsonl`), so retention needs no metadata read. JPEG, PNG and WebP
images at most `query_log_image_max_side` pixels wide and high are kept as uploaded, less their metadata
(services/gateway/metadata.py: no EXIF GPS in the log; a replay sends the same pixels); others as a JPEG of
at most that size (0: the size searches are forwarded at, `forward_max_side`), decoded within the gateway's
decode budget like any upload. `imgsearch replay` (services/cli/replay.py) reads these objects back.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import io
import json
import logging
import random
import re
import secrets
import time
from collections import deque
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from PIL import Image

from imgcore.decode_plan import DecodePlan
from imgcore.errors import ImgSearchError
from imgcore.image import DecodeLimits, decode, plan_decode
from imgcore.stamps import parse_stamp, utc_stamp
from imgcore.storage import ObjectStore, open_store
from services.common.decode_budget import DecodeBudget
from services.common.metrics import QUERY_LOG_RECORDS
from services.common.settings import GatewaySettings
from services.gateway.metadata import without_metadata
from services.gateway.search import SearchParams
from services.gateway.supervise import supervised

log = logging.getLogger("imgsearch.gateway.query_log")

_KEPT_FORMATS = {"JPEG", "PNG", "WEBP"}
_KEY_PREFIX = "queries-"
_KEY_RE = re.compile(r"queries-(\d{8}T\d{6}Z)-[0-9a-f]+\.jsonl")  # the whole key (fullmatch)
RETENTION_CHECK_S = 3600.0


@dataclass(frozen=True)
class QueryRecord:
    """One sampled search as the request left it: what was asked and the response body."""

    ts: float  # Unix time
    image: bytes  # the encoded upload
    params: SearchParams
    answer: bytes

    @property
    def size(self) -> int:
        return len(self.image) + len(self.answer)


def batch_key(now: datetime) -> str:
    """A new object's key: its UTC time, then randomness so that two gateway replicas never collide."""
    return f"{_KEY_PREFIX}{utc_stamp(now)}-{secrets.token_hex(6)}.jsonl"


def key_time(key: str) -> datetime | None:
    """When a query log object was written (from its key); None for any other key, one in a sub-folder too."""
    match = _KEY_RE.fullmatch(key)
    return parse_stamp(match.group(1)) if match else None


def kept_image(data: bytes, plan: DecodePlan, max_side: int) -> tuple[bytes, str] | None:
    """The upload itself less its metadata, when its format and size (at most `max_side`, 0: any) allow."""
    if plan.format not in _KEPT_FORMATS or (max_side and max(plan.width, plan.height) > max_side):
        return None
    stripped = without_metadata(data, plan.format)
    return None if stripped is None else (stripped, f"image/{plan.format.lower()}")


def reencoded(data: bytes, limits: DecodeLimits, max_side: int) -> tuple[bytes, str]:
    """The upload's upright pixels (at most `max_side`) as a JPEG, with no metadata."""
    out = io.BytesIO()
    Image.fromarray(decode(data, limits, max_side).pixels).save(out, "JPEG", quality=90)
    return out.getvalue(), "image/jpeg"


def record_json(record: QueryRecord, image: bytes, media_type: str) -> dict[str, Any]:
    """A record as one line of a batch object: item ids per searched item, in the answer's order."""
    answer = json.loads(record.answer)
    models = answer.get("models") or {}
    return {
        "ts": datetime.fromtimestamp(record.ts, UTC).isoformat(),
        "params": {"k": record.params.k, "category": record.params.category, "box": record.params.box},
        "image": base64.b64encode(image).decode("ascii"),
        "image_type": media_type,
        "index_version": answer.get("index_version"),
        "models": {name: (model or {}).get("sha256") for name, model in models.items()},
        "items": [{"box": it["box"], "results": [hit["item_id"] for hit in it["results"]]} for it in answer["items"]],
    }


class QueryLog:
    """Samples searches into a bounded queue; `run()` writes them to the store."""

    def __init__(self, settings: GatewaySettings, budget: DecodeBudget) -> None:
        wanted = settings.query_log
        self.rate = wanted.sample_rate if wanted.uri else 0.0
        self.uri = wanted.uri
        self.batch_size = wanted.batch
        self.flush_s = wanted.flush_s
        self.retention = timedelta(days=wanted.retention_days)
        self.max_bytes = wanted.queue_mib * 1024 * 1024
        self.limits = settings.uploads.decode_limits()
        self.image_max_side = wanted.image_max_side
        self.reencode_side = wanted.image_max_side or settings.search.forward_max_side
        self.budget = budget  # the searches' own: the log's decodes never add to their peak
        self._queue: deque[QueryRecord] = deque()
        self._queued_bytes = 0
        self._ready = asyncio.Event()
        self._store: ObjectStore | None = None
        self._last_retention = float("-inf")

    @property
    def enabled(self) -> bool:
        return self.rate > 0

    def offer(self, image: bytes, params: SearchParams, answer: bytes) -> None:
        """Maybe queue this search (never blocks, never raises): sampled at `rate`, dropped when full."""
        if not self.enabled or random.random() >= self.rate:
            return
        record = QueryRecord(time.time(), image, params, answer)
        if self._queued_bytes + record.size > self.max_bytes:
            QUERY_LOG_RECORDS.labels(result="dropped").inc()
            return
        self._queue.append(record)
        self._queued_bytes += record.size
        if len(self._queue) >= self.batch_size:
            self._ready.set()

    async def start(self) -> asyncio.Task[None]:
        """Open the store (a bad URI fails the start, loudly) and start the writer task."""
        self._store = await asyncio.to_thread(open_store, self.uri)
        return supervised("query_log", self.run)

    async def stop(self, writer: asyncio.Task[None]) -> None:
        """Stop the writer, then write what was sampled before the shutdown."""
        writer.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await writer
        await self.flush()

    async def run(self) -> None:
        """Write batches until cancelled: a full batch at once, a partial one after `flush_s`."""
        await self._retention()
        while True:
            if not self._queue:
                self._ready.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._ready.wait(), self.flush_s)
            await self.flush()
            await self._retention()

    async def flush(self) -> None:
        """Write every queued record, a batch per object (also called once more at shutdown)."""
        while self._queue and self._store is not None:
            batch = [self._queue.popleft() for _ in range(min(self.batch_size, len(self._queue)))]
            self._queued_bytes -= sum(record.size for record in batch)
            lines = [line for record in batch if (line := await self._line(record)) is not None]
            if not lines:
                continue
            try:
                await asyncio.to_thread(self._store.put_bytes, batch_key(datetime.now(UTC)), b"".join(lines))
            except Exception as exc:  # a store outage must not end the writer: count it and go on
                log.warning("query log: %d records not written to %s: %s", len(lines), self.uri, exc)
                QUERY_LOG_RECORDS.labels(result="error").inc(len(lines))
            else:
                QUERY_LOG_RECORDS.labels(result="written").inc(len(lines))

    async def _line(self, record: QueryRecord) -> bytes | None:
        """One record's line; None (counted, logged) when its image cannot be kept now."""
        try:
            plan = await asyncio.to_thread(plan_decode, record.image, self.limits, self.reencode_side)
            kept = await asyncio.to_thread(kept_image, record.image, plan, self.image_max_side)
            if kept is None:
                kept = await self.budget.run(plan.peak_bytes, reencoded, record.image, self.limits, self.reencode_side)
            image, media_type = kept
        except ImgSearchError as exc:  # the budget stayed full, or the image cannot be decoded after all
            log.warning("query log: a record is not written: %s", exc.message)
            QUERY_LOG_RECORDS.labels(result="error").inc()
            return None
        line = json.dumps(record_json(record, image, media_type), separators=(",", ":"))
        return line.encode() + b"\n"

    async def _retention(self) -> None:
        """Delete objects older than the retention, at most once per RETENTION_CHECK_S."""
        now = time.monotonic()
        if self._store is None or now - self._last_retention < RETENTION_CHECK_S:
            return
        self._last_retention = now
        try:
            deleted = await asyncio.to_thread(delete_expired, self._store, datetime.now(UTC) - self.retention)
        except Exception as exc:
            log.warning("query log: retention check of %s failed: %s", self.uri, exc)
            return
        if deleted:
            log.info("query log: deleted %d objects older than %s", deleted, self.retention)


def delete_expired(store: ObjectStore, cutoff: datetime) -> int:
    """Delete the query log objects written before `cutoff` (keys of exactly its own form); how many.

    The store deletes by prefix: an expired key that another key extends (`….jsonl.keep`, someone else's) is
    left, with a warning, rather than taking that other object with it.
    """
    keys = sorted(store.list(_KEY_PREFIX))
    deleted = 0
    for i, key in enumerate(keys):
        when = key_time(key)
        if when is None or when >= cutoff:
            continue
        if i + 1 < len(keys) and keys[i + 1].startswith(key):  # keys extending it sort right after it
            log.warning("query log: %s expired but is not deleted: %s extends its name", key, keys[i + 1])
            continue
        store.delete_prefix(key)
        deleted += 1
    return deleted
