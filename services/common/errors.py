"""The one mapping of errors to HTTP: `{"error": "..."}`, a log line and a rejection metric by reason.

Library code raises `imgcore.errors.ImgSearchError` subclasses and never knows HTTP; the few errors that
only exist between services (a backend down or slow, admin access) are defined here.
"""

from __future__ import annotations

import logging

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.responses import Response

from imgcore.errors import ImgSearchError
from services.common.metrics import REJECTIONS
from services.common.web_json import json_response

log = logging.getLogger("imgsearch.errors")


class BackendUnavailable(ImgSearchError, status=503, reason="backend_unavailable"):
    """A backend service refused the connection, is not ready or answered 5xx."""


class BackendTimeout(ImgSearchError, status=504, reason="backend_timeout"):
    """A backend service did not answer within its budget."""


class IncompatibleModels(ImgSearchError, status=503, reason="embedder_index_mismatch"):
    """The embedder serves another model than the index was built with: its vectors would find garbage."""


class Unauthorized(ImgSearchError, status=401, reason="unauthorized"):
    """Missing or wrong admin bearer token."""


class AdminDisabled(ImgSearchError, status=403, reason="admin_disabled"):
    """Admin endpoints are off because IMGSEARCH_ADMIN_TOKEN is unset."""


def error_response(status: int, reason: str, message: str, request_id: str | None = None) -> Response:
    """Count, log and render one error."""
    REJECTIONS.labels(reason=reason).inc()
    level = logging.ERROR if status >= 500 and status not in (503, 504) else logging.WARNING
    log.log(level, "rejected status=%d reason=%s rid=%s: %s", status, reason, request_id or "-", message)
    headers = {"x-request-id": request_id} if request_id else None
    return json_response({"error": message}, status=status, headers=headers)


def _rid(request: Request) -> str | None:
    rid = request.scope.get("request_id")
    return rid if isinstance(rid, str) else None


async def _domain_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, ImgSearchError)
    return error_response(exc.status, exc.reason, exc.message, _rid(request))


async def _validation_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, RequestValidationError)
    parts = []
    for err in exc.errors()[:5]:
        loc = ".".join(str(p) for p in err.get("loc", ()) if p not in ("body", "query", "path", "header"))
        parts.append(f"{loc or 'request'}: {err.get('msg', 'invalid')}")
    return error_response(422, "validation", "; ".join(parts) or "invalid request", _rid(request))


async def _http_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, StarletteHTTPException)
    message = exc.detail if isinstance(exc.detail, str) else "request refused"
    return error_response(exc.status_code, f"http_{exc.status_code}", message, _rid(request))


def install_error_handlers(app: FastAPI) -> None:
    """Register the mapping on an app (unknown exceptions are handled by the request middleware)."""
    app.add_exception_handler(ImgSearchError, _domain_error)
    app.add_exception_handler(RequestValidationError, _validation_error)
    app.add_exception_handler(StarletteHTTPException, _http_error)


def internal_error_response(exc: BaseException, request_id: str | None) -> Response:
    """500 for an exception nobody expected: the stack goes to the log, never into the body."""
    log.error("unhandled error rid=%s", request_id or "-", exc_info=exc)
    REJECTIONS.labels(reason="internal").inc()
    headers = {"x-request-id": request_id} if request_id else None
    return json_response({"error": "internal error"}, status=500, headers=headers)
