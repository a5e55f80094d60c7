"""Hostile backends (issue 33, findings 4, 8, 9): a real gateway whose second index partition and shadow
candidate index are hostile processes (tests/helpers/hostile.py), beside a real partition 0, detector and
embedder. What a backend answers must never take the gateway down, grow it past its pod's memory, turn a
partial answer into a 500 or stop its shadow worker.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import httpx
import pytest

from services.stack import ServiceProcess, free_port, start_service
from tests.helpers import shared_stack
from tests.helpers.hostile import HostileBackend
from tests.helpers.http import metric_value, search
from tests.helpers.memory import peak_mib, reset_peak
from tests.helpers.partitions import publish_partitioned
from tests.helpers.paths import PHOTOS
from tests.helpers.wait import wait_until

pytestmark = pytest.mark.stack
MIB = 1024 * 1024
PHOTO = sorted(PHOTOS.glob("*.jpg"))[0].read_bytes()


@dataclass
class Setup:
    partition: HostileBackend  # partition 1 of 2
    candidate: HostileBackend  # the shadow candidate's index
    partition_readyz: dict[str, Any]  # what a healthy partition 1 says
    gateway: ServiceProcess = field(init=False)

    def good_partition(self) -> None:
        self.partition.serve({"GET /readyz": {"json": self.partition_readyz}, "POST /v1/query": self.good_query})

    @property
    def good_query(self) -> dict[str, Any]:
        return {"json": {"version": self.partition_readyz["index"]["version"], "changes": 0}, "rows": "match"}


@pytest.fixture(scope="module")
def setup(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Setup]:
    stack = shared_stack()
    root = tmp_path_factory.mktemp("hostile")
    store = root / "store"
    store.mkdir()
    publish_partitioned(store, 2)
    args = ["--index-uri", store.as_uri(), "--local-dir", str(root / "p0"), "--partition", "0"]
    part0 = start_service("index", free_port(), args=args, log_path=root / "index-p0.log")
    partition = HostileBackend(root / "partition.json")
    candidate = HostileBackend(root / "candidate.json")
    gateway = None
    try:
        assert part0.wait_ready(120), part0.log_tail()
        readyz = httpx.get(part0.url + "/readyz", trust_env=False).json()
        setup = Setup(partition, candidate, {**readyz, "partition": {"index": 1, "of": 2}})
        setup.good_partition()
        candidate.serve({"POST /v1/query": setup.good_query})
        flags = [
            f"--index-url={part0.url},{partition.url}",
            f"--shadow-embedder-url={stack.url('embedder')}",
            f"--shadow-index-url={candidate.url}",
            "--shadow-sample-rate=1.0",
            "--shadow-timeout-s=60",
            "--cache-size=0",
            "--detect-timeout-s=60",
            "--query-timeout-s=30",  # a large answer is refused for its size, not for its time
        ]
        gateway = start_service("gateway", free_port(), args=[*stack.args["gateway"], *flags], log_path=root / "gw.log")
        assert gateway.wait_ready(120), gateway.log_tail()
        setup.gateway = gateway
        yield setup
    finally:
        if gateway is not None:
            gateway.stop()
        part0.stop()
        partition.close()
        candidate.close()


def _metric(setup: Setup, name: str, **labels: str) -> float:
    return metric_value(httpx.get(setup.gateway.url + "/metrics", trust_env=False).text, name, **labels)


def _partial_search(setup: Setup, resp: httpx.Response | None = None) -> dict[str, Any]:
    resp = resp or search(setup.gateway.url, PHOTO, timeout=120)
    assert resp.status_code == 200, resp.text
    body: dict[str, Any] = resp.json()
    assert body["partial"] is True and body["missing_partitions"] == [1], body
    assert any(item["results"] for item in body["items"])  # partition 0's hits are still there
    return body


WRONG_SHAPES: dict[str, dict[str, Any]] = {
    "a list": {"json": [1, 2, 3]},
    "results not rows": {"json": {"version": "V", "changes": 0, "results": {"a": 1}}},
    "too few rows": {"json": {"version": "V", "changes": 0, "results": []}},
    "a score that is text": {"json": {"version": "V", "changes": 0, "results": [[{"item_id": "x", "score": "hi"}]]}},
}


@pytest.mark.parametrize("shape", WRONG_SHAPES)
def test_a_partition_answering_the_wrong_shape_is_left_out_not_a_500(setup: Setup, shape: str) -> None:
    route = WRONG_SHAPES[shape]
    version = setup.partition_readyz["index"]["version"]
    if isinstance(route["json"], dict):
        route = {"json": {**route["json"], "version": version}}
    setup.partition.serve({"GET /readyz": {"json": setup.partition_readyz}, "POST /v1/query": route})
    try:
        before = _metric(setup, "imgsearch_backend_errors_total", backend="index-1", kind="malformed")
        _partial_search(setup)
        assert _metric(setup, "imgsearch_backend_errors_total", backend="index-1", kind="malformed") > before
        assert "index-1 answered a malformed body" in setup.gateway.log_tail(200)
    finally:
        setup.good_partition()


def test_a_partition_readyz_that_is_a_json_list_leaves_the_gateway_readyz_json(setup: Setup) -> None:
    setup.partition.serve({"GET /readyz": {"json": ["ready"]}, "POST /v1/query": setup.good_query})
    try:
        asked = setup.partition.hits("GET /readyz")

        def asked_again_and_ready() -> bool:
            resp = httpx.get(setup.gateway.url + "/readyz", trust_env=False, timeout=10)
            assert resp.status_code == 200, resp.text  # partition 0 holds the served version: ready, never a 500
            assert resp.json()["ready"] is True
            return setup.partition.hits("GET /readyz") >= asked + 3  # the list was read by /readyz and the watcher

        wait_until(asked_again_and_ready, 30)
        resp = search(setup.gateway.url, PHOTO, timeout=120)
        assert resp.status_code == 200, resp.text
        assert _metric(setup, "imgsearch_background_restarts_total", task="index_watch") == 0
    finally:
        setup.good_partition()


@pytest.mark.parametrize("declared", [True, False], ids=["content-length", "until-close"])
def test_a_partition_answering_300_mib_is_left_out_and_the_gateway_stays_small(setup: Setup, declared: bool) -> None:
    version = setup.partition_readyz["index"]["version"]
    head = '{"version": "' + version + '", "changes": 0, "pad": "'
    big = {"stream_mib": 300, "head": head, "tail": '", "results": [[]]}', "declare_length": declared}
    setup.partition.serve({"GET /readyz": {"json": setup.partition_readyz}, "POST /v1/query": big})
    try:
        rss_before = reset_peak(setup.gateway.proc.pid)
        before = _metric(setup, "imgsearch_backend_errors_total", backend="index-1", kind="too_large")
        resp = search(setup.gateway.url, PHOTO, timeout=120)
        peak = peak_mib(setup.gateway.proc.pid)
        # The answer was read up to the 8 MiB cap, no further (before the cap: 1.27 GiB peak).
        assert peak - rss_before < 64, (rss_before, peak)
        _partial_search(setup, resp)
        assert _metric(setup, "imgsearch_backend_errors_total", backend="index-1", kind="too_large") == before + 1
    finally:
        setup.good_partition()


def _wait_shadowed(setup: Setup, result: str, count: float) -> None:
    wait_until(
        lambda: _metric(setup, "imgsearch_shadow_requests_total", result=result) >= count,
        120,
        service=setup.gateway,
        message=lambda: f"shadow {result} never reached {count}:\n{setup.gateway.log_tail(30)}",
    )


def test_a_shadow_candidate_answering_fewer_rows_is_counted_every_time_and_the_worker_lives(setup: Setup) -> None:
    version = setup.partition_readyz["index"]["version"]
    setup.candidate.serve({"POST /v1/query": {"json": {"version": version, "changes": 0, "results": []}}})
    try:
        errors = _metric(setup, "imgsearch_shadow_requests_total", result="error")
        for _ in range(3):
            search(setup.gateway.url, PHOTO, timeout=120)
            errors += 1
            _wait_shadowed(setup, "error", errors)  # each one: the worker is still there to count it
        setup.candidate.serve({"POST /v1/query": setup.good_query})
        ok = _metric(setup, "imgsearch_shadow_requests_total", result="ok")
        search(setup.gateway.url, PHOTO, timeout=120)
        _wait_shadowed(setup, "ok", ok + 1)
        assert _metric(setup, "imgsearch_background_restarts_total", task="shadow") == 0
    finally:
        setup.candidate.serve({"POST /v1/query": setup.good_query})


def test_a_shadow_candidate_answering_400_mib_is_an_error_and_the_gateway_stays_small(setup: Setup) -> None:
    big = {"stream_mib": 400, "head": '{"pad": "', "tail": '"}', "declare_length": False}
    setup.candidate.serve({"POST /v1/query": big})
    try:
        rss_before = reset_peak(setup.gateway.proc.pid)
        errors = _metric(setup, "imgsearch_shadow_requests_total", result="error")
        search(setup.gateway.url, PHOTO, timeout=120)
        _wait_shadowed(setup, "error", errors + 1)
        peak = peak_mib(setup.gateway.proc.pid)
        assert peak - rss_before < 64, (rss_before, peak)  # before the cap: 3.4 GiB
        assert _metric(setup, "imgsearch_backend_errors_total", backend="shadow_index", kind="too_large") >= 1
    finally:
        setup.candidate.serve({"POST /v1/query": setup.good_query})
