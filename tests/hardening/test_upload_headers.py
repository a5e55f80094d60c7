"""A JPEG whose header is 60,000 empty markers (issue 33, finding 12): PIL reads them one by one (~0.3 s an
upload), which must not happen on the gateway's event loop: probes and other requests keep answering.

Before: such uploads under 256 KiB were planned on the event loop; 48 of them took 7.7 s against 0.5 s.
"""

from __future__ import annotations

import io
import statistics
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import httpx
import numpy as np
import pytest
from PIL import Image

from tests.helpers import shared_stack
from tests.helpers.http import search

pytestmark = pytest.mark.stack
UPLOADS = 24


def _many_markers() -> bytes:
    """A 64 px JPEG with 60,000 empty comment segments before its tables, its scan cut short (so it is
    refused after its header was read: the test measures the header, not a search)."""
    out = io.BytesIO()
    Image.fromarray(np.full((64, 64, 3), 90, np.uint8)).save(out, "JPEG")
    plain = out.getvalue()
    data = plain[:2] + b"\xff\xfe\x00\x02" * 60_000 + plain[2:-40]
    assert len(data) < 256 * 1024  # small enough to have been planned on the event loop
    return data


def test_uploads_with_60000_jpeg_markers_do_not_stall_the_event_loop() -> None:
    base = shared_stack().gateway_url
    data = _many_markers()
    done = threading.Event()
    probes: list[float] = []

    def probe() -> None:
        while not done.is_set():
            t0 = time.perf_counter()
            assert httpx.get(base + "/livez", trust_env=False, timeout=30).status_code == 200
            probes.append(time.perf_counter() - t0)

    prober = threading.Thread(target=probe)
    prober.start()
    try:
        with ThreadPoolExecutor(8) as pool:
            statuses = list(pool.map(lambda _: search(base, data, timeout=120).status_code, range(UPLOADS)))
    finally:
        done.set()
        prober.join()
    assert set(statuses) == {415}, statuses  # read, planned, refused as truncated when decoded
    assert len(probes) >= 3, probes
    worst = max(probes)
    assert worst < 1.0, f"/livez took up to {worst:.2f} s (median {statistics.median(probes):.3f} s)"
