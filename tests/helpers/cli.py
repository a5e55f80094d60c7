"""Running the `imgsearch` command line of the checkout under test (not whatever is on PATH)."""

from __future__ import annotations

import sys


def imgsearch_cmd(*args: str) -> list[str]:
    """argv for `imgsearch ARGS...` run from this checkout's sources."""
    return [sys.executable, "-m", "services.cli", *args]
