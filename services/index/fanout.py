"""What one index worker does that every worker must do: `/admin/reload` orders, passed through shared files.

Pre-forked workers (services/index/workers.py) share one port, so a request reaches one of them. Each
worker runs its own holder and CURRENT poller, so a publish reaches all of them by itself; an operator's
reload (a pinned version, a forced reload) is what must be passed on. The worker that received it
reloads, then writes the order (the version it loaded, `force`) to `reload.json` in the group's folder;
the others follow it within `FOLLOW_S`. Each worker also writes the version it serves to
`served-<pid>`, so the first one answers only once every worker serves the new version (or says which
do not, after `WAIT_S`).

Without a group (one process, the default), `start_following` does nothing and `announce` returns the
reload's result unchanged.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from imgcore.errors import ImgSearchError
from services.index.holder import IndexHolder

log = logging.getLogger("imgsearch.index")

FOLLOW_S = 0.2  # how often a worker looks for a new order and reports what it serves
WAIT_S = 60.0  # how long the receiving worker waits for the others to serve the ordered version


@dataclass(frozen=True)
class WorkerGroup:
    """The folder pre-forked workers share, and how many of them there are."""

    folder: Path
    size: int

    def write_order(self, version: str, force: bool) -> int:
        """Publish a reload order; its sequence number (unique: nanoseconds since the epoch)."""
        seq = time.time_ns()
        order = {"seq": seq, "version": version, "force": force, "pid": os.getpid()}
        _write_atomic(self.folder / "reload.json", json.dumps(order))
        return seq

    def read_order(self) -> dict[str, Any] | None:
        with contextlib.suppress(OSError, ValueError):
            order: dict[str, Any] = json.loads((self.folder / "reload.json").read_text())
            return order
        return None

    def report(self, version: str | None) -> None:
        _write_atomic(self.folder / f"served-{os.getpid()}", version or "")

    def serving(self) -> dict[int, str]:
        """The version each worker last reported, by pid."""
        out = {}
        for path in self.folder.glob("served-*"):
            with contextlib.suppress(OSError, ValueError):
                out[int(path.name.removeprefix("served-"))] = path.read_text()
        return out


GROUP: WorkerGroup | None = None  # set in each forked worker before its app starts


def _write_atomic(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}")
    tmp.write_text(text)
    tmp.replace(path)


def start_following(holder: IndexHolder) -> asyncio.Task[None] | None:
    """In a worker of a group: follow the reload orders of the others (a task), else None."""
    return asyncio.create_task(_follow(holder, GROUP)) if GROUP is not None else None


async def _follow(holder: IndexHolder, group: WorkerGroup) -> None:
    start = group.read_order()
    seen = start["seq"] if start else None  # orders given before this worker started are not repeated
    reported: str | None = None
    while True:
        order = group.read_order()
        if order is not None and order["seq"] != seen:
            seen = order["seq"]
            if order.get("pid") != os.getpid():  # the worker that gave it has reloaded already
                await _obey(holder, order)
        version = holder.reader.version if holder.reader is not None else None
        if version != reported:
            await asyncio.to_thread(group.report, version)
            reported = version
        await asyncio.sleep(FOLLOW_S)


async def _obey(holder: IndexHolder, order: dict[str, Any]) -> None:
    try:
        await holder.reload(str(order["version"]), force=bool(order["force"]))
    except ImgSearchError as exc:  # logged by the holder; this worker keeps serving what it had
        log.warning("reload order for %s not followed: %s", order["version"], exc.message)


async def announce(result: dict[str, Any], force: bool) -> dict[str, Any]:
    """After this worker's successful reload: order the others to do the same, wait until they serve it."""
    group = GROUP
    if group is None:
        return result
    version = str(result["version"])
    await asyncio.to_thread(group.report, version)
    await asyncio.to_thread(group.write_order, version, force)
    deadline = time.monotonic() + WAIT_S
    while True:
        serving = await asyncio.to_thread(group.serving)
        behind = sorted(pid for pid, v in serving.items() if v != version)
        if (len(serving) >= group.size and not behind) or time.monotonic() > deadline:
            break
        await asyncio.sleep(FOLLOW_S)
    return {**result, "workers": {"count": group.size, "serving": len(serving) - len(behind), "behind": behind}}
