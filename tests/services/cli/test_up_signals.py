"""`imgsearch up`'s stop signal: a signal that lands while the main thread holds the stop event's lock (as it
does inside `Event.wait`) must still stop it, not deadlock."""

from __future__ import annotations

import subprocess
import sys
import textwrap

from tests.helpers.paths import REPO

# Hold the event's lock on the main thread, receive SIGTERM twice and SIGINT there, then let go: the event
# must be set within a second. With the handler calling `Event.set` itself, this blocks for ever.
SCRIPT = textwrap.dedent(
    """
    import os, signal
    from services.cli.up import _stop_event
    stop = _stop_event()
    with stop._cond:
        for sig in (signal.SIGTERM, signal.SIGTERM, signal.SIGINT):
            os.kill(os.getpid(), sig)
    print("stopped" if stop.wait(1.0) else "not stopped", flush=True)
    """
)


def test_signals_landing_while_the_stop_event_is_locked_still_stop_up() -> None:
    try:
        done = subprocess.run([sys.executable, "-c", SCRIPT], cwd=REPO, capture_output=True, text=True, timeout=20)
    except subprocess.TimeoutExpired as exc:
        raise AssertionError("the signal handler deadlocked on the stop event's lock") from exc
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "stopped"
