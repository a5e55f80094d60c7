"""Small HTTP helpers for the integration tests."""

from __future__ import annotations

import io
from typing import Any

import httpx
import numpy as np
from PIL import Image


def encode(image: np.ndarray, fmt: str = "PNG", **save: Any) -> bytes:
    """Encode an HxWx3 (or HxW) uint8 array."""
    buf = io.BytesIO()
    Image.fromarray(image).save(buf, fmt, **save)
    return buf.getvalue()


def search(base: str, data: bytes, *, timeout: float = 30.0, **params: Any) -> httpx.Response:
    """POST an image to the gateway's /v1/search."""
    return httpx.post(
        base + "/v1/search", params=params, files={"image": ("photo", data)}, timeout=timeout, trust_env=False
    )


def metric_value(text: str, name: str, **labels: str) -> float:
    """The value of one sample in Prometheus text format (0 when absent)."""
    want = ",".join(f'{k}="{v}"' for k, v in sorted(labels.items()))
    for line in text.splitlines():
        if line.startswith("#") or " " not in line:
            continue
        key, value = line.rsplit(" ", 1)
        if "{" in key:
            metric, label_text = key[:-1].split("{", 1)
            got = ",".join(sorted(label_text.split(","))) if label_text else ""
        else:
            metric, got = key, ""
        if metric == name and got == want:
            return float(value)
    return 0.0
