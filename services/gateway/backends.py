"""The gateway's calls to the detector, embedder and index: pooled keep-alive connections (`transport`),
per-call budgets, bounded retries of connection failures (every backend call is idempotent), `x-request-id`
forwarded.

Failures become domain errors: connection refused / not ready -> BackendUnavailable (503), past the
budget -> BackendTimeout (504), a 4xx from a backend -> the same status and message for the caller; an
answer over `max_answer_mib` or of the wrong shape (`answers`) -> BackendUnavailable.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Sequence
from typing import Any

import numpy as np
import orjson

from imgcore.errors import ImgSearchError
from imgcore.index_wire import CategorySpec
from services.common.errors import BackendTimeout, BackendUnavailable
from services.common.metrics import BACKEND_ERRORS, BACKEND_SECONDS
from services.common.settings_gateway import BackendGroup
from services.common.web import current_request_id
from services.common.web_json import dumps
from services.common.wire import PixelBody, rgb_headers, vectors_from_b64, vectors_to_b64
from services.gateway.answers import json_object, query_answer, readiness_problem
from services.gateway.transport import AnswerTooLarge, ConnectionFailed, ConnectTimeout, HttpPool, Reply

log = logging.getLogger("imgsearch.gateway")


def index_urls(text: str) -> dict[str, str]:
    """Backend names and URLs of `--index-url`: one URL is "index" (today's layout); several (one per partition,
    issue 16) are also "index-0".."index-N-1"."""
    urls = [u.strip().rstrip("/") for u in text.split(",") if u.strip()]
    if len(urls) <= 1:
        return {"index": urls[0] if urls else text.rstrip("/")}
    return {"index": urls[0], **{f"index-{i}": url for i, url in enumerate(urls)}}


class BackendRejected(ImgSearchError):
    """A backend refused the request (4xx): the caller gets the same status and message."""

    def __init__(self, status: int, message: str, reason: str) -> None:
        super().__init__(message, reason=reason)
        self.status = status


def _error_text(resp: Reply) -> str:
    try:
        body = orjson.loads(resp.content)
    except orjson.JSONDecodeError:
        return resp.content[:200].decode("utf-8", "replace")
    return str(body.get("error", body)) if isinstance(body, dict) else str(body)[:200]


class Backends:
    """Typed calls to the three services."""

    def __init__(self, settings: BackendGroup, label_prefix: str = "") -> None:
        self.settings = settings
        # A candidate pair (shadow evaluation) has its own metric labels: its failures are not production's.
        self.label_prefix = label_prefix
        self.urls = {
            "detector": settings.detector_url.rstrip("/"),
            "embedder": settings.embedder_url.rstrip("/"),
            **index_urls(settings.index_url),  # one per partition when several (issue 16)
        }
        self.client = HttpPool(settings.connect_timeout_s, settings.max_answer_mib * 1024 * 1024)
        # At most max_connections calls in flight per backend; more wait (within their budget) for a turn.
        self._slots = {name: asyncio.Semaphore(settings.max_connections) for name in self.urls}

    async def close(self) -> None:
        """Close the pooled connections."""
        await self.client.close()

    async def _send(self, backend: str, method: str, url: str, **kwargs: Any) -> Reply:
        async with self._slots[backend]:
            return await self.client.request(method, url, **kwargs)

    async def call(
        self, backend: str, method: str, path: str, *, budget_s: float, retries: int | None = None, **kwargs: Any
    ) -> Reply:
        """One request with a total budget, retried on connection failures; raises domain errors."""
        headers = {"x-request-id": current_request_id(), **kwargs.pop("headers", {})}
        attempts = 1 + (self.settings.retries if retries is None else retries)
        backoff = self.settings.retry_backoff_s
        deadline = time.perf_counter() + budget_s
        url = self.urls[backend] + path
        label = self.label_prefix + backend
        t0 = time.perf_counter()
        for attempt in range(attempts):
            try:
                resp = await asyncio.wait_for(
                    self._send(backend, method, url, headers=headers, **kwargs),
                    max(deadline - time.perf_counter(), 0.001),
                )
            except ConnectionFailed as exc:
                if attempt + 1 < attempts and time.perf_counter() + backoff < deadline:
                    await asyncio.sleep(backoff)
                    backoff *= 2
                    continue
                BACKEND_ERRORS.labels(backend=label, kind="unavailable").inc()
                raise BackendUnavailable(f"{label} is unavailable: {type(exc).__name__}") from exc
            except (ConnectTimeout, TimeoutError) as exc:
                BACKEND_ERRORS.labels(backend=label, kind="timeout").inc()
                raise BackendTimeout(f"{label} did not answer within {budget_s:g}s") from exc
            except AnswerTooLarge as exc:
                BACKEND_ERRORS.labels(backend=label, kind="too_large").inc()
                log.warning("%s", exc)
                raise BackendUnavailable(f"{label} answered more than {self.settings.max_answer_mib} MiB") from exc
            BACKEND_SECONDS.labels(backend=label).observe(time.perf_counter() - t0)
            return self._check(label, resp)
        raise AssertionError("unreachable")

    @staticmethod
    def _check(backend: str, resp: Reply) -> Reply:
        code = resp.status_code
        if code < 400:
            return resp
        message = f"{backend}: {_error_text(resp)}"
        if code == 504:
            BACKEND_ERRORS.labels(backend=backend, kind="timeout").inc()
            raise BackendTimeout(message)
        if code >= 500:
            BACKEND_ERRORS.labels(backend=backend, kind="unavailable" if code == 503 else "error").inc()
            raise BackendUnavailable(message)
        raise BackendRejected(code, message, reason=f"{backend}_rejected")

    async def detect(self, pixels: PixelBody, image: np.ndarray) -> dict[str, Any]:
        """Detections for decoded pixels (raw RGB fast path)."""
        return await self._post_pixels("detector", "/v1/detect", self.settings.detect_timeout_s, pixels, image)

    async def embed(
        self,
        pixels: PixelBody,
        image: np.ndarray,
        boxes: list[list[float]] | None,
        *,
        foreground: bool,
        keep: str | None = None,
    ) -> tuple[np.ndarray, dict[str, Any]]:
        """Vectors (float32 [n, dim]) for boxes of the image, and the embedder's answer (model, boxes).
        `keep`: the embedder keeps the decoded image a few seconds under this id (`embed_kept`)."""
        params = {"format": "b64", "foreground": "true" if foreground else "false"}
        if boxes is not None:
            params["boxes"] = dumps(boxes).decode()
        if keep is not None:
            params["keep"] = keep
        body = await self._post_pixels("embedder", "/v1/embed", self.settings.embed_timeout_s, pixels, image, params)
        return vectors_from_b64(body.pop("vectors_b64", ""), int(body["dim"])), body

    async def embed_kept(self, image_id: str, boxes: list[list[float]]) -> tuple[np.ndarray, dict[str, Any]]:
        """As `embed`, for boxes of the image the embedder keeps under `image_id` (no pixels sent); a 404
        BackendRejected when it no longer has it."""
        params = {"format": "b64", "foreground": "false", "boxes": dumps(boxes).decode(), "image_id": image_id}
        resp = await self.call("embedder", "POST", "/v1/embed", budget_s=self.settings.embed_timeout_s, params=params)
        body = self._json("embedder", resp)
        return vectors_from_b64(body.pop("vectors_b64", ""), int(body["dim"])), body

    async def _post_pixels(
        self,
        backend: str,
        path: str,
        budget_s: float,
        pixels: PixelBody,
        image: np.ndarray,
        params: dict[str, str] | None = None,
    ) -> dict[str, Any]:
        resp = await self.call(
            backend, "POST", path, budget_s=budget_s, content=pixels, headers=rgb_headers(image), params=params
        )
        return self._json(backend, resp)

    async def query(
        self,
        vectors: np.ndarray,
        k: int,
        categories: Sequence[CategorySpec],
        *,
        backend: str = "index",
        version: str | None = None,
        options: dict[str, Any] | None = None,
    ) -> dict[str, Any]:
        """Top-k hits per vector, each within its category, any of a list of them, or (None) all; from one
        partition of a partitioned index when `backend` names it, answered by index `version` only when given;
        `options`: filter, group, with_prints (issue 28)."""
        payload = {
            "vectors_b64": vectors_to_b64(vectors),
            "dim": int(vectors.shape[1]),
            "k": k,
            "categories": categories,
            **(options or {}),
        }
        resp = await self.call(
            backend,
            "POST",
            "/v1/query",
            params={"version": version} if version else None,
            budget_s=self.settings.query_timeout_s,
            content=dumps(payload),
            headers={"content-type": "application/json"},
        )
        return query_answer(self.label_prefix + backend, self._json(backend, resp), len(vectors))

    async def get_json(self, backend: str, path: str, params: dict[str, Any] | None = None) -> dict[str, Any]:
        """GET a JSON document from a backend (index look-ups)."""
        resp = await self.call(backend, "GET", path, budget_s=self.settings.query_timeout_s, params=params)
        return self._json(backend, resp)

    async def get_bytes(self, backend: str, path: str) -> bytes:
        """GET a body from a backend (item thumbnails from the index)."""
        return (await self.call(backend, "GET", path, budget_s=self.settings.query_timeout_s)).content

    async def readiness(self, backend: str) -> tuple[bool, dict[str, Any]]:
        """A backend's /readyz (never raises)."""
        try:
            resp = await asyncio.wait_for(self.client.request("GET", self.urls[backend] + "/readyz"), 1.0)
            body = orjson.loads(resp.content)
        except (ConnectionFailed, TimeoutError, AnswerTooLarge, orjson.JSONDecodeError) as exc:
            return False, {"error": f"unreachable: {type(exc).__name__}"}
        if (problem := readiness_problem(body)) is not None:  # learnt from only when it has the expected shape
            return False, {"error": f"malformed readiness answer: {problem}"}
        return resp.status_code == 200 and bool(body.get("ready")), body

    def _json(self, backend: str, resp: Reply) -> dict[str, Any]:
        return json_object(self.label_prefix + backend, resp.content)
