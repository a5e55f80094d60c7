"""Running the `imgsearch` command line of the checkout under test (not whatever is on PATH)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any


def imgsearch_cmd(*args: str) -> list[str]:
    """argv for `imgsearch ARGS...` run from this checkout's sources."""
    return [sys.executable, "-m", "services.cli", *args]


def build_index(catalog: Path, out: Path, embedder: str) -> dict[str, Any]:
    """Run `imgsearch index build --embedder EMBEDDER` into the folder `out`; return the published manifest."""
    run = subprocess.run(
        imgsearch_cmd(
            "index", "build", "--catalog", str(catalog), "--out", out.as_uri(), "--embedder", embedder, "--no-progress"
        ),
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert run.returncode == 0, run.stderr[-3000:]
    show = subprocess.run(imgsearch_cmd("index", "show", str(out), "--json"), capture_output=True, timeout=60)
    manifest: dict[str, Any] = json.loads(show.stdout)
    return manifest
