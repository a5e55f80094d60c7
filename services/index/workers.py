"""`imgsearch serve index --workers N`: N pre-forked worker processes on one port, sharing their memory.

The parent imports and builds the app (FastAPI, numpy, annoy...), loads the current index, binds the
port and freezes its heap (`gc.freeze()`: the collector never writes to those objects again, so their
pages stay shared), then forks the workers. The imported modules and the loaded index are then shared
copy-on-write instead of a private copy per process (bench/memory.py: ~46 MiB of private heap per separate
process). Each worker runs uvicorn on the inherited socket with its own copy of the app: its own holder,
CURRENT poller and reload-order follower (services/index/fanout.py), so a publish and an `/admin/reload`
reach every worker. Prometheus runs in multiprocess mode (services/common/metrics_mp.py), so /metrics,
answered by any worker, shows all of them.

The parent only waits: SIGTERM/SIGINT are passed on to the workers; when one dies unexpectedly, the others
are stopped and the parent exits non-zero, so the orchestrator restarts the whole group.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import gc
import logging
import os
import shutil
import signal
import socket
import sys
import tempfile
from pathlib import Path
from typing import Any

from services.common.settings import IndexSettings

log = logging.getLogger("imgsearch.index")
GROUP_ENV = "IMGSEARCH_WORKER_GROUP_DIR"  # set by the command for itself, not a setting
METRICS_ENV = "PROMETHEUS_MULTIPROC_DIR"  # prometheus_client's own
_PR_SET_PDEATHSIG = 1


def run_workers(settings: IndexSettings) -> int:
    """Serve the index with `settings.workers` pre-forked workers until SIGTERM/SIGINT; the exit status."""
    folder = os.environ.get(GROUP_ENV)
    if folder is None:
        # prometheus_client picks its value class when it is imported, and the CLI has imported it: run
        # this command again in a fresh interpreter that finds the multiprocess folder set.
        folder = tempfile.mkdtemp(prefix="imgsearch-index-workers-")
        os.makedirs(os.path.join(folder, "metrics"))
        os.environ |= {GROUP_ENV: folder, METRICS_ENV: os.path.join(folder, "metrics")}
        os.execv(sys.executable, sys.orig_argv)
    try:
        return _serve(settings, Path(folder))
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def _serve(settings: IndexSettings, folder: Path) -> int:
    from services.index.fanout import WorkerGroup

    config, sock = _prepare(settings)
    _preload(config.app)
    for path in (folder / "metrics").iterdir():  # the parent's values: each worker writes its own
        path.unlink()
    gc.collect()
    gc.freeze()
    group = WorkerGroup(folder, settings.workers)
    pids = [_fork_worker(config, sock, group) for _ in range(settings.workers)]
    sock.close()
    log.info("index: %d workers on port %d (pids %s)", len(pids), settings.server.port, pids)
    return _supervise(pids)


def _prepare(settings: IndexSettings) -> tuple[Any, socket.socket]:
    """The app built and uvicorn configured (protocol and event loop imported), the port bound."""
    from services.common.server import build_app, uvicorn_config

    config = uvicorn_config(build_app("index", settings), settings)
    config.load()
    with contextlib.suppress(ImportError):
        import uvloop  # noqa: F401  (imported once here, shared by the workers)
    return config, config.bind_socket()


def _preload(app: Any) -> None:
    """Load the current index in the parent, so every worker starts with it mapped and ready."""
    holder = app.state.holder
    try:
        asyncio.run(holder.reload())
    except Exception as exc:  # no index yet, store trouble: each worker's poller keeps trying
        log.warning("index not loaded before forking the workers: %s", exc)


def _fork_worker(config: Any, sock: socket.socket, group: Any) -> int:
    pid = os.fork()
    if pid:
        return pid
    code = 1
    try:  # the worker: never returns into the parent's code
        with contextlib.suppress(OSError, AttributeError):  # stop with the parent, even if it is killed
            ctypes.CDLL("libc.so.6").prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)
        from services.index import fanout

        fanout.GROUP = group
        _restate_gauges(config.app.state.holder)
        import uvicorn

        uvicorn.Server(config).run(sockets=[sock])
        code = 0
    except BaseException:
        log.exception("index worker %d failed", os.getpid())
    finally:
        os._exit(code)


def _restate_gauges(holder: Any) -> None:
    """The index gauges the parent set when it preloaded, in this worker's own metric files."""
    from services.common.metrics import INDEX_INFO, INDEX_ITEMS

    if holder.reader is not None:
        INDEX_INFO.labels(version=holder.reader.version).set(1)
        INDEX_ITEMS.set(holder.reader.count)


def _supervise(pids: list[int]) -> int:
    """Wait for the workers; pass SIGTERM/SIGINT on; if one dies on its own, stop the rest. Exit status."""
    from prometheus_client.multiprocess import mark_process_dead

    alive, state = set(pids), {"stopping": False, "code": 0}

    def stop(signum: int, _frame: object) -> None:
        state["stopping"] = True
        for pid in alive:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGTERM)

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    while alive:
        try:
            pid, status = os.wait()
        except ChildProcessError:
            break
        alive.discard(pid)
        mark_process_dead(pid)
        if not state["stopping"]:
            log.error("index worker %d exited (status %d): stopping the others", pid, status)
            state["code"] = 1
            stop(signal.SIGTERM, None)
    return int(state["code"])
