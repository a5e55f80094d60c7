"""What makes a process a service, shared by `imgsearch serve` and the index's pre-forked workers: its logging,
its app (tracing first) and the uvicorn configuration every service runs with."""

from __future__ import annotations

import importlib
import logging
import sys
from typing import Any

from services.common.settings import CommonSettings

APP_FACTORIES = {
    "detector": "services.detector.app",
    "embedder": "services.embedder.app",
    "index": "services.index.app",
    "gateway": "services.gateway.app",
}


def configure_logging(level: str, *, request_ids: bool = False, trace_ids: bool = False) -> None:
    """The logging of every command: one line a record on stderr, at `level`.

    A service (`request_ids`) replaces the setup made before and adds the id of the request being served
    to each line (`rid=<id>`); with tracing on (`trace_ids`), its trace id too (`trace=<32 hex>`).
    """
    handler = logging.StreamHandler(sys.stderr)
    if request_ids:
        from services.common.web import RequestIdFilter

        handler.addFilter(RequestIdFilter())
    if trace_ids:
        from services.common.tracing import TraceIdFilter

        handler.addFilter(TraceIdFilter())
    rid = "rid=%(rid)s " if request_ids else ""
    rid += "trace=%(trace)s " if trace_ids else ""
    handler.setFormatter(logging.Formatter(f"%(asctime)s %(levelname)s %(name)s {rid}%(message)s"))
    logging.basicConfig(level=level.upper(), handlers=[handler], force=request_ids)
    # httpx logs every request at INFO: far too much for inter-service calls and readiness polls.
    for name in ("httpx", "httpcore"):
        logging.getLogger(name).setLevel(logging.WARNING)


def build_app(name: str, settings: CommonSettings) -> Any:
    """Tracing and logging of a service process, then its app."""
    from services.common.tracing import setup_tracing

    tracing = setup_tracing(f"imgsearch-{name}")  # before the app is built: it adds the server spans
    configure_logging(settings.server.log_level, request_ids=True, trace_ids=tracing)
    module = importlib.import_module(APP_FACTORIES[name])
    return module.create_app(settings)


def uvicorn_config(app: Any, settings: CommonSettings) -> Any:
    """The uvicorn.Config every service runs with: quiet, bounded clients, graceful shutdown."""
    import uvicorn

    from services.common.http_protocol import ClientLimits, guarded_protocol

    server = settings.server
    return uvicorn.Config(
        app,
        host=server.host,
        port=server.port,
        log_config=None,
        log_level=server.log_level.lower(),
        access_log=False,
        timeout_graceful_shutdown=int(server.graceful_shutdown_s) or None,
        server_header=False,
        proxy_headers=False,  # the client is the connection's peer: X-Forwarded-For is anyone's to write
        http=guarded_protocol(
            ClientLimits(
                server.header_timeout_s,
                server.body_timeout_s,
                server.max_client_connections,
                server.max_header_bytes,
                server.max_headers,
            )
        ),
    )
