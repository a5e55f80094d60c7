"""A hostile backend as a real process: an HTTP server answering each route as a JSON spec file says.

`python -m tests.helpers.hostile SPEC PORT` serves on 127.0.0.1:PORT. The spec is read again on every
request, so a test switches the behaviour by rewriting the file. It maps "METHOD /path" to one of:
- `{"json": <value>, "status": 200}`: that JSON;
- `{"json": {...}, "rows": "match"}`: that object with `results` holding one empty row per vector the
  query sent (a well-formed answer for any query);
- `{"stream_mib": N, "head": "...", "tail": "...", "declare_length": true}`: `head`, N MiB of spaces, then
  `tail`, streamed in 1 MiB writes (never held whole), with or without a Content-Length.
`GET /_hits` answers how many requests each route had so far.
"""

from __future__ import annotations

import base64
import json
import subprocess
import sys
from collections import Counter
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx

from services.stack import free_port
from tests.helpers.paths import REPO
from tests.helpers.wait import wait_until

MIB = 1024 * 1024


class _Handler(BaseHTTPRequestHandler):
    spec_path: Path
    hits: Counter[str]
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: Any) -> None:
        return None

    def do_GET(self) -> None:
        self._answer()

    def do_POST(self) -> None:
        self._answer()

    def _answer(self) -> None:
        length = int(self.headers.get("content-length") or 0)
        sent = self.rfile.read(length) if length else b""
        spec = json.loads(self.spec_path.read_text())
        name = f"{self.command} {self.path.split('?')[0]}"
        self.hits[name] += 1
        route = spec.get(name)
        if name == "GET /_hits":
            self._send(200, json.dumps(self.hits).encode())
        elif route is None:
            self._send(404, json.dumps({"error": "no such route"}).encode())
        elif "stream_mib" in route:
            self._stream(route)
        else:
            body = route["json"]
            if route.get("rows") == "match":
                query = json.loads(sent)
                rows = len(base64.b64decode(query["vectors_b64"])) // 4 // int(query["dim"])
                body = {**body, "results": [[] for _ in range(rows)]}
            self._send(int(route.get("status", 200)), json.dumps(body).encode())

    def _send(self, status: int, body: bytes) -> None:
        self.send_response(status)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def _stream(self, route: dict[str, Any]) -> None:
        head, tail = route.get("head", "").encode(), route.get("tail", "").encode()
        size = int(route["stream_mib"])
        self.send_response(200)
        self.send_header("content-type", "application/json")
        if route.get("declare_length", True):
            self.send_header("content-length", str(len(head) + size * MIB + len(tail)))
        else:
            self.send_header("connection", "close")  # the body ends when the connection does
            self.close_connection = True
        self.end_headers()
        try:
            self.wfile.write(head)
            block = b" " * MIB
            for _ in range(size):
                self.wfile.write(block)
            self.wfile.write(tail)
        except OSError:  # the client stopped reading: what a capped gateway does
            self.close_connection = True


class HostileBackend:
    """A running hostile server and its spec file."""

    def __init__(self, spec_path: Path) -> None:
        self.spec_path = spec_path
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        if not spec_path.exists():
            self.serve({})
        cmd = [sys.executable, "-m", "tests.helpers.hostile", str(spec_path), str(self.port)]
        self.proc = subprocess.Popen(cmd, cwd=REPO)
        wait_until(lambda: httpx.get(self.url + "/", trust_env=False).status_code, 30, ignoring=httpx.HTTPError)

    def serve(self, routes: dict[str, Any]) -> None:
        """Answer with `routes` from the next request on (written whole, then renamed: never half read)."""
        tmp = self.spec_path.with_suffix(".tmp")
        tmp.write_text(json.dumps(routes))
        tmp.replace(self.spec_path)

    def hits(self, route: str) -> int:
        """How many requests `route` ("METHOD /path") has had."""
        counts: dict[str, int] = httpx.get(self.url + "/_hits", trust_env=False).json()
        return counts.get(route, 0)

    def close(self) -> None:
        self.proc.terminate()
        self.proc.wait(10)


def main() -> None:
    spec_path, port = Path(sys.argv[1]), int(sys.argv[2])
    handler = type("Handler", (_Handler,), {"spec_path": spec_path, "hits": Counter()})
    ThreadingHTTPServer(("127.0.0.1", port), handler).serve_forever()


if __name__ == "__main__":
    main()
