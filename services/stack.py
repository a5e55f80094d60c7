"""The local stack: the four services as separate processes, started in order, waited on, stopped cleanly.

`LocalStack` is what `imgsearch up`, the integration tests and the benchmarks run; the processes themselves
(`start_service`, `ServiceProcess`, `free_port`) are services/common/processes.py's, named here too.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Mapping, Sequence
from pathlib import Path

from services import defaults
from services.common.processes import SERVICE_ORDER, ServiceFailed, ServiceProcess, free_port, start_service, stop_all

log = logging.getLogger("imgsearch.stack")

__all__ = [
    "EMBEDDER_NICE",
    "SERVICE_ORDER",
    "LocalStack",
    "ServiceFailed",
    "ServiceProcess",
    "embedder_sha256",
    "free_port",
    "service_args",
    "start_service",
    "stop_all",
]


def embedder_sha256() -> str | None:
    """The sha256 of the repository's default embedder (None when its card is missing)."""
    from imgcore.card import load_card
    from imgcore.errors import StoreError

    try:
        return str(load_card(defaults.DEFAULT_EMBEDDER_DIR)["sha256"])
    except StoreError:
        return None


EMBEDDER_NICE = 5


def service_args(data: Path, ports: Mapping[str, int], host: str = "127.0.0.1") -> dict[str, list[str]]:
    """The flags of each service for a local stack rooted at `data` (models from the repository's store)."""
    cache = str(data / "cache" / "models")
    index_args = ["--index-uri", (data / "index").as_uri(), "--local-dir", str(data / "cache" / "index")]
    sha = embedder_sha256()
    if sha:
        index_args += ["--embedder-sha256", sha]
    return {
        "detector": ["--model-cache-dir", cache, "--model-uri", defaults.DEFAULT_DETECTOR_URI],
        # One host's cores: the embedder's speculative whole-image call runs beside detection, the longest stage;
        # niced, it takes the cores the detector leaves (docs/benchmarks.md, "P1, P2: end to end").
        "embedder": [
            "--model-cache-dir",
            cache,
            "--model-uri",
            defaults.DEFAULT_EMBEDDER_URI,
            f"--nice={EMBEDDER_NICE}",
        ],
        "index": index_args,
        "gateway": [f"--{name}-url=http://{host}:{ports[name]}" for name in ("detector", "embedder", "index")],
    }


class LocalStack:
    """The stack `imgsearch up` runs on a data folder: the four services on 127.0.0.1, on free ports (the
    gateway on `gateway_port`), each logging to `root/logs/NAME.log`.

    `extra` flags are appended to each named service's, in order: the last of a repeated flag wins.
    `up()` starts them and waits until they are ready; `close()` stops them, gateway first.
    """

    def __init__(
        self,
        data: Path,
        root: Path,
        *extra: Mapping[str, Sequence[str]],
        gateway_port: int | None = None,
        env: Mapping[str, str] | None = None,
        own_session: bool = False,
    ) -> None:
        self.root = root
        self.ports = {name: free_port() for name in SERVICE_ORDER}
        if gateway_port is not None:
            self.ports["gateway"] = gateway_port
        self.args = service_args(data, self.ports)
        for more in extra:
            for name, flags in more.items():
                self.args[name] += flags
        self.env = dict(env or {})
        self.own_session = own_session
        self.services: dict[str, ServiceProcess] = {}

    @property
    def gateway_url(self) -> str:
        return self.services["gateway"].url

    def url(self, name: str) -> str:
        return self.services[name].url

    def pids(self) -> dict[str, int]:
        return {name: svc.proc.pid for name, svc in self.services.items()}

    def start(self, name: str) -> ServiceProcess:
        """Start (or start again, on its port) one service; does not wait for readiness."""
        log_path = self.root / "logs" / f"{name}.log"
        svc = start_service(
            name, self.ports[name], args=self.args[name], env=self.env, log_path=log_path, own_session=self.own_session
        )
        self.services[name] = svc
        return svc

    def stop(self, name: str) -> None:
        self.services[name].stop()

    def wait_ready(self, timeout_s: float | None = 120.0, cancel: threading.Event | None = None) -> bool:
        """Every service ready, in order (True), or `cancel` set (False); ServiceFailed as `ServiceProcess`."""
        for name in SERVICE_ORDER:
            if not self.services[name].wait_ready(timeout_s, cancel):
                return False
            log.info("%s ready on %s", name, self.services[name].url)
        return True

    def up(self, timeout_s: float | None = 120.0, cancel: threading.Event | None = None) -> bool:
        """Start every service and wait as `wait_ready` does; if one fails, all are stopped again."""
        try:
            for name in SERVICE_ORDER:
                self.start(name)
            return self.wait_ready(timeout_s, cancel)
        except BaseException:
            self.close()
            raise

    def first_dead(self) -> ServiceProcess | None:
        return next((svc for svc in self.services.values() if not svc.alive()), None)

    def close(self) -> None:
        stop_all(list(self.services.values()))
