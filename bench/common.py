"""Shared helpers of bench/e2e.py, bench/rebuild.py and bench/memory.py.

- `demo_data(items)`: a Fashion-MNIST demo catalog + published index, built once (the same code path as
  `imgsearch up`) and cached under /tmp/imgsearch-bench, keyed by item count, embedder sha256 and the demo's
  rows (`DEMO_FORMAT`).
- `query_photos(n)`: the benchmark's photo set, as encoded bytes: every real photo in tests/data/photos and
  services/static/samples, plus `n` Fashion-MNIST test-split items rendered as shopper photos (JPEG).
- `start_stack`: the four services as separate processes on 127.0.0.1 (services.stack.LocalStack, the
  flags that `imgsearch up` gives them), ready when it returns.
- `pct`, `table`, `machine`: percentiles, a plain-text table, and what the machine was doing.
- `arg_parser(__doc__)`: a bench's command line, its docstring as `--help`.
"""

from __future__ import annotations

import argparse
import fcntl
import io
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from services.stack import LocalStack, embedder_sha256  # noqa: E402

CACHE = Path(os.environ.get("IMGSEARCH_BENCH_CACHE", "/tmp/imgsearch-bench"))
PHOTO_DIRS = (REPO / "tests" / "data" / "photos", REPO / "services" / "static" / "samples")


def arg_parser(doc: str | None) -> argparse.ArgumentParser:
    """A bench's command line; `--help` shows its docstring as written (how to run it, what it measures)."""
    return argparse.ArgumentParser(description=doc, formatter_class=argparse.RawDescriptionHelpFormatter)


@contextmanager
def _locked(name: str) -> Iterator[None]:
    """One builder at a time (several benches may start together)."""
    CACHE.mkdir(parents=True, exist_ok=True)
    with open(CACHE / f".{name}.lock", "w") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        yield


def demo_data(items: int, embedder: Path | None = None) -> Path:
    """A data folder with catalog/ and a published index/ of the first `items` FMNIST train images.

    Built with the repository's default embedder, or with the model folder `embedder` when given.
    """
    from ann_index.catalog.demo import DEMO_FORMAT
    from imgcore.card import load_card
    from services.demo_index import build_demo_index, has_index

    sha = embedder_sha256() if embedder is None else str(load_card(embedder)["sha256"])
    data = CACHE / f"demo-{items}-{str(sha)[:12]}-{DEMO_FORMAT}"
    with _locked(data.name):
        if not has_index(data):
            t0 = time.monotonic()
            print(f"building the demo index ({items} items) into {data} ...", file=sys.stderr, flush=True)
            uri = {} if embedder is None else {"embedder_uri": embedder.as_uri()}
            build_demo_index(data, limit=items, progress=False, **uri)
            print(f"  built in {time.monotonic() - t0:.0f}s", file=sys.stderr, flush=True)
    return data


def index_version_dir(data: Path) -> Path:
    """The published version folder of a demo data folder (a file:// store is its own local copy)."""
    root = data / "index"
    return root / "versions" / (root / "CURRENT").read_text().strip()


def _jpeg(image: np.ndarray, quality: int = 90) -> bytes:
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(image).save(buf, "JPEG", quality=quality)
    return buf.getvalue()


def query_photos(n_fmnist: int, seed: int = 0) -> list[tuple[str, bytes]]:
    """(name, encoded bytes): the real photos, then `n_fmnist` shop-style FMNIST photos (held-out test split)."""
    from imgcore.fmnist import CLASS_NAMES, load_fmnist, render_shop_photo

    out = [(p.name, p.read_bytes()) for d in PHOTO_DIRS for p in sorted(d.glob("*.jpg"))]
    images, labels = load_fmnist("test")
    rng = np.random.default_rng(seed)
    for i in range(n_fmnist):
        slug = CLASS_NAMES[int(labels[i])].lower().replace("/", "-").replace(" ", "-")
        out.append((f"fmnist-test-{i:05d}-{slug}.jpg", _jpeg(render_shop_photo(images[i], rng, size=224))))
    return out


def is_real(name: str) -> bool:
    return not name.startswith("fmnist-")


def pct(values: Sequence[float]) -> dict[str, float]:
    """p50/p95/p99 and mean (linear interpolation between samples)."""
    if not values:
        return {"n": 0, "p50": float("nan"), "p95": float("nan"), "p99": float("nan"), "mean": float("nan")}
    arr = np.asarray(values, dtype=np.float64)
    p50, p95, p99 = np.percentile(arr, [50, 95, 99])
    return {"n": len(values), "p50": float(p50), "p95": float(p95), "p99": float(p99), "mean": float(arr.mean())}


def table(headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    """A left/right aligned plain-text table (numbers right-aligned, floats with 2 decimals)."""

    def fmt(v: Any) -> str:
        if isinstance(v, float):
            return "nan" if v != v else f"{v:.2f}"
        return str(v)

    cells = [[fmt(v) for v in row] for row in rows]
    widths = [max(len(h), *(len(r[i]) for r in cells)) if cells else len(h) for i, h in enumerate(headers)]
    numeric = [all(isinstance(row[i], int | float) for row in rows) for i in range(len(headers))]

    def line(values: Sequence[str]) -> str:
        return "  ".join(v.rjust(w) if num else v.ljust(w) for v, w, num in zip(values, widths, numeric, strict=True))

    return "\n".join([line(headers), line(["-" * w for w in widths]), *(line(r) for r in cells)])


def _busy_others(min_cpu: float = 20.0) -> list[str]:
    """Other processes using a lot of CPU right now (a shared machine's noise, for the record)."""
    try:
        out = subprocess.run(
            ["ps", "-eo", "pid,ppid,pcpu,args", "--sort=-pcpu"], capture_output=True, text=True, timeout=5
        ).stdout.splitlines()[1:]
    except (OSError, subprocess.SubprocessError):
        return []
    mine = {os.getpid()}
    busy = []
    for row in out:
        parts = row.split(None, 3)
        if len(parts) < 4:
            continue
        pid, ppid, cpu, args = int(parts[0]), int(parts[1]), float(parts[2]), parts[3]
        if pid in mine or ppid in mine or cpu < min_cpu:
            continue
        busy.append(f"{cpu:.0f}% {args[:80]}")
    return busy


def machine() -> dict[str, Any]:
    """CPU model, cores, load average and other busy processes."""
    model = ""
    try:
        for row in subprocess.run(["lscpu"], capture_output=True, text=True, timeout=5).stdout.splitlines():
            if row.startswith("Model name:"):
                model = row.split(":", 1)[1].strip()
    except (OSError, subprocess.SubprocessError):
        pass
    import onnxruntime

    return {
        "cpu": model,
        "cores": os.cpu_count(),
        "loadavg": [round(x, 2) for x in os.getloadavg()],
        "busy_others": _busy_others(),
        "onnxruntime": onnxruntime.__version__,
        "python": sys.version.split()[0],
    }


def emit(result: dict[str, Any]) -> None:
    """The last line of every bench: one JSON object."""
    print(json.dumps(result, sort_keys=True, default=float), flush=True)


def median(values: Sequence[float]) -> float:
    return float(statistics.median(values)) if values else float("nan")


class Stack(LocalStack):
    """A local stack whose folder (logs, index download) is removed when it stops."""

    def close(self) -> None:
        super().close()
        shutil.rmtree(self.root, ignore_errors=True)


def start_stack(
    data: Path, extra: dict[str, list[str]] | None = None, env: dict[str, str] | None = None, timeout_s: float = 180.0
) -> Stack:
    """The stack of `imgsearch up` on `data` (its own index download folder); ready when this returns."""
    root = Path(tempfile.mkdtemp(prefix="stack-", dir=CACHE))
    private = {"index": ["--local-dir", str(root / "index-cache")]}
    stack = Stack(data, root, private, extra or {}, env=env)
    stack.up(timeout_s)
    return stack


def pss_kib(pid: int) -> dict[str, int]:
    """Pss, Rss and the shared/private split of one process, from /proc/PID/smaps_rollup (KiB)."""
    out: dict[str, int] = {}
    for row in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines()[1:]:
        key, _, rest = row.partition(":")
        parts = rest.split()
        if parts and parts[-1] == "kB":
            out[key.strip()] = int(parts[0])
    return out
