"""OpenTelemetry traces: one caller's trace id in the spans of all four services, and nothing when off."""

from __future__ import annotations

import json
import re
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import httpx
import pytest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

from services.common.tracing import exporter_names
from tests.helpers import Stack, running_stack, shared_stack
from tests.helpers.paths import PHOTOS
from tests.helpers.wait import wait_until

SERVICES = ("detector", "embedder", "index", "gateway")
TRACE_ID = "4bf92f3577b34da6a3ce929d0e0e4736"
TRACEPARENT = f"00-{TRACE_ID}-00f067aa0ba902b7-01"
FORGED_CLIENT = "203.0.113.77"  # what a caller writes in X-Forwarded-For: never a span's client address
TRACING = {
    "OTEL_TRACES_EXPORTER": "console,otlp",
    "OTEL_BSP_SCHEDULE_DELAY": "100",  # export within 0.1 s instead of 5 s
    "OTEL_TRACES_SAMPLER": "parentbased_always_on",
}


@contextmanager
def otlp_collector() -> Iterator[tuple[str, dict[str, set[str]]]]:
    """A minimal OTLP/HTTP trace receiver on 127.0.0.1: its URL, and service name -> trace ids (hex) received."""
    received: dict[str, set[str]] = {}

    class Receiver(BaseHTTPRequestHandler):
        def log_message(self, format: str, *args: object) -> None:
            return None

        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers["Content-Length"]))
            request = ExportTraceServiceRequest.FromString(body) if self.path == "/v1/traces" else None
            for resource_spans in request.resource_spans if request else ():
                attrs = {a.key: a.value.string_value for a in resource_spans.resource.attributes}
                ids = {span.trace_id.hex() for scope in resource_spans.scope_spans for span in scope.spans}
                received.setdefault(attrs.get("service.name", "?"), set()).update(ids)
            self.send_response(200 if request else 404)
            self.send_header("Content-Length", "0")
            self.end_headers()

    server = ThreadingHTTPServer(("127.0.0.1", 0), Receiver)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", received
    finally:
        server.shutdown()
        server.server_close()


def _log(stack: Stack, name: str) -> str:
    return (stack.root / "logs" / f"{name}.log").read_text(errors="replace")


def _spans(text: str) -> list[dict[str, Any]]:
    """The spans the console exporter wrote, one JSON object a line, among the log lines."""
    spans = []
    for line in text.splitlines():
        if line.startswith("{") and '"trace_id"' in line:
            spans.append(json.loads(line))
    return spans


def _traced(stack: Stack, name: str) -> list[dict[str, Any]]:
    return [span for span in _spans(_log(stack, name)) if span["context"]["trace_id"] == "0x" + TRACE_ID]


def _search(stack: Stack) -> httpx.Response:
    resp = httpx.post(
        stack.gateway_url + "/v1/search?k=3&category=",
        files={"image": ("dog.jpg", (PHOTOS / "dog.jpg").read_bytes())},
        headers={"traceparent": TRACEPARENT, "x-forwarded-for": FORGED_CLIENT},
        trust_env=False,
        timeout=60,
    )
    assert resp.status_code == 200, resp.text
    return resp


def _shadow_on_itself(stack: Stack) -> None:
    """Restart the gateway shadowing every search on the stack's own embedder and index (a copy of production)."""
    stack.stop("gateway")
    stack.args["gateway"] += [
        f"--shadow-embedder-url={stack.url('embedder')}",
        f"--shadow-index-url={stack.url('index')}",
        "--shadow-sample-rate=1",
    ]
    stack.start("gateway").wait_ready(60)


@pytest.mark.stack
def test_callers_trace_id_is_in_spans_of_all_four_services_and_on_log_lines() -> None:
    with (
        otlp_collector() as (endpoint, received),
        running_stack(env=TRACING | {"OTEL_EXPORTER_OTLP_ENDPOINT": endpoint}) as stack,
    ):
        _shadow_on_itself(stack)
        _search(stack)
        # OTLP: what a collector gets, decoded from protobuf.
        wait_until(
            lambda: all(TRACE_ID in received.get(f"imgsearch-{name}", ()) for name in SERVICES),
            timeout_s=30,
            message=lambda: f"the collector got {received}",
        )
        # Console: the spans themselves, for their names and parents.
        by_service = wait_until(
            lambda: (found := {name: _traced(stack, name) for name in SERVICES}) and all(found.values()) and found,
            timeout_s=30,
            message=lambda: "\n".join(f"{name}: {_log(stack, name)[-2000:]}" for name in SERVICES),
        )
        for name, spans in by_service.items():
            servers = [span for span in spans if span["kind"] == "SpanKind.SERVER"]
            assert servers, f"{name} has no server span of the trace"
            assert {span["resource"]["attributes"]["service.name"] for span in spans} == {f"imgsearch-{name}"}
        gateway = {span["name"] for span in by_service["gateway"]}
        assert {"decode", "detect", "embed", "query"} <= gateway
        # The shadow replay runs after the answer, in the search's context: its span joins the same trace.
        wait_until(lambda: "shadow" in {span["name"] for span in _traced(stack, "gateway")}, timeout_s=30)
        # The caller's span is the gateway's parent; the backends' server spans are children of its stages.
        gateway_server = next(span for span in by_service["gateway"] if span["kind"] == "SpanKind.SERVER")
        assert gateway_server["parent_id"] == "0x00f067aa0ba902b7"
        gateway_ids = {span["context"]["span_id"] for span in by_service["gateway"]}
        for name in ("detector", "embedder", "index"):
            server = next(span for span in by_service[name] if span["kind"] == "SpanKind.SERVER")
            assert server["parent_id"] in gateway_ids, f"{name}'s server span is not a child of a gateway span"
        for name in SERVICES:
            assert re.search(rf"trace={TRACE_ID} ", _log(stack, name)), f"no log line of {name} has the trace id"
        # Spans record paths, not query strings, and the connection's peer, not X-Forwarded-For (issue 33).
        for span in by_service["gateway"]:
            values = " ".join(str(v) for v in span["attributes"].values())
            assert "k=3" not in values and FORGED_CLIENT not in values, span["attributes"]
        assert any("/v1/search" in str(v) for s in by_service["gateway"] for v in s["attributes"].values())


@pytest.mark.stack
def test_with_the_variables_unset_no_span_is_exported() -> None:
    stack = shared_stack()  # started without OTEL_* variables
    _search(stack)
    wait_until(lambda: "GET /v1/query" in _log(stack, "index") or "POST /v1/query" in _log(stack, "index"), 30)
    for name in SERVICES:
        text = _log(stack, name)
        assert not _spans(text), f"{name} exported spans with tracing off"
        assert TRACE_ID not in text


def test_unknown_exporter_is_refused_and_none_means_off(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OTEL_TRACES_EXPORTER", "jaeger")
    with pytest.raises(ValueError, match="jaeger"):
        exporter_names()
    monkeypatch.setenv("OTEL_TRACES_EXPORTER", "none")
    assert exporter_names() == []
    monkeypatch.setenv("OTEL_TRACES_EXPORTER", "otlp, console")
    assert exporter_names() == ["otlp", "console"]
