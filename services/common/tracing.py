"""OpenTelemetry traces, configured by the standard variables and off unless asked for.

`OTEL_TRACES_EXPORTER` (a comma-separated list of `otlp`, `console`, `none`; unset = none) turns tracing on.
The SDK itself reads the rest: `OTEL_SERVICE_NAME` and `OTEL_RESOURCE_ATTRIBUTES`, `OTEL_TRACES_SAMPLER` and
`OTEL_TRACES_SAMPLER_ARG`, `OTEL_EXPORTER_OTLP_ENDPOINT` / `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT` (OTLP over
HTTP/protobuf) and `OTEL_BSP_*`. Off, no provider is installed, no middleware is added and `stage()` is a
null context: the cost is the API import.

A caller's W3C `traceparent` is honoured by the ASGI server span (`instrument`); the gateway injects the
current context into its backend calls (`services.gateway.transport`), so one trace spans all four services.

What a span records of a request: its path, not its query string (a search's parameters are the user's;
`IMGSEARCH_TRACE_QUERY=true` opts in), and the connection's peer as the client, never an address taken from
`X-Forwarded-For` (uvicorn's proxy headers are off: `services.common.server`). Request headers are recorded
only as the OpenTelemetry HTTP conventions' opt-in says (`OTEL_INSTRUMENTATION_HTTP_CAPTURE_HEADERS_SERVER_REQUEST`).
"""

from __future__ import annotations

import contextlib
import logging
import os
from collections.abc import Iterator

from fastapi import FastAPI
from opentelemetry import trace
from starlette.types import ASGIApp, Receive, Scope, Send

EXPORTER_ENV = "OTEL_TRACES_EXPORTER"
QUERY_ENV = "IMGSEARCH_TRACE_QUERY"
_ORIGINAL_SCOPE = "imgsearch.original_scope"
EXPORTERS = ("otlp", "console", "none")
# Probes and scrapes every few seconds would drown the traces that matter.
_EXCLUDED_URLS = "/livez,/readyz,/metrics"

_state = {"enabled": False}


def exporter_names() -> list[str]:
    """The exporters `OTEL_TRACES_EXPORTER` asks for (without `none`); ValueError on an unknown name."""
    names = [name.strip().lower() for name in os.environ.get(EXPORTER_ENV, "").split(",") if name.strip()]
    unknown = [name for name in names if name not in EXPORTERS]
    if unknown:
        raise ValueError(f"{EXPORTER_ENV}={','.join(unknown)} is not one of {', '.join(EXPORTERS)}")
    return [name for name in names if name != "none"]


def setup_tracing(service_name: str) -> bool:
    """Install the SDK's tracer provider when `OTEL_TRACES_EXPORTER` asks for an exporter; True when on.

    `service_name` is the default of `OTEL_SERVICE_NAME`. Call once, at service start.
    """
    names = exporter_names()
    if not names:
        return False
    from opentelemetry.sdk.resources import SERVICE_NAME, Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor, ConsoleSpanExporter, SpanExporter

    # Resource.create reads OTEL_SERVICE_NAME, but attributes given here would override it.
    default = {} if os.environ.get("OTEL_SERVICE_NAME") else {SERVICE_NAME: service_name}
    provider = TracerProvider(resource=Resource.create(default))  # reads OTEL_TRACES_SAMPLER(_ARG)
    for name in names:
        exporter: SpanExporter
        if name == "otlp":
            from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

            exporter = OTLPSpanExporter()  # reads OTEL_EXPORTER_OTLP_(TRACES_)ENDPOINT, _HEADERS, _TIMEOUT
        else:
            # One line a span, so a log collector keeps each span whole.
            exporter = ConsoleSpanExporter(formatter=lambda span: span.to_json(indent=None) + "\n")
        provider.add_span_processor(BatchSpanProcessor(exporter))  # exports off the request path
    trace.set_tracer_provider(provider)
    _state["enabled"] = True
    return True


def tracing_enabled() -> bool:
    return _state["enabled"]


def instrument(app: FastAPI) -> None:
    """When tracing is on: a server span per request, its parent the caller's `traceparent`. Add it last, so
    that the span is current in every other middleware (the access log line carries its trace id)."""
    if not tracing_enabled():
        return
    keep_query = os.environ.get(QUERY_ENV, "").strip().lower() in ("1", "true", "yes")
    app.add_middleware(ServerSpans, keep_query=keep_query)


class ServerSpans:
    """OpenTelemetry's ASGI middleware, shown a scope without the query string (unless kept); the app behind
    it gets the request's own scope. `app` is that middleware: FastAPI finds it there (walking `.app`) and
    leaves its own server spans, which record the query string, off."""

    def __init__(self, app: ASGIApp, keep_query: bool) -> None:
        from opentelemetry.instrumentation.asgi import OpenTelemetryMiddleware

        self.behind = app
        self.keep_query = keep_query
        self.app = OpenTelemetryMiddleware(self._inner, excluded_urls=_EXCLUDED_URLS, exclude_spans=["receive", "send"])

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or self.keep_query:
            await self.app(scope, receive, send)
            return
        await self.app({**scope, "query_string": b"", _ORIGINAL_SCOPE: scope}, receive, send)

    async def _inner(self, scope: Scope, receive: Receive, send: Send) -> None:
        await self.behind(scope.get(_ORIGINAL_SCOPE, scope), receive, send)


_tracer = trace.get_tracer("imgsearch")


@contextlib.contextmanager
def stage(name: str) -> Iterator[None]:
    """A span around one stage of a request (decode, detect, embed, query, shadow); nothing when off."""
    if not _state["enabled"]:
        yield
        return
    with _tracer.start_as_current_span(name):
        yield


class TraceIdFilter(logging.Filter):
    """Adds `trace` (the current trace id in hex, `-` outside a span) to every log record."""

    def filter(self, record: logging.LogRecord) -> bool:
        context = trace.get_current_span().get_span_context()
        record.trace = format(context.trace_id, "032x") if context.is_valid else "-"
        return True
