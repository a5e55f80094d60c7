"""The change log under attack, with the real `imgsearch items apply` / `items drain` and real index replicas
on a private store (issue 33: findings 2, 3, 6, 7 and 12).

- A row the services cannot serve (an integer past 64 bits, attrs nested deeper than the encoder allows, a
  lone surrogate) is refused at apply: before, it applied and every answer holding it failed.
- A forged object (valid sha, body nested 5,000 deep) is refused and listed; the objects after it apply and a
  new replica becomes ready: before, one such object stopped every replica.
- A garbage object at the last sequence number makes apply refuse (before: a 13-digit object no replica lists).
- Deletes of ids held nowhere keep a bounded amount per replica; a batch over MAX_BATCH_ROWS is refused.
- Ids `.`, `..` and `a/b` are refused at apply (no URL reaches them).
"""

from __future__ import annotations

import hashlib
import json
import subprocess
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from ann_index.version.changes import MAX_BATCH_ROWS, change_key
from services.stack import ServiceProcess, embedder_sha256, free_port, start_service
from tests.helpers import copy_index_store, current_version
from tests.helpers.cli import imgsearch_cmd
from tests.helpers.paths import DATA
from tests.helpers.wait import wait_until

pytestmark = pytest.mark.stack

DOG = DATA / "photos" / "dog.jpg"
KNOWN = "fmnist-train-00010"


def _start(store: Path, root: Path) -> ServiceProcess:
    args = ["--index-uri", store.as_uri(), "--local-dir", str(root / "cache"), "--poll-seconds", "1"]
    args += ["--embedder-sha256", str(embedder_sha256()), "--changes-poll-seconds", "0.5"]
    svc = start_service("index", free_port(), args=args, log_path=root / "index.log")
    assert svc.wait_ready(180), svc.log_tail()
    return svc


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return copy_index_store(tmp_path_factory.mktemp("changelog") / "store")


@pytest.fixture(scope="module")
def replica(store: Path) -> Iterator[ServiceProcess]:
    svc = _start(store, store.parent / "a")
    yield svc
    svc.stop()


def _apply(store: Path, folder: Path, rows: list[dict[str, object]] | str) -> subprocess.CompletedProcess[str]:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "dog.jpg").write_bytes(DOG.read_bytes())
    text = rows if isinstance(rows, str) else "".join(json.dumps(r) + "\n" for r in rows)
    (folder / "changes.jsonl").write_text(text, encoding="utf-8", errors="surrogatepass")
    cmd = imgsearch_cmd("items", "apply", "--changes", str(folder / "changes.jsonl"), "--index-uri", store.as_uri())
    return subprocess.run([*cmd, "--json"], capture_output=True, text=True, timeout=180)


def _seq(svc: ServiceProcess) -> int:
    return int(httpx.get(svc.url + "/readyz", trust_env=False).json()["index"]["changes"]["seq"])


def _upsert(item_id: str, **extra: object) -> dict[str, object]:
    return {"op": "upsert", "item_id": item_id, "image": "dog.jpg", "category": "Bag", "title": "a bag", **extra}


def _similar_ok(svc: ServiceProcess) -> bool:
    return httpx.get(f"{svc.url}/v1/items/{KNOWN}/similar?k=50", trust_env=False).status_code == 200


def test_rows_the_services_cannot_serve_are_refused_at_apply_and_serving_stays_whole(
    store: Path, replica: ServiceProcess
) -> None:
    deep: object = 1
    for _ in range(300):
        deep = [deep]
    cases = {
        "gtin": _upsert("bag-gtin", attrs={"gtin": 12345678901234567890123}),
        "deep": _upsert("bag-deep", attrs={"spec": deep}),
        "surrogate": json.dumps(_upsert("bag-s"))[:-1] + ', "attrs": {"note": "x\\udc00"}}\n',
        "dot": _upsert(".."),
        "slash": _upsert("a/b"),
    }
    seq = _seq(replica)
    for name, row in cases.items():
        done = _apply(store, store.parent / f"unservable-{name}", row if isinstance(row, str) else [row])
        assert done.returncode == 3, (name, done.returncode, done.stdout[-500:], done.stderr[-2000:])
    assert len(list((store / "versions" / current_version(store) / "changes").glob("*.json"))) == seq
    assert _seq(replica) == seq and _similar_ok(replica)


def test_a_forged_object_nested_deep_is_refused_and_later_objects_still_apply_on_a_new_replica(
    store: Path, replica: ServiceProcess
) -> None:
    version = current_version(store)
    seq = _seq(replica)
    body = b'{"rows": ' + b"[" * 5000 + b"]" * 5000 + b"}"
    header = json.dumps({"format": "imgsearch-changes", "version": 1, "sha256": hashlib.sha256(body).hexdigest()})
    (store / change_key(version, seq + 1)).parent.mkdir(parents=True, exist_ok=True)
    (store / change_key(version, seq + 1)).write_bytes(header.encode() + b"\n" + body)
    done = _apply(store, store.parent / "after-forged", [{"op": "delete", "item_id": KNOWN}])
    assert done.returncode == 0, done.stderr[-2000:]
    wait_until(lambda: _seq(replica) >= seq + 2, 20, message="the replica stopped at the forged object")
    assert httpx.get(f"{replica.url}/v1/items/{KNOWN}", trust_env=False).status_code == 404
    refused = httpx.get(replica.url + "/readyz", trust_env=False).json()["index"]["changes"]["refused"]
    assert any("RecursionError" in r["error"] for r in refused)
    fresh = _start(store, store.parent / "b")  # replays from the store: ready despite the forged object
    try:
        assert _seq(fresh) >= seq + 2
    finally:
        fresh.stop()


def test_garbage_at_the_last_sequence_number_refuses_apply_instead_of_losing_the_batch(
    tmp_path: Path, replica: ServiceProcess
) -> None:
    own = copy_index_store(tmp_path / "store")
    version = current_version(own)
    last = own / change_key(version, 999_999_999_999)
    last.parent.mkdir(parents=True, exist_ok=True)
    last.write_bytes(b"garbage")
    done = _apply(own, tmp_path / "batch", [{"op": "delete", "item_id": KNOWN}])
    assert done.returncode == 3, (done.stdout[-500:], done.stderr[-2000:])
    assert "last sequence number" in done.stdout + done.stderr
    assert sorted(p.name for p in last.parent.iterdir()) == [last.name]  # no 13-digit object nobody lists


def test_a_batch_over_the_row_limit_is_refused_and_unknown_deletes_hide_nothing(
    store: Path, replica: ServiceProcess
) -> None:
    too_many = "".join(json.dumps({"op": "delete", "item_id": f"ghost-{i}"}) + "\n" for i in range(MAX_BATCH_ROWS + 1))
    done = _apply(store, store.parent / "too-many", too_many)
    assert done.returncode == 3 and f"more than {MAX_BATCH_ROWS} rows" in done.stdout + done.stderr
    seq = _seq(replica)
    ghosts = [{"op": "delete", "item_id": f"ghost-{i}"} for i in range(MAX_BATCH_ROWS)]
    assert _apply(store, store.parent / "ghosts", ghosts).returncode == 0
    wait_until(lambda: _seq(replica) > seq, 20, message="the replica did not apply the deletes")
    changes = httpx.get(replica.url + "/readyz", trust_env=False).json()["index"]["changes"]
    assert changes["hidden_items"] < 10  # before: every one of the 10,000 ids was kept hidden
