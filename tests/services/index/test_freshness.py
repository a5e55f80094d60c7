"""Freshness between rebuilds with two real index replicas on one store: `imgsearch items apply` (the real
CLI and embedder) makes an upsert searchable and a delete disappear on both within seconds, on every route;
a restarted replica replays them before it is ready; damaged or foreign change objects are refused and
logged without stopping the ones after them."""

from __future__ import annotations

import json
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import httpx
import numpy as np
import pytest

from ann_index.version.changes import ChangeBatch, Delete, change_key, encode_batch
from embedder import Embedder
from imgcore.image import decode_image
from services.defaults import DEFAULT_EMBEDDER_DIR
from services.stack import ServiceProcess, embedder_sha256, free_port, start_service
from tests.helpers import copy_index_store, current_version
from tests.helpers.cli import imgsearch_cmd
from tests.helpers.http import metric_value
from tests.helpers.paths import DATA
from tests.helpers.wait import wait_until

pytestmark = pytest.mark.stack

DOG = DATA / "photos" / "dog.jpg"


def _start(store: Path, root: Path, name: str) -> ServiceProcess:
    args = ["--index-uri", store.as_uri(), "--local-dir", str(root / name / "cache"), "--poll-seconds", "1"]
    args += ["--embedder-sha256", str(embedder_sha256())]
    svc = start_service("index", free_port(), args=args, log_path=root / name / "index.log")
    svc.wait_ready(120)
    return svc


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return copy_index_store(tmp_path_factory.mktemp("fresh") / "store")


@pytest.fixture(scope="module")
def replicas(store: Path) -> Iterator[list[ServiceProcess]]:
    root = store.parent
    pair = [_start(store, root, "a"), _start(store, root, "b")]
    yield pair
    for svc in pair:
        svc.stop()


def _apply(store: Path, folder: Path, rows: list[dict[str, object]]) -> dict[str, object]:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "changes.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    cmd = imgsearch_cmd("items", "apply", "--changes", str(folder / "changes.jsonl"), "--index-uri", store.as_uri())
    done = subprocess.run([*cmd, "--json"], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    out: dict[str, object] = json.loads(done.stdout)
    return out


def _query(svc: ServiceProcess, vector: np.ndarray, **body: object) -> list[str]:
    answer = httpx.post(svc.url + "/v1/query", json={"vectors": [vector.tolist()], "k": 10, **body}, trust_env=False)
    assert answer.status_code == 200, answer.text
    return [hit["item_id"] for hit in answer.json()["results"][0]]


def _seq(svc: ServiceProcess) -> int:
    return int(httpx.get(svc.url + "/readyz", trust_env=False).json()["index"]["changes"]["seq"])


def _dog_vector() -> np.ndarray:
    embedder = Embedder(DEFAULT_EMBEDDER_DIR)
    return np.asarray(embedder.embed(decode_image(DOG.read_bytes()))[0])


def test_upserts_and_deletes_reach_both_replicas_within_seconds_and_survive_a_restart(
    store: Path, replicas: list[ServiceProcess]
) -> None:
    a, b = replicas
    item = httpx.get(a.url + "/v1/items/fmnist-train-00010", trust_env=False).json()
    victim_vec = np.asarray(item["vector"], np.float32)
    victim = "fmnist-train-00010"
    assert _query(a, victim_vec)[0] == victim
    (store.parent / "batch1").mkdir(exist_ok=True)
    shutil.copy(DOG, store.parent / "batch1" / "dog.jpg")
    upsert = {"op": "upsert", "item_id": "fresh-dog", "image": "dog.jpg", "category": "Bag", "title": "A dog bag"}
    applied = _apply(store, store.parent / "batch1", [upsert, {"op": "delete", "item_id": victim}])
    dog = _dog_vector()
    for svc in (a, b):
        wait_until(lambda s=svc: _seq(s) >= int(str(applied["seq"])), 10, message=f"{svc.url} did not apply")
        assert _query(svc, dog)[0] == "fresh-dog" and _query(svc, dog, category="Bag")[0] == "fresh-dog"
        assert victim not in _query(svc, victim_vec) and victim not in _query(
            svc, victim_vec, category=item["item"]["category"]
        )
        for route in ("", "/image", "/similar"):
            assert httpx.get(f"{svc.url}/v1/items/{victim}{route}", trust_env=False).status_code == 404
        assert httpx.get(f"{svc.url}/v1/items/fresh-dog/image", trust_env=False).headers["content-type"] == "image/jpeg"
        neighbours = httpx.get(f"{svc.url}/v1/items/{_query(svc, victim_vec)[0]}/similar?k=20", trust_env=False)
        assert victim not in [h["item_id"] for h in neighbours.json()["results"]]
        metrics = httpx.get(svc.url + "/metrics", trust_env=False).text
        assert metric_value(metrics, "imgsearch_index_fresh_items") == 1
        assert metric_value(metrics, "imgsearch_index_change_lag_seconds_count") >= 1

    b.stop()
    replicas[1] = again = _start(store, store.parent, "b-restarted")  # a fresh local folder: all from the store
    assert _seq(again) == int(str(applied["seq"]))  # ready means replayed
    assert _query(again, dog)[0] == "fresh-dog" and victim not in _query(again, victim_vec)


def test_damaged_and_foreign_change_objects_are_refused_without_stopping_later_ones(
    store: Path, replicas: list[ServiceProcess]
) -> None:
    a, b = replicas
    version = current_version(store)
    seq = max(_seq(a), _seq(b))
    good = ChangeBatch(version, seq + 1, 0.0, f"{version}/{seq + 1}", str(embedder_sha256()), 128, [Delete("x")])
    damaged = bytearray(encode_batch(good))
    damaged[-5] ^= 0x01
    (store / change_key(version, seq + 1)).write_bytes(bytes(damaged))
    foreign = ChangeBatch(
        "20200101T000000Z-00000000", seq + 2, 0.0, "other/1", good.embedder_sha256, 128, [Delete("y")]
    )
    (store / change_key(version, seq + 2)).write_bytes(encode_batch(foreign))
    victim = "fmnist-train-00011"
    vec = np.asarray(httpx.get(a.url + f"/v1/items/{victim}", trust_env=False).json()["vector"], np.float32)
    applied = _apply(store, store.parent / "batch2", [{"op": "delete", "item_id": victim}])
    assert applied["seq"] == seq + 3
    for svc in (a, b):
        wait_until(lambda s=svc: _seq(s) >= seq + 3, 10, message=f"{svc.url} stopped at a bad change object")
        assert victim not in _query(svc, vec)
        refused = httpx.get(svc.url + "/readyz", trust_env=False).json()["index"]["changes"]["refused"]
        assert len(refused) == 2 and "sha256" in refused[0]["error"] and "not " + version in refused[1]["error"]
        metrics = httpx.get(svc.url + "/metrics", trust_env=False).text
        assert metric_value(metrics, "imgsearch_index_changes_total", result="refused") == 2
        assert "change object refused" in svc.log_tail(200)
