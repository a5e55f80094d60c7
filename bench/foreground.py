"""foreground_box now vs at a git revision: the same boxes, and the cost of each, side by side in one run.

    python bench/foreground.py [--before 9b5581b] [--shop 200] [--repeats 20]

Photos: every real photo in tests/data/photos, tests/data/people and services/static/samples, at their own
size and scaled to 700 px on the longer side, plus `--shop` Fashion-MNIST TRAIN items rendered as shop photos
(700 px; the crop the rebuild and the search path share). The `before` module is `imgcore/foreground.py` as
committed at `--before`, loaded from git. Reported: photos whose box differs, the largest coordinate
difference in pixels, and the median ms of each (interleaved). Last line: one JSON object.
"""

from __future__ import annotations

import importlib.util
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from types import ModuleType
from typing import Any

import cv2
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import REPO, arg_parser, emit, machine, table  # noqa: E402

from imgcore import foreground  # noqa: E402
from imgcore.fmnist import load_fmnist, render_shop_photo  # noqa: E402
from imgcore.image import decode_image  # noqa: E402

DIRS = ("tests/data/photos", "tests/data/people", "services/static/samples")


def module_at(rev: str) -> ModuleType:
    source = subprocess.run(
        ["git", "-C", str(REPO), "show", f"{rev}:imgcore/foreground.py"], check=True, capture_output=True, text=True
    ).stdout
    path = Path(tempfile.mkdtemp()) / "foreground_before.py"
    path.write_text(source)
    spec = importlib.util.spec_from_file_location("foreground_before", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


def _scaled(image: np.ndarray, side: int) -> np.ndarray:
    h, w = image.shape[:2]
    s = side / max(h, w)
    return cv2.resize(image, (round(w * s), round(h * s)), interpolation=cv2.INTER_AREA)


def photos(shop: int) -> dict[str, np.ndarray]:
    out = {}
    for d in DIRS:
        for path in sorted((REPO / d).rglob("*.jpg")):
            image = decode_image(path.read_bytes())
            out[str(path.relative_to(REPO))] = image
            out[f"{path.relative_to(REPO)}@700"] = _scaled(image, 700)
    items, _ = load_fmnist("train")
    rng = np.random.default_rng(31)
    for i in rng.choice(len(items), shop, replace=False):
        out[f"shop-{int(i)}"] = render_shop_photo(items[i], np.random.default_rng([31, int(i)]), 700)
    return out


def compare(before: Callable[..., Any], now: Callable[..., Any], images: dict[str, np.ndarray]) -> dict[str, Any]:
    differ, worst, found = [], 0.0, 0
    for name, image in images.items():
        a, b = before(image), now(image)
        found += b is not None
        if (a is None) != (b is None):
            differ.append(name)
            worst = float("inf")
        elif a is not None and a != b:
            differ.append(name)
            worst = max(worst, max(abs(x - y) for x, y in zip(a, b, strict=True)))
    return {"photos": len(images), "with_box": found, "differ": differ, "max_px": worst}


def cost(fns: dict[str, Callable[..., Any]], images: list[np.ndarray], repeats: int) -> dict[str, float]:
    times: dict[str, list[float]] = {k: [] for k in fns}
    for _ in range(repeats):
        for key, fn in fns.items():
            t0 = time.perf_counter()
            for image in images:
                fn(image)
            times[key].append((time.perf_counter() - t0) * 1e3 / len(images))
    return {k: round(statistics.median(v), 3) for k, v in times.items()}


def main() -> None:
    ap = arg_parser(__doc__)
    ap.add_argument("--before", default="9b5581b", help="git revision of the reference (default: issue 31's base)")
    ap.add_argument("--shop", type=int, default=200)
    ap.add_argument("--repeats", type=int, default=20)
    args = ap.parse_args()
    fns = {"before": module_at(args.before).foreground_box, "now": foreground.foreground_box}
    images = photos(args.shop)
    result: dict[str, Any] = {
        "bench": "foreground",
        "before": args.before,
        **compare(fns["before"], fns["now"], images),
    }
    groups = {
        "700 px real photos": [im for n, im in images.items() if n.endswith("@700")],
        "700 px shop photos": [im for n, im in images.items() if n.startswith("shop-")][:40],
    }
    result["ms"] = {g: cost(fns, ims, args.repeats) for g, ims in groups.items()}
    rows = [[g, ms["before"], ms["now"], round(ms["before"] / ms["now"], 2)] for g, ms in result["ms"].items()]
    print(table(["photos", "before ms", "now ms", "speedup"], rows))
    print(f"{len(result['differ'])} of {result['photos']} boxes differ, by at most {result['max_px']} px")
    result["machine"] = machine()
    emit(result)


if __name__ == "__main__":
    main()
