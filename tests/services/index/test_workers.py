"""`imgsearch serve index --workers 3`: one port, three forked workers; /metrics shows them all, an
`/admin/reload` and a publish reach every one, SIGTERM stops them all. Real processes on a copy of the
demo index store."""

from __future__ import annotations

import base64
import signal
from collections.abc import Iterator
from pathlib import Path

import httpx
import numpy as np
import pytest

from services.stack import ServiceProcess, free_port, start_service
from tests.helpers import ADMIN_TOKEN, clone_version, copy_index_store, current_version
from tests.helpers import set_current as publish
from tests.helpers.http import metric_value
from tests.helpers.wait import wait_until

pytestmark = pytest.mark.stack

WORKERS = 3
AUTH = {"authorization": f"Bearer {ADMIN_TOKEN}"}


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return copy_index_store(tmp_path_factory.mktemp("index-store") / "store")


@pytest.fixture(scope="module")
def index(store: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServiceProcess]:
    root = tmp_path_factory.mktemp("workers")
    args = ["--index-uri", store.as_uri(), "--local-dir", str(root / "cache"), "--poll-seconds", "0.5"]
    proc = start_service(
        "index",
        free_port(),
        args=[*args, "--workers", str(WORKERS)],
        env={"IMGSEARCH_ADMIN_TOKEN": ADMIN_TOKEN},
        log_path=root / "index.log",
    )
    try:
        proc.wait_ready(120)
        yield proc
    finally:
        proc.stop()


def _workers(parent: int) -> set[int]:
    children = Path(f"/proc/{parent}/task/{parent}/children")
    return {int(pid) for pid in children.read_text().split()} if children.exists() else set()


def _each_connection(url: str, path: str, times: int) -> list[httpx.Response]:
    """`times` GETs, each on a new connection, so the kernel hands them to different workers."""
    out = []
    for _ in range(times):
        with httpx.Client(trust_env=False, timeout=10) as client:
            out.append(client.get(url + path))
    return out


def _versions(url: str) -> set[str]:
    return {r.json()["index"]["version"] for r in _each_connection(url, "/readyz", 4 * WORKERS)}


def test_one_port_served_by_forked_workers_and_metrics_of_them_all(index: ServiceProcess) -> None:
    workers = _workers(index.proc.pid)
    assert len(workers) == WORKERS
    rng = np.random.default_rng(0)
    queries = 4 * WORKERS
    for _ in range(queries):
        body = {"vectors_b64": base64.b64encode(rng.standard_normal((1, 128)).astype("<f4").tobytes()).decode()}
        with httpx.Client(trust_env=False, timeout=10) as client:
            resp = client.post(index.url + "/v1/query", json={**body, "dim": 128, "k": 3})
            assert resp.status_code == 200, resp.text
    text = httpx.get(index.url + "/metrics", trust_env=False).text
    labels = {"route": "/v1/query", "method": "POST", "status": "200"}
    assert metric_value(text, "imgsearch_http_requests_total", **labels) == queries  # summed over workers
    count = float(httpx.get(index.url + "/readyz", trust_env=False).json()["index"]["count"])
    for pid in workers:  # one gauge series per worker
        assert metric_value(text, "imgsearch_index_items", pid=str(pid)) == count
    assert "imgsearch_index_age_seconds " in text


def test_admin_reload_and_publish_reach_every_worker(index: ServiceProcess, store: Path) -> None:
    original = current_version(store)
    newer = clone_version(store, "20991231T000000Z-0000abcd")
    resp = httpx.post(
        index.url + "/admin/reload", params={"version": newer}, headers=AUTH, trust_env=False, timeout=120
    )
    assert resp.status_code == 200, resp.text
    assert resp.json()["workers"] == {"count": WORKERS, "serving": WORKERS, "behind": []}
    assert _versions(index.url) == {newer}
    text = httpx.get(index.url + "/metrics", trust_env=False).text
    for pid in _workers(index.proc.pid):  # each worker says what it serves, and only that
        assert metric_value(text, "imgsearch_index_info", pid=str(pid), version=newer) == 1
        assert metric_value(text, "imgsearch_index_info", pid=str(pid), version=original) == 0
    third = clone_version(store, "20991231T000001Z-0000abce")
    publish(store, third)  # a publish: each worker's own poller follows it
    wait_until(lambda: _versions(index.url) == {third}, 30.0, service=index)


def test_sigterm_stops_every_worker(store: Path, tmp_path: Path) -> None:
    args = ["--index-uri", store.as_uri(), "--local-dir", str(tmp_path / "cache"), "--poll-seconds", "0"]
    proc = start_service("index", free_port(), args=[*args, "--workers", "2"], log_path=tmp_path / "index.log")
    try:
        proc.wait_ready(120)
        workers = _workers(proc.proc.pid)
        assert len(workers) == 2
        proc.proc.send_signal(signal.SIGTERM)
        assert proc.proc.wait(timeout=30) == 0
        assert all(not Path(f"/proc/{pid}").exists() for pid in workers)
    finally:
        proc.stop()
