"""Issue 13, finding 1: one small upload could exhaust a pod's memory while being decoded.

A 77 kB 16-bit PNG of 6300x6300 took the gateway to 1.15 GiB. Now each decode reserves its planned peak
from the service's decode memory budget first (services/common/decode_budget.py); the excess waits, then
gets 503. The budget's rules are checked here on a real event loop with real threads; the attack itself
(`stack`) posts near-limit images of each kind, 4 at once, to a real gateway process and reads its peak
RSS from /proc.
"""

from __future__ import annotations

import asyncio
import importlib.util
import io
import threading
import time
from pathlib import Path
from types import ModuleType

import httpx
import numpy as np
import pytest
from PIL import Image

from imgcore.errors import ImageTooLarge
from imgcore.image import plan_decode
from services.common.decode_budget import DecodeBudget, DecodeBusy
from services.common.malloc import IDLE_TRIM_S
from services.common.settings import GatewaySettings
from tests.helpers.http import metric_value
from tests.helpers.stack import Stack, running_stack
from tests.helpers.wait import wait_until

REPO = Path(__file__).resolve().parents[2]
GATEWAY_LIMIT_MIB = 512  # k8s/base/gateway/deployment.yaml


def _bench() -> ModuleType:
    """bench/decode_memory.py: the same images and measurement as the benchmark."""
    spec = importlib.util.spec_from_file_location("decode_memory", REPO / "bench" / "decode_memory.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _holding(started: list[float], release: threading.Event) -> str:
    started.append(time.monotonic())
    release.wait(10)
    return "done"


def _held(budget: DecodeBudget, nbytes: int) -> tuple[asyncio.Future[str], threading.Event, list[float]]:
    """A decode holding `nbytes` of `budget` until the event is set; the times decodes started."""
    release = threading.Event()
    started: list[float] = []
    return asyncio.ensure_future(budget.run(nbytes, _holding, started, release)), release, started


def test_decodes_run_only_while_their_reservations_fit_and_in_arrival_order() -> None:
    async def scenario() -> tuple[dict[str, tuple[float, float]], int]:
        budget = DecodeBudget(100, wait_s=5)
        spans: dict[str, tuple[float, float]] = {}
        peak = 0

        def work(name: str) -> str:
            nonlocal peak
            peak = max(peak, budget.reserved)
            start = time.monotonic()
            time.sleep(0.1)
            spans[name] = (start, time.monotonic())
            return name

        jobs = [budget.run(60, work, "a"), budget.run(60, work, "b"), budget.run(30, work, "c")]
        assert await asyncio.gather(*jobs) == ["a", "b", "c"]
        assert budget.reserved == 0
        return spans, peak

    spans, peak = asyncio.run(scenario())
    assert peak <= 100
    assert spans["b"][0] >= spans["a"][1]  # 60 + 60 never ran together
    assert spans["c"][0] >= spans["a"][1]  # c fitted beside a, but b arrived first: c waited its turn


def test_a_decode_that_waits_past_the_timeout_gets_503_busy() -> None:
    async def scenario() -> None:
        budget = DecodeBudget(100, wait_s=0.2)
        first, release, started = _held(budget, 80)
        await asyncio.sleep(0.05)
        with pytest.raises(DecodeBusy) as info:
            await budget.run(40, _holding, started, release)
        assert info.value.status == 503 and info.value.reason == "decode_busy"
        assert len(started) == 1  # the refused one never ran
        release.set()
        assert await first == "done"
        assert budget.reserved == 0

    asyncio.run(scenario())


def test_a_decode_larger_than_the_whole_budget_gets_413() -> None:
    async def scenario() -> None:
        with pytest.raises(ImageTooLarge) as info:
            await DecodeBudget(100, wait_s=5).run(101, time.sleep, 0)
        assert info.value.status == 413 and info.value.reason == "decode_memory"

    asyncio.run(scenario())


def test_a_cancelled_request_keeps_its_reservation_until_its_thread_has_finished() -> None:
    async def scenario() -> None:
        budget = DecodeBudget(100, wait_s=5)
        task, release, _ = _held(budget, 70)
        await asyncio.sleep(0.05)
        task.cancel()
        await asyncio.sleep(0.05)
        assert budget.reserved == 70  # the thread still holds the image's memory
        release.set()
        for _ in range(100):
            if budget.reserved == 0:
                break
            await asyncio.sleep(0.02)
        assert budget.reserved == 0

    asyncio.run(scenario())


def test_default_gateway_budget_fits_a_near_limit_rgba_png_but_leaves_the_pod_most_of_its_limit() -> None:
    settings = GatewaySettings()
    buf = io.BytesIO()
    Image.new("RGBA", (6300, 6300), (10, 20, 30, 128)).save(buf, "PNG", compress_level=1)
    plan = plan_decode(buf.getvalue(), settings.uploads.decode_limits(), settings.search.forward_max_side)
    assert plan.peak_bytes < settings.decode.memory_mib * 2**20
    assert settings.decode.memory_mib <= GATEWAY_LIMIT_MIB * 7 // 16


# The attack, for real: per kind a fresh gateway process, 4 concurrent near-limit uploads.
KINDS = [
    "png16",
    "png_rgba",
    "png_palette",
    "png_grey",
    "jpeg_baseline",
    "jpeg_progressive",
    "webp",
    "gif",
    "tiff_deflate",
]


@pytest.fixture(scope="module")
def stack() -> Stack:
    with running_stack() as running:
        yield running  # type: ignore[misc]


@pytest.mark.stack
@pytest.mark.parametrize("kind", KINDS)
def test_four_concurrent_near_limit_uploads_keep_the_gateway_under_its_pod_limit(stack: Stack, kind: str) -> None:
    bench = _bench()
    data = bench.near_limit_image(kind, 6300)  # 39.7 MP, just under the 40 MP limit
    got = bench.measure_kind(stack, data, 4)
    assert got["alive"], f"{kind}: the gateway died:\n{stack.services['gateway'].log_tail()}"
    assert got["peak_mib"] < GATEWAY_LIMIT_MIB, f"{kind}: peak RSS {got['peak_mib']:.0f} MiB"
    if kind == "webp":  # PIL's WebP reader needs 16 B/px: more than the whole budget at this size
        assert got["statuses"] == [413] * 4
    else:
        # 503: waited too long for decode memory; 504: decoded, but a loaded machine's embedder was slow
        assert set(got["statuses"]) <= {200, 503, 504} and set(got["statuses"]) != {503}, got["statuses"]
    metrics = httpx.get(stack.gateway_url + "/metrics", timeout=10, trust_env=False).text
    busy = got["statuses"].count(503)
    assert not busy or f'imgsearch_rejections_total{{reason="decode_busy"}} {busy}.0' in metrics


@pytest.mark.stack
def test_the_query_log_decodes_within_the_same_budget(stack: Stack, tmp_path: Path) -> None:
    """Issue 33, finding 5: the query log re-encoded TIFF/GIF/BMP uploads at full size, outside the budget
    (4 near-limit TIFFs: 608 MiB with the log on, 355 off)."""
    bench = _bench()
    data = bench.near_limit_image("tiff_deflate", 6300)
    off = bench.measure_kind(stack, data, 4)
    plain_args = list(stack.args["gateway"])
    stack.args["gateway"] += ["--query-log-uri", tmp_path.as_uri(), "--query-log-sample-rate=1"]
    stack.args["gateway"] += ["--query-log-batch=1", "--query-log-flush-s=0.2"]
    try:
        on = bench.measure_kind(stack, data, 4)
        gateway = stack.services["gateway"]
        written = on["statuses"].count(200)

        def logged() -> float:
            text = httpx.get(gateway.url + "/metrics", timeout=10, trust_env=False).text
            return sum(metric_value(text, "imgsearch_query_log_records_total", result=r) for r in ("written", "error"))

        wait_until(lambda: logged() == written, 120, service=gateway)
        peak_on = bench.peak_rss_mib(gateway.proc.pid)
    finally:
        stack.args["gateway"] = plain_args
    assert written >= 1 and len(list(tmp_path.glob("queries-*.jsonl"))) >= 1, on
    assert peak_on < off["peak_mib"] + 48, f"peak {peak_on:.0f} MiB with the log on, {off['peak_mib']:.0f} off"


def _mixed_images() -> list[bytes]:
    """Accepted uploads of every decoder path and of several sizes (1.2 to 4 MP and more)."""
    rng = np.random.default_rng(1)
    out = []
    for side, fmt in [(3000, "JPEG"), (1800, "PNG"), (2500, "TIFF"), (1200, "GIF"), (2200, "BMP"), (2600, "WEBP")]:
        height = side * 3 // 4
        coarse = Image.fromarray(rng.integers(0, 256, (height // 8, side // 8, 3), dtype=np.uint8))
        buf = io.BytesIO()
        coarse.resize((side, height)).save(buf, fmt, **({"compression": "tiff_deflate"} if fmt == "TIFF" else {}))
        out.append(buf.getvalue())
    return out


def _anonymous_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("RssAnon:"):
            return int(line.split()[1]) / 1024
    raise AssertionError("no RssAnon")


@pytest.mark.stack
def test_a_sequence_of_accepted_images_does_not_leave_the_gateway_larger(stack: Stack) -> None:
    """Issue 33, finding 5: each decode thread kept its last image in its malloc arena (idle 116 -> 466 MiB
    anonymous across a mixed sequence); the gateway's threads share one malloc arena, which it trims once it
    is idle for a second (services/common/malloc.py `IdleTrim`: 4 MiB grown after it)."""
    stack.stop("gateway")
    gateway = stack.start("gateway")
    gateway.wait_ready(60)
    images = _mixed_images()
    before = _anonymous_mib(gateway.proc.pid)
    for data in images:
        resp = httpx.post(gateway.url + "/v1/search", files={"image": ("i", data)}, timeout=120, trust_env=False)
        assert resp.status_code == 200, resp.text
    deadline = time.monotonic() + IDLE_TRIM_S + 5
    grown = _anonymous_mib(gateway.proc.pid) - before
    while grown >= 32 and time.monotonic() < deadline:
        time.sleep(0.2)
        grown = _anonymous_mib(gateway.proc.pid) - before
    assert grown < 32, f"anonymous memory grew {grown:.0f} MiB from {before:.0f} (default malloc: +79)"
