"""The one mapping of errors to HTTP: `{"error": "..."}`, a log line and a rejection metric by reason.

Library code raises `imgcore.errors.ImgSearchError` subclasses and never knows HTTP; the few errors that
only exist between services (a backend down or slow, admin access) are defined here.

Error texts are written for operators and name store URIs, file paths and hosts; the body a caller sees
has them masked (`public_text`), the log line keeps the whole text and the cause's.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable

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


# What a caller must not learn about the deployment, most specific first: URIs of any scheme (presigned
# query strings included), bare query strings, host:port and IPv4 addresses, cluster DNS names, and
# absolute, home-relative, dot-relative or deep relative file paths. Every pattern starts only where a run of
# its characters starts (a lookbehind) and its runs are possessive (`*+`), so no pattern backtracks: masking
# is linear in the text, which a caller can make long (an item id of 16,000 characters took 6.5 s before).
_SEP = r"\s'\"<>"
_MASKS: list[tuple[re.Pattern[str], str | Callable[[re.Match[str]], str]]] = [
    (re.compile(rf"(?<![A-Za-z0-9+.-])[A-Za-z][A-Za-z0-9+.-]*+://[^{_SEP}]*+"), lambda m: _keep_tail(m, "<uri>")),
    (re.compile(rf"(?<![^{_SEP}])[^{_SEP}?]*+\?[^{_SEP}=]*+=[^{_SEP}]*+"), "<uri>"),
    (re.compile(r"\[[0-9A-Fa-f:.]++\](?::\d{1,5})?"), "<host>"),
    (re.compile(r"(?<![\w.:-])[A-Za-z0-9][A-Za-z0-9.-]*+:\d{2,5}\b(?![.:]\d)"), "<host>"),
    (re.compile(r"\b\d{1,3}(?:\.\d{1,3}){3}\b"), "<host>"),
    (re.compile(r"(?<![\w.-])[\w-]++(?:\.[\w-]++)++"), lambda m: _cluster_name(m.group())),
    (re.compile(rf"(?<![\w.~/-])(?:~|\.{{1,2}})?/[^{_SEP},;]++"), "<path>"),
    (re.compile(rf"\b[A-Za-z]:\\[^{_SEP}]*+"), "<path>"),
    (re.compile(r"(?<![\w.@+-])[\w.@+-]++(?:/[\w.@+-]++){2,}+"), "<path>"),
]
_CLUSTER_SUFFIXES = frozenset({"svc", "internal", "local"})  # "cluster.local" ends in "local"
# Longer texts are cut before masking: a caller's own long id or category is no use to read back.
MAX_PUBLIC_CHARS = 2000


def _keep_tail(match: re.Match[str], mask: str) -> str:
    """`mask` for the match, keeping the punctuation that ends a sentence or a bracket after a URI."""
    text = match.group()
    body = text.rstrip(").,;:]")
    return mask + text[len(body) :]


def _cluster_name(name: str) -> str:
    """A dotted name masked up to its last cluster-DNS label (`db.ns.svc.example` -> `<host>.example`)."""
    labels = name.split(".")
    last = max((i for i, label in enumerate(labels) if i > 0 and label in _CLUSTER_SUFFIXES), default=0)
    return name if last == 0 else ".".join(["<host>", *labels[last + 1 :]])


def public_text(message: str) -> str:
    """`message` with every URI, query string, host and file path masked: what a caller may read."""
    if len(message) > MAX_PUBLIC_CHARS:
        message = message[:MAX_PUBLIC_CHARS] + " [...]"
    for pattern, mask in _MASKS:
        message = pattern.sub(mask, message)
    return message


def error_response(
    status: int, reason: str, message: str, request_id: str | None = None, detail: str | None = None
) -> Response:
    """Count, log (whole text, and `detail` when given) and render one error (masked text)."""
    REJECTIONS.labels(reason=reason).inc()
    level = logging.ERROR if status >= 500 and status not in (503, 504) else logging.WARNING
    full = f"{message} ({detail})" if detail else message
    log.log(level, "rejected status=%d reason=%s rid=%s: %s", status, reason, request_id or "-", full)
    headers = {"x-request-id": request_id} if request_id else None
    return json_response({"error": public_text(message)}, status=status, headers=headers)


def _rid(request: Request) -> str | None:
    rid = request.scope.get("request_id")
    return rid if isinstance(rid, str) else None


async def _domain_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, ImgSearchError)
    cause = exc.__cause__
    detail = f"cause: {type(cause).__name__}: {cause}" if cause is not None else None
    return error_response(exc.status, exc.reason, exc.message, _rid(request), detail)


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
