"""The index service's hot swap, refusal of bad versions, rollback and admin token — on a private copy of
the demo index store, with all four services as real processes."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest

from services.stack import free_port, start_service
from tests.helpers import ADMIN_TOKEN, Stack, clone_version, copy_index_store, current_version, running_stack
from tests.helpers import set_current as publish
from tests.helpers.http import metric_value, search
from tests.helpers.paths import DATA
from tests.helpers.wait import wait_until

pytestmark = pytest.mark.stack

PHOTO = (DATA / "photos" / "person.jpg").read_bytes()
AUTH = {"authorization": f"Bearer {ADMIN_TOKEN}"}


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    store = copy_index_store(tmp_path_factory.mktemp("index-store") / "store")
    with running_stack(index_store=store, extra={"index": ["--poll-seconds", "0.5"]}) as s:
        yield s


def _index_state(stack: Stack) -> dict[str, object]:
    body: dict[str, object] = httpx.get(stack.url("index") + "/readyz", trust_env=False).json()
    return body


def _served(stack: Stack) -> str:
    index = _index_state(stack)["index"]
    assert isinstance(index, dict)
    return str(index["version"])


def _refused(stack: Stack) -> str | None:
    refused = _index_state(stack).get("refused")
    return str(refused["version"]) if isinstance(refused, dict) else None


def _flip_bytes(name: str) -> Callable[[Path], None]:
    def mutate(version_dir: Path) -> None:
        path = version_dir / name
        data = bytearray(path.read_bytes())
        data[len(data) // 2] ^= 0xFF
        path.write_bytes(bytes(data))

    return mutate


def _other_embedder(version_dir: Path) -> None:
    manifest = json.loads((version_dir / "manifest.json").read_text())
    manifest["embedder"]["sha256"] = "0" * 64
    (version_dir / "manifest.json").write_text(json.dumps(manifest))


def test_admin_reload_needs_the_bearer_token(stack: Stack) -> None:
    url = stack.url("index") + "/admin/reload"
    assert httpx.post(url, trust_env=False).status_code == 401
    wrong = httpx.post(url, headers={"authorization": "Bearer nope"}, trust_env=False)
    assert wrong.status_code == 401 and "error" in wrong.json()
    ok = httpx.post(url, headers=AUTH, trust_env=False, timeout=60)
    assert ok.status_code == 200, ok.text
    assert ok.json()["changed"] is False


def test_admin_is_off_without_a_token(stack: Stack, tmp_path: Path) -> None:
    args = [a.replace(str(stack.root / "index-cache"), str(tmp_path / "cache")) for a in stack.args["index"]]
    index = start_service(
        "index", free_port(), args=args, env={"IMGSEARCH_ADMIN_TOKEN": ""}, log_path=tmp_path / "index.log"
    )
    try:
        index.wait_ready(60)
        resp = httpx.post(index.url + "/admin/reload", headers=AUTH, trust_env=False)
        assert resp.status_code == 403 and "IMGSEARCH_ADMIN_TOKEN" in resp.json()["error"]
    finally:
        index.stop()


def test_hot_swap_while_searches_run_has_zero_failures(stack: Stack) -> None:
    old = _served(stack)
    failures: list[str] = []
    versions: set[str] = set()
    stop = threading.Event()

    def client() -> None:
        with httpx.Client(trust_env=False, timeout=30) as http:
            for k in range(1, 1000):
                if stop.is_set():
                    return
                resp = http.post(stack.gateway_url + f"/v1/search?k={k % 7 + 1}", files={"image": ("p", PHOTO)})
                if resp.status_code != 200:
                    failures.append(f"{resp.status_code} {resp.text[:200]}")
                else:
                    versions.add(resp.json()["index_version"])

    threads = [threading.Thread(target=client) for _ in range(3)]
    for t in threads:
        t.start()
    time.sleep(1.0)
    new = clone_version(stack.index_store, "29990101T000000Z-swap0001")
    publish(stack.index_store, new)
    wait_until(lambda: _served(stack) == new)
    wait_until(lambda: new in versions)
    time.sleep(1.0)
    stop.set()
    for t in threads:
        t.join()
    assert failures == []
    assert {old, new} <= versions


def test_corrupt_version_is_refused_and_the_old_one_keeps_serving(stack: Stack) -> None:
    good = _served(stack)
    bad = clone_version(stack.index_store, "29990102T000000Z-corrupt1", _flip_bytes("index.ann"))
    # publish the damaged copy as if the rebuild job had (its manifest still lists the old checksums)
    publish(stack.index_store, bad)
    wait_until(lambda: _refused(stack) == bad)
    assert _served(stack) == good
    resp = search(stack.gateway_url, PHOTO)
    assert resp.status_code == 200 and resp.json()["index_version"] == good
    forced = httpx.post(
        stack.url("index") + "/admin/reload", params={"force": "true"}, headers=AUTH, trust_env=False, timeout=60
    )
    assert forced.status_code == 409, forced.text
    assert "sha256" in forced.json()["error"]
    assert _served(stack) == good
    metrics = httpx.get(stack.url("index") + "/metrics", trust_env=False).text
    assert metric_value(metrics, "imgsearch_index_reloads_total", result="failed") >= 2
    publish(stack.index_store, good)


def test_index_of_another_embedder_is_refused(stack: Stack) -> None:
    good = _served(stack)
    other = clone_version(stack.index_store, "29990103T000000Z-otheremb", _other_embedder)
    resp = httpx.post(
        stack.url("index") + "/admin/reload", params={"version": other}, headers=AUTH, trust_env=False, timeout=60
    )
    assert resp.status_code == 409
    assert "embedder" in resp.json()["error"]
    assert _served(stack) == good


def test_admin_reload_of_an_older_version_rolls_back_and_stays(stack: Stack) -> None:
    versions = sorted(p.name for p in (stack.index_store / "versions").iterdir())
    original = versions[0]
    assert current_version(stack.index_store) != original
    time.sleep(1.2)  # let the poller (every 0.5 s) see the CURRENT restored by the previous test first
    resp = httpx.post(
        stack.url("index") + "/admin/reload", params={"version": original}, headers=AUTH, trust_env=False, timeout=60
    )
    assert resp.status_code == 200, resp.text
    assert resp.json()["changed"] is True and resp.json()["version"] == original
    time.sleep(1.5)  # several polls: a pinned version is kept until the next publish
    assert _served(stack) == original
    assert search(stack.gateway_url, PHOTO, k=2).json()["index_version"] == original
