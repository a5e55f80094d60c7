"""The query log: a sample of searches (image, parameters, answer) written to a store in JSON Lines batches.

Never on the request path: a search only appends a record to a queue bounded in bytes (dropped when full);
one background task writes whole batches with the store calls in a thread. An object's key carries its UTC
time (`queries-20261129T082700Z-<random>.jsonl`), so retention needs no metadata read. Images at most
`query_log_image_max_side` pixels wide and high are kept as uploaded (a replay sends the very same bytes);
larger ones as a JPEG of that size. `imgsearch replay` (services/cli/replay.py) reads these objects back.
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

from imgcore.image import DecodeLimits, decode, plan_decode
from imgcore.stamps import parse_stamp, utc_stamp
from imgcore.storage import ObjectStore, open_store
from services.common.metrics import QUERY_LOG_RECORDS
from services.common.settings import GatewaySettings
from services.gateway.search import SearchParams

log = logging.getLogger("imgsearch.gateway.query_log")

_KEPT_FORMATS = {"JPEG", "PNG", "WEBP"}
_KEY_PREFIX = "queries-"
_KEY_RE = re.compile(r"^queries-(\d{8}T\d{6}Z)-[0-9a-f]+\.jsonl$")
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
    """When a query log object was written (from its key); None for any other key."""
    match = _KEY_RE.match(key.rsplit("/", 1)[-1])
    return parse_stamp(match.group(1)) if match else None


def logged_image(data: bytes, limits: DecodeLimits, max_side: int) -> tuple[bytes, str]:
    """The image to keep for an upload (and its media type): itself when at most `max_side` (0: any size),
    else a JPEG shrunk to `max_side`."""
    plan = plan_decode(data, limits)
    if plan.format in _KEPT_FORMATS and (max_side == 0 or max(plan.width, plan.height) <= max_side):
        return data, f"image/{plan.format.lower()}"
    out = io.BytesIO()
    Image.fromarray(decode(data, limits, max_side).pixels).save(out, "JPEG", quality=90)
    return out.getvalue(), "image/jpeg"


def record_json(record: QueryRecord, limits: DecodeLimits, max_side: int) -> dict[str, Any]:
    """A record as one line of a batch object: item ids per searched item, in the answer's order."""
    answer = json.loads(record.answer)
    image, media_type = logged_image(record.image, limits, max_side)
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

    def __init__(self, settings: GatewaySettings) -> None:
        wanted = settings.query_log
        self.rate = wanted.sample_rate if wanted.uri else 0.0
        self.uri = wanted.uri
        self.batch_size = wanted.batch
        self.flush_s = wanted.flush_s
        self.retention = timedelta(days=wanted.retention_days)
        self.max_bytes = wanted.queue_mib * 1024 * 1024
        self.limits = settings.uploads.decode_limits()
        self.image_max_side = wanted.image_max_side
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
        return asyncio.create_task(self.run())

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
            try:
                await asyncio.to_thread(self._write, self._store, batch)
            except Exception as exc:  # a store outage must not end the writer: count it and go on
                log.warning("query log: %d records not written to %s: %s", len(batch), self.uri, exc)
                QUERY_LOG_RECORDS.labels(result="error").inc(len(batch))
            else:
                QUERY_LOG_RECORDS.labels(result="written").inc(len(batch))

    def _write(self, store: ObjectStore, batch: list[QueryRecord]) -> None:
        records = (record_json(record, self.limits, self.image_max_side) for record in batch)
        lines = [json.dumps(record, separators=(",", ":")) for record in records]
        store.put_bytes(batch_key(datetime.now(UTC)), ("\n".join(lines) + "\n").encode())

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
    """Delete the query log objects written before `cutoff`; how many."""
    expired = [key for key in store.list(_KEY_PREFIX) if (when := key_time(key)) is not None and when < cutoff]
    for key in expired:
        store.delete_prefix(key)  # a whole key, which no other key extends (they end in .jsonl)
    return len(expired)
