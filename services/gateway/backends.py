"""The gateway's calls to the detector, embedder and index: one pooled keep-alive client, per-call budgets,
bounded retries of connection failures (every backend call is idempotent), `x-request-id` forwarded.

Failures become domain errors: connection refused / not ready -> BackendUnavailable (503), past the
budget -> BackendTimeout (504), a 4xx from a backend -> the same status and message for the caller.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any

import httpx
import numpy as np
import orjson

from imgcore.errors import ImgSearchError
from services.errors import BackendTimeout, BackendUnavailable
from services.metrics import BACKEND_ERRORS, BACKEND_SECONDS
from services.settings import GatewaySettings
from services.web import current_request_id
from services.web_json import dumps
from services.wire import rgb_headers, vectors_from_b64, vectors_to_b64

log = logging.getLogger("imgsearch.gateway")

_RETRYABLE = (httpx.ConnectError, httpx.RemoteProtocolError, httpx.ReadError, httpx.WriteError)


class BackendRejected(ImgSearchError):
    """A backend refused the request (4xx): the caller gets the same status and message."""

    def __init__(self, status: int, message: str, reason: str) -> None:
        super().__init__(message, reason=reason)
        self.status = status


def _error_text(resp: httpx.Response) -> str:
    try:
        body = orjson.loads(resp.content)
    except orjson.JSONDecodeError:
        return resp.text[:200]
    return str(body.get("error", body)) if isinstance(body, dict) else str(body)[:200]


class Backends:
    """Typed calls to the three services."""

    def __init__(self, settings: GatewaySettings, transport: httpx.AsyncBaseTransport | None = None) -> None:
        self.settings = settings
        self.urls = {
            "detector": settings.detector_url.rstrip("/"),
            "embedder": settings.embedder_url.rstrip("/"),
            "index": settings.index_url.rstrip("/"),
        }
        limits = httpx.Limits(max_connections=settings.max_connections * 3, max_keepalive_connections=64)
        self.client = httpx.AsyncClient(limits=limits, transport=transport, trust_env=False)

    async def close(self) -> None:
        """Close the pooled connections."""
        await self.client.aclose()

    async def call(
        self, backend: str, method: str, path: str, *, budget_s: float, retries: int | None = None, **kwargs: Any
    ) -> httpx.Response:
        """One request with a total budget, retried on connection failures; raises domain errors."""
        timeout = httpx.Timeout(budget_s, connect=min(self.settings.connect_timeout_s, budget_s))
        headers = {"x-request-id": current_request_id(), **kwargs.pop("headers", {})}
        attempts = 1 + (self.settings.retries if retries is None else retries)
        backoff = self.settings.retry_backoff_s
        deadline = time.perf_counter() + budget_s
        url = self.urls[backend] + path
        t0 = time.perf_counter()
        for attempt in range(attempts):
            try:
                resp = await asyncio.wait_for(
                    self.client.request(method, url, headers=headers, timeout=timeout, **kwargs),
                    max(deadline - time.perf_counter(), 0.001),
                )
            except _RETRYABLE as exc:
                if attempt + 1 < attempts and time.perf_counter() + backoff < deadline:
                    await asyncio.sleep(backoff)
                    backoff *= 2
                    continue
                BACKEND_ERRORS.labels(backend=backend, kind="unavailable").inc()
                raise BackendUnavailable(f"{backend} is unavailable: {type(exc).__name__}") from exc
            except (httpx.TimeoutException, TimeoutError) as exc:
                BACKEND_ERRORS.labels(backend=backend, kind="timeout").inc()
                raise BackendTimeout(f"{backend} did not answer within {budget_s:g}s") from exc
            except httpx.HTTPError as exc:
                BACKEND_ERRORS.labels(backend=backend, kind="unavailable").inc()
                raise BackendUnavailable(f"{backend} call failed: {type(exc).__name__}") from exc
            BACKEND_SECONDS.labels(backend=backend).observe(time.perf_counter() - t0)
            return self._check(backend, resp)
        raise AssertionError("unreachable")

    @staticmethod
    def _check(backend: str, resp: httpx.Response) -> httpx.Response:
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

    async def detect(self, pixels: bytes, image: np.ndarray) -> dict[str, Any]:
        """Detections for decoded pixels (raw RGB fast path)."""
        resp = await self.call(
            "detector",
            "POST",
            "/v1/detect",
            budget_s=self.settings.detect_timeout_s,
            content=pixels,
            headers=rgb_headers(image),
        )
        result: dict[str, Any] = orjson.loads(resp.content)
        return result

    async def embed(
        self, pixels: bytes, image: np.ndarray, boxes: list[list[float]] | None, *, foreground: bool
    ) -> tuple[np.ndarray, dict[str, Any]]:
        """Vectors (float32 [n, dim]) for boxes of the image, and the embedder's answer (model, boxes)."""
        params = {"format": "b64", "foreground": "true" if foreground else "false"}
        if boxes is not None:
            params["boxes"] = dumps(boxes).decode()
        resp = await self.call(
            "embedder",
            "POST",
            "/v1/embed",
            budget_s=self.settings.embed_timeout_s,
            content=pixels,
            headers=rgb_headers(image),
            params=params,
        )
        body: dict[str, Any] = orjson.loads(resp.content)
        return vectors_from_b64(body.pop("vectors_b64", ""), int(body["dim"])), body

    async def query(self, vectors: np.ndarray, k: int, categories: list[str | None]) -> dict[str, Any]:
        """Top-k hits per vector, each within its category (None: all)."""
        payload = {
            "vectors_b64": vectors_to_b64(vectors),
            "dim": int(vectors.shape[1]),
            "k": k,
            "categories": categories,
        }
        resp = await self.call(
            "index",
            "POST",
            "/v1/query",
            budget_s=self.settings.query_timeout_s,
            content=dumps(payload),
            headers={"content-type": "application/json"},
        )
        result: dict[str, Any] = orjson.loads(resp.content)
        return result

    async def get_json(self, backend: str, path: str, params: dict[str, Any] | None = None) -> dict[str, Any]:
        """GET a JSON document from a backend (index look-ups)."""
        resp = await self.call(backend, "GET", path, budget_s=self.settings.query_timeout_s, params=params)
        result: dict[str, Any] = orjson.loads(resp.content)
        return result

    async def readiness(self, backend: str) -> tuple[bool, dict[str, Any]]:
        """A backend's /readyz (never raises)."""
        try:
            resp = await self.client.get(
                self.urls[backend] + "/readyz", timeout=httpx.Timeout(1.0, connect=self.settings.connect_timeout_s)
            )
            body = orjson.loads(resp.content)
        except (httpx.HTTPError, orjson.JSONDecodeError) as exc:
            return False, {"error": f"unreachable: {type(exc).__name__}"}
        return resp.status_code == 200 and bool(body.get("ready")), body
