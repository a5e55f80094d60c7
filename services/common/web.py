"""What every service app shares: request ids, access log and request metrics, health routes, error mapping."""

from __future__ import annotations

import contextvars
import inspect
import logging
import re
import time
import uuid
from collections.abc import Awaitable, Callable
from contextlib import AbstractAsyncContextManager
from typing import Any

from fastapi import APIRouter, FastAPI
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from starlette.datastructures import Headers, MutableHeaders
from starlette.responses import Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from services.common.api_docs import install_api_docs
from services.common.client_limits import ClientLimitsMiddleware
from services.common.errors import error_response, install_error_handlers, internal_error_response
from services.common.metrics import REQUEST_SECONDS, REQUESTS
from services.common.metrics_mp import scrape_registry
from services.common.tracing import instrument
from services.common.web_json import ORJSONResponse, json_response

REQUEST_ID: contextvars.ContextVar[str] = contextvars.ContextVar("request_id", default="-")
_RID_OK = re.compile(r"^[A-Za-z0-9._:-]{1,128}$")
_QUIET_ROUTES = frozenset({"/livez", "/readyz", "/metrics"})

access_log = logging.getLogger("imgsearch.access")

# (ready, details) for /readyz: a plain function, or a coroutine where the check itself waits (the gateway's)
Readiness = Callable[[], tuple[bool, dict[str, Any]] | Awaitable[tuple[bool, dict[str, Any]]]]


class RequestIdFilter(logging.Filter):
    """Adds `rid` (the current request id) to every log record."""

    def filter(self, record: logging.LogRecord) -> bool:
        record.rid = REQUEST_ID.get()
        return True


def current_request_id() -> str:
    """The id of the request being served (forwarded to every downstream call)."""
    return REQUEST_ID.get()


class RequestContextMiddleware:
    """Pure ASGI: takes or makes `x-request-id`, times the request, counts it, logs it, and turns an
    unexpected exception into a JSON 500 without a stack trace."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        rid = ""
        for key, value in scope.get("headers", ()):
            if key == b"x-request-id":
                rid = value.decode("latin-1")
                break
        if not _RID_OK.match(rid):
            rid = uuid.uuid4().hex
        scope["request_id"] = rid
        token = REQUEST_ID.set(rid)
        status = 500
        started = False

        async def send_with_id(message: Message) -> None:
            nonlocal status, started
            if message["type"] == "http.response.start":
                started = True
                status = int(message["status"])
                MutableHeaders(scope=message)["x-request-id"] = rid
            await send(message)

        t0 = time.perf_counter()
        try:
            await self.app(scope, receive, send_with_id)
        except Exception as exc:
            if started:
                raise
            await internal_error_response(exc, rid)(scope, receive, send_with_id)
        finally:
            elapsed = time.perf_counter() - t0
            route = scope.get("route")
            path = getattr(route, "path", None) or "unmatched"
            REQUESTS.labels(route=path, method=scope.get("method", ""), status=str(status)).inc()
            REQUEST_SECONDS.labels(route=path).observe(elapsed)
            level = logging.DEBUG if path in _QUIET_ROUTES else logging.INFO
            if access_log.isEnabledFor(level):
                access_log.log(level, "%s %s %d %.1fms", scope.get("method"), scope.get("path"), status, elapsed * 1e3)
            REQUEST_ID.reset(token)


class BodyLimitMiddleware:
    """Pure ASGI: a request body over `max_bytes` gets 413, by its Content-Length before a byte is read or as
    soon as the streamed body passes the limit. For JSON routes, which FastAPI would read whole whatever the
    size (image uploads are limited while streaming by `services.common.uploads`)."""

    def __init__(self, app: ASGIApp, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = Headers(scope=scope).get("content-length", "")
        if declared.isdigit() and int(declared) > self.max_bytes:
            await self._refuse(scope, receive, send)
            return
        chunks: list[bytes] = []
        size, more = 0, True
        while more:
            message = await receive()
            if message["type"] != "http.request":  # the client went away
                return
            chunks.append(message.get("body", b""))
            size += len(chunks[-1])
            if size > self.max_bytes:
                await self._refuse(scope, receive, send)
                return
            more = bool(message.get("more_body", False))
        replayed = False

        async def replay() -> Message:
            nonlocal replayed
            if replayed:
                return await receive()
            replayed = True
            return {"type": "http.request", "body": b"".join(chunks), "more_body": False}

        await self.app(scope, replay, send)

    async def _refuse(self, scope: Scope, receive: Receive, send: Send) -> None:
        rid = scope.get("request_id")
        message = f"request body exceeds {self.max_bytes} bytes"
        await error_response(413, "too_many_bytes", message, rid if isinstance(rid, str) else None)(
            scope, receive, send
        )


def health_router(readiness: Readiness) -> APIRouter:
    """`/livez`, `/readyz` and `/metrics`."""
    router = APIRouter(tags=["health"])

    @router.get("/livez")
    async def livez() -> Response:
        """Always 200 while the process runs."""
        return json_response({"status": "alive"})

    @router.get("/readyz")
    async def readyz() -> Response:
        """200 when this service can serve requests, else 503 with the reason."""
        answer = readiness()
        ready, details = await answer if inspect.isawaitable(answer) else answer
        return json_response({"ready": ready, **details}, status=200 if ready else 503)

    @router.get("/metrics")
    async def metrics() -> Response:
        """Prometheus metrics of this process (of all its workers, when it runs several)."""
        return Response(generate_latest(scrape_registry()), media_type=CONTENT_TYPE_LATEST)

    return router


def create_service_app(
    *,
    title: str,
    description: str,
    readiness: Readiness,
    lifespan: Callable[[FastAPI], AbstractAsyncContextManager[None]],
    max_body_bytes: int | None = None,
) -> FastAPI:
    """A FastAPI app with the shared middleware, error mapping and health routes (OpenAPI at /docs and /redoc,
    served without a CDN).

    `max_body_bytes`: refuse larger request bodies of every route (services whose routes take JSON).
    """
    app = FastAPI(
        title=title,
        description=description,
        version="0.1.0",
        lifespan=lifespan,
        default_response_class=ORJSONResponse,
        docs_url=None,  # served from the package's assets instead of a CDN
        redoc_url=None,
    )
    install_api_docs(app)
    install_error_handlers(app)
    if max_body_bytes is not None:
        app.add_middleware(BodyLimitMiddleware, max_bytes=max_body_bytes)  # inside the request context
    app.add_middleware(ClientLimitsMiddleware)  # outside the body limit, whose body reads it times
    app.add_middleware(RequestContextMiddleware)
    instrument(app)  # outermost
    app.include_router(health_router(readiness))
    return app
