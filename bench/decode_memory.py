"""Peak memory of the gateway decoding near-limit uploads, 4 at a time, per kind of image.

    python bench/decode_memory.py [--side 6300] [--concurrency 4] [--kinds png16,png_rgba,...]

Makes one small but huge image per kind (`--side` squared pixels, just under the 40 MP limit: a smooth
gradient with some texture, so the files stay small as an attacker's would), starts a real stack
(services.stack, the flags `imgsearch up` gives), and per kind starts a fresh gateway process, posts the
image `--concurrency` times at once to /v1/search and reads the gateway's peak RSS (VmHWM in
/proc/PID/status). Prints a table (kind, file size, peak RSS, HTTP statuses, the decoder's own estimate
of one decode's peak) and, last, one JSON object: `{"peak_mib": {kind: MiB}, "max_peak_mib": ...}`.
"""

from __future__ import annotations

import io
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import numpy as np
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import arg_parser, demo_data, emit, machine, table  # noqa: E402

from services.stack import LocalStack  # noqa: E402

LIMIT_MIB = 512  # the gateway's memory limit in k8s/base/gateway/deployment.yaml


def _gradient(side: int, channels: int) -> np.ndarray:
    """side x side x channels uint8: smooth ramps plus a faint 8-px checker (compresses well, not to nothing)."""
    ramp = np.linspace(0, 255, side, dtype=np.float32)
    checker = ((np.arange(side) // 8) % 2 * 6).astype(np.float32)
    planes = []
    for c in range(channels):
        row = ramp if c % 2 == 0 else ramp[::-1]
        planes.append(np.add.outer(row * 0.5 + checker, ramp * 0.5 * (c + 1) / channels).clip(0, 255))
    return np.stack(planes, axis=2).astype(np.uint8)


def _save(img: Image.Image, fmt: str, **params: Any) -> bytes:
    buf = io.BytesIO()
    img.save(buf, fmt, **params)
    return buf.getvalue()


def _png16(side: int) -> bytes:
    grey = (_gradient(side, 1)[:, :, 0].astype(np.uint16) * 257).astype(np.uint16)
    return _save(Image.fromarray(grey), "PNG", compress_level=1)


def _png_rgba(side: int) -> bytes:
    rgba = _gradient(side, 4)
    rgba[:, :, 3] = np.where(rgba[:, :, 3] > 128, 255, 0)
    return _save(Image.fromarray(rgba), "PNG", compress_level=1)


def _palette(side: int, colours: int) -> Image.Image:
    """A palette image made directly (quantizing 40 MP would take longer than the test itself)."""
    img = Image.fromarray((_gradient(side, 1)[:, :, 0] // (256 // colours)).astype(np.uint8))
    ramp = np.linspace(0, 255, colours, dtype=np.uint8)
    img.putpalette(np.stack([ramp, ramp[::-1], ramp // 2], axis=1).tobytes())  # L + palette: mode P
    return img


def _png_palette(side: int) -> bytes:
    return _save(_palette(side, 64), "PNG", compress_level=1)


def _png_grey(side: int) -> bytes:
    return _save(Image.fromarray(_gradient(side, 1)[:, :, 0]), "PNG", compress_level=1)


def _jpeg(side: int, progressive: bool) -> bytes:
    return _save(Image.fromarray(_gradient(side, 3)), "JPEG", quality=75, progressive=progressive)


def _webp(side: int) -> bytes:
    return _save(Image.fromarray(_gradient(side, 3)), "WEBP", quality=50, method=0)


def _gif(side: int) -> bytes:
    return _save(_palette(side, 32), "GIF")


def _tiff(side: int) -> bytes:
    return _save(Image.fromarray(_gradient(side, 3)), "TIFF", compression="tiff_adobe_deflate")


KINDS: dict[str, Callable[[int], bytes]] = {
    "png16": _png16,
    "png_rgba": _png_rgba,
    "png_palette": _png_palette,
    "png_grey": _png_grey,
    "jpeg_baseline": lambda side: _jpeg(side, False),
    "jpeg_progressive": lambda side: _jpeg(side, True),
    "webp": _webp,
    "gif": _gif,
    "tiff_deflate": _tiff,
}


def near_limit_image(kind: str, side: int) -> bytes:
    """The encoded `side` x `side` image of one kind."""
    return KINDS[kind](side)


def peak_rss_mib(pid: int) -> float:
    """The process's peak resident set size so far (VmHWM), MiB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError(f"no VmHWM for pid {pid}")


def post_concurrently(url: str, data: bytes, n: int, timeout_s: float = 120.0) -> list[int]:
    """POST the image to /v1/search `n` times at once (threads released together); the statuses (0: no
    answer, 1: an error without a JSON `{"error": ...}` body)."""
    statuses: list[int] = []
    start = threading.Barrier(n)

    def one() -> None:
        start.wait()
        try:
            files = {"image": ("upload", data, "application/octet-stream")}
            resp = httpx.post(url + "/v1/search", files=files, timeout=timeout_s, trust_env=False)
            # A refusal must say why in JSON; one that does not is counted as status 1.
            refused_well = resp.status_code == 200 or "error" in resp.json()
            statuses.append(resp.status_code if refused_well else 1)
        except (httpx.HTTPError, ValueError):
            statuses.append(0)

    threads = [threading.Thread(target=one) for _ in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return sorted(statuses)


def measure_kind(stack: LocalStack, data: bytes, concurrency: int) -> dict[str, Any]:
    """A fresh gateway process; its peak RSS (MiB) after `concurrency` concurrent uploads of `data`."""
    if "gateway" in stack.services:
        stack.stop("gateway")
    gateway = stack.start("gateway")
    gateway.wait_ready(60)
    idle = peak_rss_mib(gateway.proc.pid)
    t0 = time.perf_counter()
    statuses = post_concurrently(gateway.url, data, concurrency)
    seconds = time.perf_counter() - t0
    alive = gateway.alive()
    peak = peak_rss_mib(gateway.proc.pid) if alive else float("nan")
    return {"idle_mib": idle, "peak_mib": peak, "statuses": statuses, "seconds": seconds, "alive": alive}


def estimate_mib(data: bytes, max_side: int) -> float:
    """The decoder's own estimate of one decode's peak (what the gateway reserves from its budget)."""
    from imgcore.image import plan_decode

    return plan_decode(data, max_side=max_side).peak_bytes / 2**20


def main() -> None:
    parser = arg_parser(__doc__)
    parser.add_argument("--side", type=int, default=6300)
    parser.add_argument("--concurrency", type=int, default=4)
    parser.add_argument("--kinds", default=",".join(KINDS))
    parser.add_argument("--items", type=int, default=3000, help="demo index size (cached)")
    args = parser.parse_args()
    kinds = [k for k in args.kinds.split(",") if k]
    rows, results = [], {}
    with tempfile.TemporaryDirectory(prefix="decode-memory-") as tmp:
        stack = LocalStack(demo_data(args.items), Path(tmp))
        try:
            stack.up()
            for kind in kinds:
                data = near_limit_image(kind, args.side)
                got = measure_kind(stack, data, args.concurrency)
                results[kind] = got
                statuses = " ".join(f"{n}x{code}" for code, n in sorted(Counter(got["statuses"]).items()))
                rows.append(
                    [
                        kind,
                        round(len(data) / 1024),
                        round(estimate_mib(data, 2048)),
                        round(got["idle_mib"]),
                        round(got["peak_mib"]),
                        statuses,
                        round(got["seconds"], 1),
                    ]
                )
        finally:
            stack.close()
    headers = ["kind", "file KiB", "estimate MiB", "idle MiB", "peak MiB", "statuses", "seconds"]
    print(f"{args.side}x{args.side} px, {args.concurrency} concurrent uploads per kind, fresh gateway per kind")
    print(table(headers, rows))
    peaks = {kind: round(r["peak_mib"], 1) for kind, r in results.items()}
    emit(
        {
            "side": args.side,
            "concurrency": args.concurrency,
            "peak_mib": peaks,
            "limit_mib": LIMIT_MIB,
            "max_peak_mib": max(peaks.values()),
            "statuses": {k: r["statuses"] for k, r in results.items()},
            "machine": machine(),
        }
    )


if __name__ == "__main__":
    main()
