"""Shadow evaluation (services/gateway/shadow.py) and `imgsearch rollout check`, on real processes.

A second gateway shadows every search (rate 1.0) on a candidate pair that is a copy of production: the
stack's embedder and a second index process on the same published index. Its answers must equal the
stack's own gateway's (shadowing off), and every item must score overlap 1.0; once the candidate index is
killed, callers see nothing change while the shadow errors are counted.
"""

from __future__ import annotations

import socket
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import orjson
import pytest
from pydantic import ValidationError

from services.cli.rollout import SHADOW_SERIES, parse_metrics
from services.common.settings import GatewaySettings
from services.gateway.shadow import rank_biased_overlap
from services.stack import ServiceProcess, free_port, start_service
from tests.helpers import shared_stack
from tests.helpers.cli import imgsearch_cmd
from tests.helpers.http import encode, metric_value
from tests.helpers.wait import wait_until

PHOTOS = Path(__file__).resolve().parents[2] / "data" / "photos"


def test_rbo_is_one_for_equal_lists_and_zero_for_disjoint_ones() -> None:
    # overlap@k, which the shadow exports next to it, is tested with its definition (tests/imgcore/test_retrieval.py)
    ranked = ["a", "b", "c", "d"]
    assert rank_biased_overlap(ranked, list(ranked)) == pytest.approx(1.0)
    assert rank_biased_overlap(ranked, ["x", "y", "z", "w"]) == 0.0
    swapped = rank_biased_overlap(ranked, ["b", "a", "c", "d"])
    tail_swapped = rank_biased_overlap(ranked, ["a", "b", "d", "c"])
    assert swapped is not None and tail_swapped is not None
    assert swapped < tail_swapped < 1.0  # a disagreement at the top costs more than one further down


def test_a_sample_rate_without_a_candidate_pair_is_refused_at_start() -> None:
    with pytest.raises(ValidationError, match="needs both shadow_embedder_url and shadow_index_url"):
        GatewaySettings(shadow_sample_rate=0.5, shadow_embedder_url="http://127.0.0.1:1")
    with pytest.raises(ValidationError, match="less than or equal to 1"):
        GatewaySettings(shadow_sample_rate=1.5, shadow_embedder_url="http://a", shadow_index_url="http://b")
    assert GatewaySettings(shadow_sample_rate=0.5, shadow_embedder_url="http://a", shadow_index_url="http://b")


@dataclass
class Shadowed:
    """The stack's gateway (shadowing off), a gateway shadowing every search, and its candidate index."""

    production: str
    shadowed: str
    gateway: ServiceProcess
    candidate_index: ServiceProcess


@pytest.fixture(scope="module")
def shadowed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Shadowed]:
    stack = shared_stack()
    logs = tmp_path_factory.mktemp("shadow-logs")
    index_args = [*stack.args["index"], "--local-dir", str(logs / "candidate-index-cache")]
    candidate = start_service("index", free_port(), args=index_args, log_path=logs / "candidate-index.log")
    shadow_flags = [
        f"--shadow-embedder-url={stack.url('embedder')}",
        f"--shadow-index-url={candidate.url}",
        "--shadow-sample-rate=1.0",
        "--cache-size=0",  # every search computed, so every one is sampled
        "--detect-timeout-s=60",  # no whole-image fallback from a detector slowed by the load of the test
    ]
    gateway = start_service(
        "gateway", free_port(), args=[*stack.args["gateway"], *shadow_flags], log_path=logs / "gateway.log"
    )
    try:
        assert candidate.wait_ready(120), candidate.log_tail()
        assert gateway.wait_ready(120), gateway.log_tail()
        yield Shadowed(stack.gateway_url, gateway.url, gateway, candidate)
    finally:
        gateway.stop()
        candidate.stop()


def _photos() -> list[tuple[bytes, dict[str, Any]]]:
    real = [(p.read_bytes(), {}) for p in sorted(PHOTOS.glob("*.jpg"))]
    noise = encode(np.random.default_rng(18).integers(0, 256, (96, 128, 3), dtype=np.uint8))
    return [*real, (noise, {}), (real[0][0], {"box": "10,10,200,180", "k": 5})]


def _answer(base: str, data: bytes, params: dict[str, Any], request_id: str | None = None) -> dict[str, Any]:
    headers = {"x-request-id": request_id} if request_id else {}
    resp = httpx.post(
        base + "/v1/search",
        params=params,
        files={"image": ("photo", data)},
        headers=headers,
        timeout=60,
        trust_env=False,
    )
    assert resp.status_code == 200, resp.text
    body: dict[str, Any] = orjson.loads(resp.content)
    del body["timings_ms"], body["cached"]
    return body


def _metrics(base: str) -> str:
    return httpx.get(base + "/metrics", trust_env=False).text


def _shadow_lines(base: str) -> str:
    """The shadow series of a gateway, for a failure message."""
    return "\n".join(line for line in _metrics(base).splitlines() if "shadow" in line and "_bucket" not in line)


def _shadow_count(base: str, result: str) -> float:
    return metric_value(_metrics(base), "imgsearch_shadow_requests_total", result=result)


def _wait_for_shadow(shadowed: Shadowed, result: str, count: float) -> None:
    """Until the shadowing gateway has counted `count` shadow searches with `result` (its queue drained)."""
    wait_until(
        lambda: _shadow_count(shadowed.shadowed, result) == count,
        60,
        service=shadowed.gateway,
        message=lambda: _shadow_lines(shadowed.shadowed),
    )


@pytest.mark.stack
def test_shadowed_answers_equal_unshadowed_and_a_copy_of_production_overlaps_fully(shadowed: Shadowed) -> None:
    before = _metrics(shadowed.shadowed)
    photos = _photos()
    items = 0
    for data, params in photos:
        shadow_answer = _answer(shadowed.shadowed, data, params)
        assert shadow_answer == _answer(shadowed.production, data, params)
        items += sum(1 for item in shadow_answer["items"] if item["results"])
    ok_before = metric_value(before, "imgsearch_shadow_requests_total", result="ok")
    _wait_for_shadow(shadowed, "ok", ok_before + len(photos))
    after = _metrics(shadowed.shadowed)

    def delta(name: str, **labels: str) -> float:
        return metric_value(after, name, **labels) - metric_value(before, name, **labels)

    assert items > len(photos)  # the photos have several items each: every one is compared
    for k in ("1", "5", "10"):
        assert delta("imgsearch_shadow_overlap_count", k=k) == items
        assert delta("imgsearch_shadow_overlap_sum", k=k) == pytest.approx(items)  # every overlap is 1.0
    assert delta("imgsearch_shadow_rbo_sum") == pytest.approx(delta("imgsearch_shadow_rbo_count"))
    assert delta("imgsearch_shadow_seconds_count") == len(photos)
    for result in ("error", "timeout", "dropped"):
        assert delta("imgsearch_shadow_requests_total", result=result) == 0


def _rollout(base: str, *flags: str) -> subprocess.CompletedProcess[str]:
    cmd = imgsearch_cmd("rollout", "check", "--metrics", base + "/metrics", *flags)
    return subprocess.run(cmd, capture_output=True, text=True, timeout=60)


@pytest.mark.stack
def test_rollout_check_promotes_a_copy_of_production_and_holds_on_an_impossible_threshold(
    shadowed: Shadowed,
) -> None:
    data, params = _photos()[0]
    ok_before = _shadow_count(shadowed.shadowed, "ok")
    _answer(shadowed.shadowed, data, params)
    _wait_for_shadow(shadowed, "ok", ok_before + 1)
    index_uri = shared_stack().index_store.as_uri()
    flags = ("--min-samples", "1", "--max-error-rate", "0", "--index-uri", index_uri)
    promote = _rollout(shadowed.shadowed, *flags, "--min-overlap", "1.0")
    assert promote.returncode == 0, promote.stdout + promote.stderr
    assert promote.stdout.strip().splitlines()[-1] == "promote"
    hold = _rollout(shadowed.shadowed, *flags, "--min-samples", "1000000")
    assert hold.returncode == 1, hold.stdout + hold.stderr
    assert hold.stdout.strip().splitlines()[-1].startswith("hold: shadow samples")
    recall = _rollout(shadowed.shadowed, *flags, "--min-recall", "1.01")
    assert recall.returncode == 1 and "index recall@10" in recall.stdout.splitlines()[-1], recall.stdout
    unshadowed = _rollout(shadowed.production, "--min-samples", "1")  # no samples: nothing to promote on
    assert unshadowed.returncode == 1 and "hold:" in unshadowed.stdout, unshadowed.stdout


@pytest.fixture
def prometheus(shadowed: Shadowed, tmp_path: Path) -> Iterator[str]:
    """A real Prometheus scraping the shadowing gateway every second; its base URL."""
    target = shadowed.shadowed.removeprefix("http://")
    config = tmp_path / "prometheus.yml"
    config.write_text(
        "global: {scrape_interval: 1s}\n"
        f"scrape_configs: [{{job_name: gateway, static_configs: [{{targets: ['{target}']}}]}}]\n"
    )
    port = free_port()
    cmd = [
        "prometheus",
        f"--config.file={config}",
        f"--storage.tsdb.path={tmp_path / 'tsdb'}",
        f"--web.listen-address=127.0.0.1:{port}",
    ]
    with open(tmp_path / "prometheus.log", "wb") as log:
        proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        proc.terminate()
        proc.wait(15)


@pytest.mark.stack
def test_rollout_check_reads_the_shadow_series_from_prometheus(shadowed: Shadowed, prometheus: str) -> None:
    data, params = _photos()[0]
    # The module's earlier tests have counted shadow searches already: the count to find in Prometheus is
    # theirs plus this test's own, read once that has landed (read earlier, Prometheus would serve one more).
    expected = _shadow_count(shadowed.shadowed, "ok") + 1
    _answer(shadowed.shadowed, data, params)
    _wait_for_shadow(shadowed, "ok", expected)

    def federated_ok() -> bool:
        resp = httpx.get(prometheus + "/federate", params={"match[]": SHADOW_SERIES}, trust_env=False, timeout=5)
        return resp.status_code == 200 and parse_metrics(resp.text).requests.get("ok") == expected

    wait_until(federated_ok, 60, ignoring=httpx.HTTPError, message="Prometheus never served the shadow series")
    flags = ("--min-samples", str(int(expected)), "--max-error-rate", "0", "--min-overlap", "1.0")
    promote = subprocess.run(
        imgsearch_cmd("rollout", "check", "--prometheus", prometheus, *flags), capture_output=True, text=True
    )
    assert promote.returncode == 0 and promote.stdout.splitlines()[-1] == "promote", promote.stdout + promote.stderr
    more = ("--min-samples", str(int(expected) + 1))
    hold = subprocess.run(
        imgsearch_cmd("rollout", "check", "--prometheus", prometheus, *flags, *more), capture_output=True, text=True
    )
    assert hold.returncode == 1 and hold.stdout.splitlines()[-1].startswith("hold: shadow samples"), hold.stdout


@pytest.mark.stack
def test_killed_candidate_changes_nothing_for_callers_and_is_counted(shadowed: Shadowed) -> None:
    shadowed.candidate_index.proc.kill()  # last test of the module: the candidate stays dead
    shadowed.candidate_index.proc.wait()
    photos = _photos()
    errors_before = _shadow_count(shadowed.shadowed, "error")
    for data, params in photos:
        t0 = time.perf_counter()
        answer = _answer(shadowed.shadowed, data, params)
        elapsed = time.perf_counter() - t0
        assert answer == _answer(shadowed.production, data, params)
        assert elapsed < 10, elapsed  # nothing waited for the candidate's budget (5 s) nor its connect timeout
    _wait_for_shadow(shadowed, "error", errors_before + len(photos))
    text = _metrics(shadowed.shadowed)
    # The candidate's failures carry its own label: production's backend errors (and their alert) stay quiet.
    assert metric_value(text, "imgsearch_backend_errors_total", backend="shadow_index", kind="unavailable") >= len(
        photos
    )
    assert metric_value(text, "imgsearch_backend_errors_total", backend="index", kind="unavailable") == 0
    assert httpx.get(shadowed.shadowed + "/readyz", trust_env=False).status_code == 200


@pytest.mark.stack
def test_a_hung_candidate_fills_the_queue_and_searches_are_dropped_not_delayed(tmp_path: Path) -> None:
    stack = shared_stack()
    with socket.socket() as hung:  # accepts connections (the kernel's backlog) and never answers
        hung.bind(("127.0.0.1", 0))
        hung.listen(64)
        url = f"http://127.0.0.1:{hung.getsockname()[1]}"
        flags = [f"--shadow-embedder-url={url}", f"--shadow-index-url={url}", "--shadow-sample-rate=1.0"]
        flags += ["--shadow-queue-size=1", "--cache-size=0", "--detect-timeout-s=60"]
        gateway = start_service(
            "gateway", free_port(), args=[*stack.args["gateway"], *flags], log_path=tmp_path / "gateway.log"
        )
        try:
            assert gateway.wait_ready(120), gateway.log_tail()
            photos = _photos()
            for i, (data, params) in enumerate(photos):
                t0 = time.perf_counter()
                shadowed_answer = _answer(gateway.url, data, params, request_id=f"shadow-test-{i}")
                assert shadowed_answer == _answer(stack.gateway_url, data, params)
                assert time.perf_counter() - t0 < 5  # the candidate's embed budget (5 s) is never waited for
            hung.settimeout(10)
            first, _ = hung.accept()  # the first shadow search's embed call, carrying its search's request id
            with first:  # held open, unanswered, until the end: that search times out as the others would
                first.settimeout(10)
                head = first.recv(65536).decode("latin-1").lower()
                assert head.startswith("post /v1/embed"), head[:400]
                assert "x-request-id: shadow-test-0\r\n" in head, head[:400]
                # One search waits in the worker, one in the queue: the others were dropped, each counted.
                assert _shadow_count(gateway.url, "dropped") >= 1
                wait_until(
                    lambda: (
                        _shadow_count(gateway.url, "timeout") + _shadow_count(gateway.url, "dropped") == len(photos)
                    ),
                    60,
                    service=gateway,
                    message=lambda: _shadow_lines(gateway.url),
                )
                assert _shadow_count(gateway.url, "ok") == _shadow_count(gateway.url, "error") == 0
        finally:
            gateway.stop()
