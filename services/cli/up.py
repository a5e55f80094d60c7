"""`imgsearch up`: the whole stack on this machine — four services as separate processes on 127.0.0.1.

Models come from the repository's model store (file://). On the first run the demo index is built from the
Fashion-MNIST train split into the data folder. Ctrl-C or SIGTERM stops every child cleanly.
"""

from __future__ import annotations

import argparse
import fcntl
import logging
import os
import signal
import socket
import threading
from pathlib import Path
from types import FrameType
from typing import IO, Any

from services import defaults
from services.cli.up_catalog import add_catalog_flags, own_catalog
from services.stack import LocalStack, ServiceFailed, embedder_sha256

log = logging.getLogger("imgsearch.up")


def _port_is_free(host: str, port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError:
            return False
        return True


def lock_data_folder(data: Path) -> IO[str] | None:
    """Hold the data folder for this process's life (`data/.up.lock`, flock: released when it exits, even
    killed); None when another process holds it. Two stacks on one folder would write the same log files
    and index copies."""
    handle = open(data / ".up.lock", "a+")  # noqa: SIM115 - held open on purpose, for the process's life
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        handle.close()
        return None
    handle.truncate(0)
    handle.write(f"{os.getpid()}\n")
    handle.flush()
    return handle


def _holder(data: Path) -> str:
    try:
        return (data / ".up.lock").read_text().strip() or "?"
    except OSError:
        return "?"


def _banner(url: str, logs: Path) -> str:
    photo = defaults.REPO_ROOT / "tests" / "data" / "photos" / "person.jpg"
    shown = photo if photo.is_file() else Path("PHOTO.jpg")
    return (
        f"\nimgsearch is up: {url}  (API docs: {url}/docs)\n"
        f"Try:\n  curl -F image=@{shown} '{url}/v1/search?k=10'\n"
        f"  imgsearch search {shown} --url {url}\n"
        f"Press Ctrl-C to stop.\nLogs: {logs}\n"
    )


def _stop_event() -> threading.Event:
    """Set by Ctrl-C or SIGTERM (the children run in their own session: the launcher stops them in order)."""
    stop = threading.Event()

    def on_signal(signum: int, frame: FrameType | None) -> None:
        # The handler runs on the main thread, which may hold the Event's lock (inside `wait`), and a second
        # signal can land inside the first `set`: setting it here deadlocked `up` (seen with TERM twice).
        # A helper thread sets it as soon as the lock is free.
        if not stop.is_set():
            threading.Thread(target=stop.set, name="stop-signal", daemon=True).start()

    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGTERM, on_signal)
    return stop


def _serve(stack: LocalStack, stop: threading.Event) -> int:
    """Wait (with no time limit) until every service is ready, then until a signal or a child's death."""
    if stack.up(timeout_s=None, cancel=stop):
        print(_banner(stack.gateway_url, stack.root / "logs"), flush=True)
    while not stop.wait(0.5):
        dead = stack.first_dead()
        if dead is not None:
            log.error("%s exited unexpectedly:\n%s", dead.name, dead.log_tail())
            return 1
    return 0


def run_up(args: argparse.Namespace) -> int:
    """Build the demo index if needed, start the services, wait for Ctrl-C/SIGTERM, stop them."""
    from services.demo_index import build_demo_index, has_demo_index

    data = Path(args.data).resolve()
    data.mkdir(parents=True, exist_ok=True)
    lock = lock_data_folder(data)
    if lock is None:
        log.error(
            "%s is in use by another `imgsearch up` (pid %s): stop it, or give this one --data DIR", data, _holder(data)
        )
        return 2
    if not _port_is_free("127.0.0.1", args.port):
        log.error("port %d is in use; choose another with --port", args.port)
        return 2
    flags: dict[str, list[str]] = {}
    if args.catalog is not None or args.embedder is not None:  # the user's own catalog
        code, flags = own_catalog(data, args.catalog, args.embedder)
        if code:
            return code
    elif not has_demo_index(data, embedder_sha256()):  # none yet, of an older demo, or another embedder
        try:
            build_demo_index(data, limit=args.demo_limit)
        except KeyboardInterrupt:
            log.error("interrupted while building the demo index; nothing was published")
            return 130
    stack = LocalStack(data, data, flags, gateway_port=args.port, own_session=True)
    try:
        return _serve(stack, _stop_event())
    except ServiceFailed as exc:
        log.error("%s", exc)
        return 1
    finally:
        log.info("stopping services")
        stack.close()


def register(sub: Any) -> None:
    """Add `up`."""
    parser = sub.add_parser("up", help="run the whole stack locally", description=__doc__)
    parser.add_argument("--port", type=int, default=8000, help="gateway port (default 8000)")
    parser.add_argument(
        "--data", default=str(defaults.DEFAULT_VAR_DIR), help="data folder: index, model cache, logs (default ./var)"
    )
    parser.add_argument("--demo-limit", type=int, default=None, help=argparse.SUPPRESS)
    add_catalog_flags(parser)
    parser.set_defaults(func=run_up)
