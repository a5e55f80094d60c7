"""Service processes: a free port, one `imgsearch serve NAME` child started, waited on and stopped.

`start_service` starts one service process on its own (tests that need a misconfigured or extra one);
services/stack.py starts the four of a local stack with it.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections import deque
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

import httpx

SERVICE_ORDER = ("detector", "embedder", "index", "gateway")


# A service binds its port seconds after it is chosen (after its imports), and the kernel may offer that port
# again meanwhile: two services then share it, one dies, the other answers for both (seen once in CI).
_HANDED_OUT: deque[int] = deque(maxlen=512)


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port that is free right now and that this process has not handed out lately."""
    for _ in range(1000):
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
            sock.bind((host, 0))
            port = int(sock.getsockname()[1])
        if port not in _HANDED_OUT:
            _HANDED_OUT.append(port)
            return port
    raise RuntimeError("no free TCP port that was not handed out lately")


def _die_with_parent() -> None:
    """In the child, before exec: ask Linux to send SIGTERM when the parent exits."""
    import ctypes

    pr_set_pdeathsig = 1
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(pr_set_pdeathsig, signal.SIGTERM)


class ServiceFailed(RuntimeError):
    """A service process exited or did not become ready in time."""


@dataclass
class ServiceProcess:
    """One `imgsearch serve NAME` child process."""

    name: str
    host: str
    port: int
    proc: subprocess.Popen[bytes]
    log_path: Path | None = None
    _log: IO[bytes] | None = field(default=None, repr=False)

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def alive(self) -> bool:
        return self.proc.poll() is None

    def log_tail(self, lines: int = 40) -> str:
        """The end of the process's log (for error messages)."""
        if self.log_path is None or not self.log_path.is_file():
            return ""
        return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])

    def is_ready(self) -> bool:
        try:
            return httpx.get(self.url + "/readyz", timeout=2.0, trust_env=False).status_code == 200
        except httpx.HTTPError:
            return False

    def wait_ready(self, timeout_s: float | None = 120.0, cancel: threading.Event | None = None) -> bool:
        """Block until /readyz says 200 (True) or `cancel` is set (False).

        ServiceFailed if the process dies, or after `timeout_s` (None: wait as long as it lives).
        """
        deadline = None if timeout_s is None else time.monotonic() + timeout_s
        cancel = cancel or threading.Event()
        while not cancel.is_set():
            if not self.alive():
                raise ServiceFailed(f"{self.name} exited with code {self.proc.returncode}:\n{self.log_tail()}")
            if self.is_ready():
                return True
            if deadline is not None and time.monotonic() > deadline:
                raise ServiceFailed(f"{self.name} not ready after {timeout_s:.0f}s:\n{self.log_tail()}")
            cancel.wait(0.1)
        return False

    def stop(self, timeout_s: float = 15.0) -> int:
        """SIGTERM (graceful drain), then SIGKILL if it takes longer than `timeout_s`."""
        if self.alive():
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout_s)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        if self._log is not None:
            self._log.close()
            self._log = None
        return int(self.proc.returncode)


def start_service(
    name: str,
    port: int,
    *,
    host: str = "127.0.0.1",
    args: Sequence[str] = (),
    env: Mapping[str, str] | None = None,
    log_path: Path | None = None,
    own_session: bool = False,
) -> ServiceProcess:
    """Start `imgsearch serve NAME --host HOST --port PORT ARGS...` (does not wait for readiness).

    The child gets SIGTERM if this process dies, so no service outlives its launcher. With `own_session`
    a terminal's Ctrl-C reaches only the launcher, which then stops the children in order.
    """
    cmd = [sys.executable, "-m", "services.cli", "serve", name, "--host", host, "--port", str(port), *args]
    log = None
    if log_path is not None:
        log_path.parent.mkdir(parents=True, exist_ok=True)
        log = open(log_path, "ab")  # noqa: SIM115 - closed by ServiceProcess.stop
    child_env = {**os.environ, **(env or {})}
    proc = subprocess.Popen(
        cmd,
        stdout=log or subprocess.DEVNULL,
        stderr=subprocess.STDOUT if log else None,
        env=child_env,
        stdin=subprocess.DEVNULL,
        start_new_session=own_session,
        preexec_fn=_die_with_parent if sys.platform == "linux" else None,
    )
    return ServiceProcess(name, host, port, proc, log_path, log)


def stop_all(services: Sequence[ServiceProcess], timeout_s: float = 15.0) -> None:
    """SIGTERM to every service (gateway first), then wait for each one's graceful drain."""
    ordered = sorted(services, key=lambda s: SERVICE_ORDER[::-1].index(s.name) if s.name in SERVICE_ORDER else 0)
    for svc in ordered:
        if svc.alive():
            svc.proc.send_signal(signal.SIGTERM)
    for svc in ordered:
        svc.stop(timeout_s)
