"""A partitioned index (issue 16) with 3 real partition processes behind a real gateway, next to the one-index
stack of the same demo catalog: merged quality, item routing, a killed partition, a roll-out under load."""

from __future__ import annotations

import json
import signal
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import numpy as np
import pytest

from imgcore.index_wire import partition_of
from services.stack import ServiceProcess, free_port, start_service, stop_all
from tests.helpers.http import metric_value, search
from tests.helpers.partitions import Rows, demo_rows, publish_partitioned, start_partitions
from tests.helpers.paths import PHOTOS
from tests.helpers.stack import Stack, running_stack
from tests.helpers.wait import wait_until

pytestmark = pytest.mark.stack
N = 3
PARTITION_FLAGS = ["--poll-seconds", "0.5", "--partition-drop-idle-s", "3"]


@dataclass
class Setup:
    stack: Stack  # the one-index stack; its gateway queries the partitions
    parts: list[ServiceProcess]
    store: Path
    root: Path
    rows: Rows
    version: str

    @property
    def gateway(self) -> str:
        return self.stack.gateway_url


@pytest.fixture(scope="module")
def setup(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Setup]:
    root = tmp_path_factory.mktemp("partitions")
    rows = demo_rows()
    store = root / "store"
    store.mkdir()
    version = publish_partitioned(store, N, rows=rows)
    parts = start_partitions(store, N, root, extra=PARTITION_FLAGS)
    urls = ",".join(p.url for p in parts)
    try:
        with running_stack(extra={"gateway": ["--index-url", urls]}) as stack:
            yield Setup(stack, parts, store, root, rows, version)
    finally:
        stop_all(parts)


def _similar(base: str, item_id: str, k: int = 10, **params: str) -> httpx.Response:
    return httpx.get(f"{base}/v1/items/{item_id}/similar", params={"k": k, **params}, timeout=10, trust_env=False)


def _recall(rows: Rows, item_ids: list[str], answers: list[list[str]], k: int = 10) -> float:
    """Tie-tolerant recall@k against exact search over the whole catalog (the item itself left out)."""
    vecs = rows.vectors / np.linalg.norm(rows.vectors, axis=1, keepdims=True)
    pos = {it.item_id: i for i, it in enumerate(rows.items)}
    hits = 0.0
    for item_id, found in zip(item_ids, answers, strict=True):
        sims = vecs @ vecs[pos[item_id]]
        sims[pos[item_id]] = -np.inf
        kth = np.sort(sims)[-k]
        hits += sum(1 for f in found if sims[pos[f]] >= kth - 1e-5) / k
    return hits / len(item_ids)


def test_merged_answer_has_the_quality_of_one_index(setup: Setup) -> None:
    sample = [it.item_id for it in setup.rows.items[::60]]
    # Images, not products: the truth is exact search over images (a product's second image would be grouped away).
    merged = [_similar(setup.gateway, i, group="none").json() for i in sample]
    single = [_similar(setup.stack.url("index"), i, group="none").json() for i in sample]
    assert all(m["index_version"] == setup.version and "partial" not in m for m in merged)
    merged_recall = _recall(setup.rows, sample, [[h["item_id"] for h in m["results"]] for m in merged])
    single_recall = _recall(setup.rows, sample, [[h["item_id"] for h in s["results"]] for s in single])
    assert merged_recall >= 0.95 and merged_recall >= single_recall - 0.02, (merged_recall, single_recall)
    # Category filters hold across partitions: every hit of a category query is of that category.
    bag = _similar(setup.gateway, sample[0], category="Bag").json()["results"]
    assert len(bag) == 10 and {h["category"] for h in bag} == {"Bag"}
    # A photo through the whole pipeline: answered from the partitioned version, complete.
    body = search(setup.gateway, (PHOTOS / "dog.jpg").read_bytes()).json()
    assert body["index_version"] == setup.version and "partial" not in body
    assert all(len(item["results"]) == 10 for item in body["items"])


def test_shadow_on_a_partitioned_candidate_queries_every_partition(setup: Setup, tmp_path: Path) -> None:
    # Candidate = production (the same partitions, the same embedder): with every partition queried and merged
    # as the live path does, each item's overlap is exactly 1.0; querying one partition of three scores ~1/3.
    urls = ",".join(p.url for p in setup.parts)
    flags = [f"--shadow-embedder-url={setup.stack.url('embedder')}", f"--shadow-index-url={urls}"]
    flags += ["--shadow-sample-rate=1.0", "--cache-size=0", "--detect-timeout-s=60"]
    gateway = start_service(
        "gateway", free_port(), args=[*setup.stack.args["gateway"], *flags], log_path=tmp_path / "gateway.log"
    )
    try:
        assert gateway.wait_ready(120), gateway.log_tail()
        photos = [(PHOTOS / name).read_bytes() for name in ("dog.jpg", "horses.jpg")]
        items = 0
        for data in photos:
            body = search(gateway.url, data).json()
            assert body["index_version"] == setup.version and "partial" not in body
            items += sum(1 for item in body["items"] if item["results"])

        def shadowed() -> float:
            text = httpx.get(gateway.url + "/metrics", trust_env=False).text
            return metric_value(text, "imgsearch_shadow_requests_total", result="ok")

        wait_until(lambda: shadowed() == len(photos), 60, service=gateway, message="shadow searches never ended")
        text = httpx.get(gateway.url + "/metrics", trust_env=False).text
        assert items >= len(photos)
        assert metric_value(text, "imgsearch_shadow_overlap_count", k="10") == items
        assert metric_value(text, "imgsearch_shadow_overlap_sum", k="10") == pytest.approx(items)
        assert metric_value(text, "imgsearch_partial_answers_total", partition="shadow_0") == 0
    finally:
        gateway.stop()


def test_item_routes_go_to_the_partition_that_holds_the_item(setup: Setup) -> None:
    for item in setup.rows.items[:12]:
        owner = partition_of(item.item_id, N)
        via_gateway = httpx.get(f"{setup.gateway}/v1/items/{item.item_id}/image", trust_env=False)
        direct = httpx.get(f"{setup.parts[owner].url}/v1/items/{item.item_id}/image", trust_env=False)
        assert via_gateway.status_code == 200 and via_gateway.content == direct.content
        for other in set(range(N)) - {owner}:  # only its own partition knows it: routing is what makes it work
            assert httpx.get(f"{setup.parts[other].url}/v1/items/{item.item_id}", trust_env=False).status_code == 404
        assert _similar(setup.gateway, item.item_id, k=3).json()["item"]["item_id"] == item.item_id


def _partials(base: str) -> float:
    text = httpx.get(base + "/metrics", trust_env=False).text
    return metric_value(text, "imgsearch_partial_answers_total", partition="1")


def test_killed_partition_gives_a_fast_partial_answer_and_rejoins(setup: Setup) -> None:
    victim = setup.parts[1]
    item = next(it.item_id for it in setup.rows.items if partition_of(it.item_id, N) == 0)
    before = _partials(setup.gateway)
    victim.proc.send_signal(signal.SIGKILL)
    victim.proc.wait()
    t0 = time.perf_counter()
    answer = _similar(setup.gateway, item)
    elapsed = time.perf_counter() - t0
    body = answer.json()
    assert answer.status_code == 200 and body["partial"] is True and body["missing_partitions"] == [1]
    assert len(body["results"]) == 10 and elapsed < 1.0  # well within the 2 s stage budget
    assert all(partition_of(h["item_id"], N) != 1 for h in body["results"])
    assert _partials(setup.gateway) >= before + 1
    args = ["--index-uri", setup.store.as_uri(), "--local-dir", str(setup.root / "p1"), "--partition", "1"]
    setup.parts[1] = start_service("index", victim.port, args=[*args, *PARTITION_FLAGS], log_path=victim.log_path)
    setup.parts[1].wait_ready(120)
    wait_until(lambda: "partial" not in _similar(setup.gateway, item).json(), 10, message="partition 1 never rejoined")


def test_rollout_under_load_fails_no_request_and_never_mixes_versions(setup: Setup) -> None:
    items = [it.item_id for it in setup.rows.items[:40]]
    seen: list[str] = []
    failures: list[str] = []
    stop = threading.Event()

    def load() -> None:
        n = 0
        with httpx.Client(trust_env=False, timeout=10) as client:
            while not stop.is_set():
                r = client.get(f"{setup.gateway}/v1/items/{items[n % len(items)]}/similar", params={"k": 10})
                n += 1
                body = r.json()
                if r.status_code != 200 or "partial" in body:
                    failures.append(f"{r.status_code} {json.dumps(body)[:200]}")
                else:
                    seen.append(body["index_version"])

    threads = [threading.Thread(target=load) for _ in range(3)]
    for t in threads:
        t.start()
    try:
        time.sleep(1.0)
        new = publish_partitioned(setup.store, N, rows=setup.rows, n_trees=24)  # another build: another version
        wait_until(lambda: seen and seen[-1] == new, 60, message="the gateway never switched to the new version")
        # Each partition drops the old version once the gateway stopped asking for it.
        for part in setup.parts:
            wait_until(lambda p=part: httpx.get(p.url + "/readyz").json()["versions"] == [new], 30)
        time.sleep(0.5)
    finally:
        stop.set()
        for t in threads:
            t.join()
    assert not failures, failures[:5]
    assert seen.count(setup.version) > 0 and seen.count(new) > 0
    first_new = seen.index(new)
    assert setup.version not in seen[first_new + 3 * len(threads) :]  # switched once; in-flight ones aside
