"""Shared fixtures: a real S3-compatible server (moto_server) and a local HTTP server with fault injection.

Add new fixtures in their own section below; keep helpers small and typed.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import tempfile
import threading
import uuid
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import unquote, urlsplit

import httpx
import pytest

from services.stack import free_port
from tests.helpers.wait import wait_until

# --------------------------------------------------------------------------- environment


def _set_env(values: Mapping[str, str | None]) -> None:
    for name, value in values.items():
        if value is None:
            os.environ.pop(name, None)
        else:
            os.environ[name] = value


@contextlib.contextmanager
def env_vars(**values: str | None) -> Iterator[None]:
    """Set (or, with None, unset) environment variables for a block, then restore the previous values."""
    saved = {name: os.environ.get(name) for name in values}
    try:
        _set_env(values)
        yield
    finally:
        _set_env(saved)


# --------------------------------------------------------------------------- private temp root

# pytest's default root, /tmp/pytest-of-<user>, is shared by every run of that user, and each run prunes the
# numbered folders of the others: two runs at once lost each other's folders (251 errors). Without
# --basetemp, each run gets a folder of its own, removed when the run passes and kept (and named) when not.
_PRIVATE_ROOT: dict[str, Path] = {}


@pytest.hookimpl(tryfirst=True)
def pytest_configure(config: pytest.Config) -> None:
    if config.option.basetemp is None and not hasattr(config, "workerinput"):
        root = Path(tempfile.mkdtemp(prefix="imgsearch-pytest-"))
        config.option.basetemp = str(root)
        _PRIVATE_ROOT["path"] = root


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    root = _PRIVATE_ROOT.pop("path", None)
    if root is None:
        return
    if exitstatus in (pytest.ExitCode.OK, pytest.ExitCode.NO_TESTS_COLLECTED):
        shutil.rmtree(root, ignore_errors=True)
    else:
        session.config.pluginmanager.get_plugin("terminalreporter").write_line(f"temporary files kept in {root}")


# --------------------------------------------------------------------------- test lanes

# Every test that starts processes carries the `stack` mark (`pytest -m "not stack"` is the fast lane):
# modules that start services or the CLI say so with `pytestmark`; tests using these fixtures get it here.
PROCESS_FIXTURES = frozenset({"s3_endpoint"})


@pytest.hookimpl(tryfirst=True)
def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if PROCESS_FIXTURES.intersection(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.stack)


# --------------------------------------------------------------------------- S3 (moto_server)


@pytest.fixture(scope="session")
def s3_endpoint(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A real moto_server subprocess on 127.0.0.1; yields its endpoint URL. Credentials are set in the
    environment for the session (fake ones) and restored afterwards; AWS_ENDPOINT_URL is NOT set, so
    tests pass the endpoint explicitly or set it themselves with env_vars()."""
    exe = shutil.which("moto_server")
    if exe is None:
        pytest.skip("moto_server is not installed (pip install 'moto[server]')")
    port = free_port()
    endpoint = f"http://127.0.0.1:{port}"
    log_path = tmp_path_factory.mktemp("moto") / "moto_server.log"
    with open(log_path, "wb") as log:
        proc = subprocess.Popen([exe, "-H", "127.0.0.1", "-p", str(port)], stdout=log, stderr=subprocess.STDOUT)

    def answers() -> bool:
        if proc.poll() is not None:
            raise RuntimeError(f"moto_server exited with {proc.returncode}: {log_path.read_text()[-2000:]}")
        return httpx.get(f"{endpoint}/moto-api/", timeout=1).status_code < 500

    try:
        wait_until(answers, 30, ignoring=httpx.HTTPError, message=f"moto_server did not answer on {endpoint}")
        with env_vars(
            AWS_ACCESS_KEY_ID="testing",
            AWS_SECRET_ACCESS_KEY="testing",
            AWS_SESSION_TOKEN=None,
            AWS_DEFAULT_REGION="us-east-1",
            AWS_REGION="us-east-1",
            AWS_PROFILE=None,
            # No real ~/.aws config or instance metadata lookups may leak into tests.
            AWS_CONFIG_FILE=os.devnull,
            AWS_SHARED_CREDENTIALS_FILE=os.devnull,
            AWS_EC2_METADATA_DISABLED="true",
        ):
            yield endpoint
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def create_bucket(endpoint: str, name: str | None = None) -> str:
    """Create a bucket on the S3 endpoint and return its URI (s3://name). Names default to unique ones."""
    import boto3

    bucket = name or f"t-{uuid.uuid4().hex[:20]}"
    boto3.session.Session().client("s3", endpoint_url=endpoint).create_bucket(Bucket=bucket)
    return f"s3://{bucket}"


@pytest.fixture
def s3_bucket(s3_endpoint: str) -> str:
    """A fresh, empty bucket for one test: `s3://<unique name>`."""
    return create_bucket(s3_endpoint)


# --------------------------------------------------------------------------- HTTP file server


class _QuietServer(ThreadingHTTPServer):
    daemon_threads = True

    def handle_error(self, request: object, client_address: object) -> None:
        # Clients that time out or give up mid-body are what the fault tests provoke: not worth a traceback.
        return None


@dataclass
class _Fault:
    kind: str  # "status" | "stall" | "truncate"
    remaining: int
    status: int = 503
    seconds: float = 0.0
    after_bytes: int = 0


class LocalHttpServer:
    """Serves files under `root` at `url`, counts requests per path and injects faults per path.

    Paths are URL paths such as "/models/m/model.onnx". Faults apply to the next `times` GET/HEAD
    requests of that path, in the order they were added.
    """

    def __init__(self, root: Path) -> None:
        self.root = root
        self.requests: list[tuple[str, str]] = []
        self.peers: list[tuple[str, int]] = []  # each request's client address: equal ports = one connection
        self._faults: dict[str, list[_Fault]] = {}
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._httpd = _QuietServer(("127.0.0.1", 0), _make_handler(self))
        self.url = f"http://127.0.0.1:{self._httpd.server_address[1]}"
        self._thread = threading.Thread(target=self._httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
        self._thread.start()

    def count(self, path: str) -> int:
        with self._lock:
            return sum(1 for _, p in self.requests if p == path)

    def fail(self, path: str, times: int = 1, status: int = 503) -> None:
        self._add(path, _Fault("status", times, status=status))

    def stall(self, path: str, seconds: float, times: int = 1) -> None:
        self._add(path, _Fault("stall", times, seconds=seconds))

    def truncate(self, path: str, after_bytes: int, times: int = 1) -> None:
        """Announce the full Content-Length, send `after_bytes` of the body, then drop the connection."""
        self._add(path, _Fault("truncate", times, after_bytes=after_bytes))

    def _add(self, path: str, fault: _Fault) -> None:
        with self._lock:
            self._faults.setdefault(path, []).append(fault)

    def _take_fault(self, method: str, path: str) -> _Fault | None:
        with self._lock:
            self.requests.append((method, path))
            queue = self._faults.get(path, [])
            while queue and queue[0].remaining <= 0:
                queue.pop(0)
            if not queue:
                return None
            queue[0].remaining -= 1
            return queue[0]

    def close(self) -> None:
        self._stop.set()  # wakes stalled handlers
        self._httpd.shutdown()
        self._httpd.server_close()
        self._thread.join(timeout=5)


def _make_handler(server: LocalHttpServer) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"
        # Headers and body go out in two writes: with Nagle on, a kept-alive connection's second request
        # waited 40 ms for the client's delayed ACK (real servers write at once or set TCP_NODELAY).
        disable_nagle_algorithm = True

        def log_message(self, format: str, *args: object) -> None:
            return None  # keep test output clean

        def do_GET(self) -> None:
            self._serve(body=True)

        def do_HEAD(self) -> None:
            self._serve(body=False)

        def _serve(self, body: bool) -> None:
            path = unquote(urlsplit(self.path).path)
            fault = server._take_fault(self.command, path)
            server.peers.append(self.client_address)
            if fault is not None and fault.kind == "stall":
                server._stop.wait(fault.seconds)
            if fault is not None and fault.kind == "status":
                self._send(fault.status, b"injected failure\n", body)
                return
            target = (server.root / path.lstrip("/")).resolve()
            if not target.is_relative_to(server.root.resolve()) or not target.is_file():
                self._send(404, b"not found\n", body)
                return
            data = target.read_bytes()
            if fault is not None and fault.kind == "truncate" and body:
                self._send_headers(200, len(data))
                self.wfile.write(data[: fault.after_bytes])
                self.wfile.flush()
                self.close_connection = True
                return
            self._send(200, data, body)

        def _send_headers(self, status: int, length: int) -> None:
            self.send_response(status)
            self.send_header("Content-Type", "application/octet-stream")
            self.send_header("Content-Length", str(length))
            self.end_headers()

        def _send(self, status: int, data: bytes, body: bool) -> None:
            self._send_headers(status, len(data))
            if body:
                self.wfile.write(data)

    return Handler


@pytest.fixture
def http_server(tmp_path: Path) -> Iterator[LocalHttpServer]:
    """A threaded HTTP server on 127.0.0.1 serving `http_server.root` (a fresh folder) at `http_server.url`."""
    root = tmp_path / "http-root"
    root.mkdir()
    server = LocalHttpServer(root)
    try:
        yield server
    finally:
        server.close()


# --------------------------------------------------------------------------- small factories

MakeModelFolder = Callable[..., Path]


@pytest.fixture
def make_model_folder() -> MakeModelFolder:
    """make_model_folder(parent, name, payload=b"...", card_sha=None) -> parent/name with model.onnx + card.

    The payload is any bytes (tests of storage do not need a real ONNX graph); `card_sha` overrides the
    sha256 written in the card, to build a folder whose card lies."""
    import hashlib
    import json

    def make(parent: Path, name: str, payload: bytes = b"", card_sha: str | None = None) -> Path:
        folder = parent / name
        folder.mkdir(parents=True, exist_ok=True)
        data = payload or f"fake onnx model {name} ".encode() * 1000
        (folder / "model.onnx").write_bytes(data)
        card = {"name": name, "version": "1", "sha256": card_sha or hashlib.sha256(data).hexdigest()}
        (folder / "card.json").write_text(json.dumps(card, indent=2))
        return folder

    return make
