"""`imgsearch up`: the whole stack on this machine — four services as separate processes on 127.0.0.1.

Models come from the repository's model store (file://). On the first run the demo index is built from the
Fashion-MNIST train split into the data folder. Ctrl-C or SIGTERM stops every child cleanly.
"""

from __future__ import annotations

import argparse
import logging
import signal
import socket
import threading
from pathlib import Path
from types import FrameType
from typing import Any

from services import defaults
from services.stack import ServiceFailed, ServiceProcess, free_port, start_service, stop_all

log = logging.getLogger("imgsearch.up")


def _port_is_free(host: str, port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError:
            return False
        return True


def _embedder_sha256() -> str | None:
    from imgcore.card import load_card
    from imgcore.errors import StoreError

    try:
        return str(load_card(Path(defaults.MODELS_DIR) / "fmnist-lite0")["sha256"])
    except StoreError:
        return None


def service_args(data: Path, ports: dict[str, int], host: str) -> dict[str, list[str]]:
    """The flags of each service for a local stack rooted at `data`."""
    cache = str(data / "cache" / "models")
    index_args = ["--index-uri", (data / "index").as_uri(), "--local-dir", str(data / "cache" / "index")]
    sha = _embedder_sha256()
    if sha:
        index_args += ["--embedder-sha256", sha]
    return {
        "detector": ["--model-cache-dir", cache, "--model-uri", defaults.DEFAULT_DETECTOR_URI],
        "embedder": ["--model-cache-dir", cache, "--model-uri", defaults.DEFAULT_EMBEDDER_URI],
        "index": index_args,
        "gateway": [f"--{name}-url=http://{host}:{ports[name]}" for name in ("detector", "embedder", "index")],
    }


def _banner(url: str) -> str:
    photo = defaults.REPO_ROOT / "tests" / "data" / "photos" / "person.jpg"
    shown = photo if photo.is_file() else Path("PHOTO.jpg")
    return (
        f"\nimgsearch is up: {url}  (API docs: {url}/docs)\n"
        f"Try:\n  curl -F image=@{shown} '{url}/v1/search?k=10'\n"
        f"  imgsearch search {shown} --url {url}\n"
        "Press Ctrl-C to stop.\n"
    )


def run_up(args: argparse.Namespace) -> int:
    """Build the demo index if needed, start the services, wait for Ctrl-C/SIGTERM, stop them."""
    from services.common.web import quiet_http_client_logs
    from services.demo_index import build_demo_index, has_index

    quiet_http_client_logs()
    host = "127.0.0.1"
    data = Path(args.data).resolve()
    data.mkdir(parents=True, exist_ok=True)
    if not _port_is_free(host, args.port):
        log.error("port %d is in use; choose another with --port", args.port)
        return 2
    if not has_index(data, _embedder_sha256()):  # none yet, or built with another embedder
        try:
            build_demo_index(data, limit=args.demo_limit)
        except KeyboardInterrupt:
            log.error("interrupted while building the demo index; nothing was published")
            return 130
        except FileNotFoundError as exc:  # the demo data is a Debian package, not part of the checkout
            log.error("%s", exc)
            return 2
    ports = {"detector": free_port(), "embedder": free_port(), "index": free_port(), "gateway": args.port}
    flags = service_args(data, ports, host)
    stop = threading.Event()

    def on_signal(signum: int, frame: FrameType | None) -> None:
        stop.set()

    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGTERM, on_signal)
    children: list[ServiceProcess] = []
    try:
        for name in ("detector", "embedder", "index", "gateway"):
            log_path = data / "logs" / f"{name}.log"
            children.append(
                start_service(name, ports[name], host=host, args=flags[name], log_path=log_path, own_session=True)
            )
        for child in children:
            while not stop.is_set():
                try:
                    child.wait_ready(timeout_s=1.0)
                    break
                except ServiceFailed:
                    if not child.alive() or stop.is_set():
                        raise
            log.info("%s ready on %s", child.name, child.url)
        if not stop.is_set():
            print(_banner(f"http://{host}:{args.port}") + f"Logs: {data / 'logs'}\n", flush=True)
        while not stop.wait(0.5):
            dead = [c for c in children if not c.alive()]
            if dead:
                log.error("%s exited unexpectedly:\n%s", dead[0].name, dead[0].log_tail())
                return 1
        return 0
    except ServiceFailed as exc:
        log.error("%s", exc)
        return 1
    finally:
        log.info("stopping services")
        stop_all(children)


def register(sub: Any) -> None:
    """Add `up`."""
    parser = sub.add_parser("up", help="run the whole stack locally", description=__doc__)
    parser.add_argument("--port", type=int, default=8000, help="gateway port (default 8000)")
    parser.add_argument(
        "--data", default=str(defaults.DEFAULT_VAR_DIR), help="data folder: index, model cache, logs (default ./var)"
    )
    parser.add_argument("--demo-limit", type=int, default=None, help=argparse.SUPPRESS)
    parser.set_defaults(func=run_up)
