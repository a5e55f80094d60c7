"""A rebuild during a stream of `items apply` calls: every change newer than the snapshot reaches the new
version, changes older than it are superseded, nothing is applied twice."""

from __future__ import annotations

import json
import threading
import time
from pathlib import Path

import pytest

from ann_index.build.rebuild import RebuildOptions, rebuild
from ann_index.catalog.demo import write_fmnist_catalog
from ann_index.changes.apply import Applied, apply_changes
from ann_index.serving.fresh import FreshIndex
from ann_index.version.changes import Delete, list_changes, read_batch, write_batch
from ann_index.version.publish import read_current
from imgcore.storage import open_store
from tests.ann_index.fakes import FakeEmbedder

OPTS = RebuildOptions(progress=False, n_trees=8, gate_queries=100)


@pytest.fixture(scope="module")
def shop(tmp_path_factory: pytest.TempPathFactory) -> Path:
    catalog = write_fmnist_catalog(tmp_path_factory.mktemp("cat") / "shop", limit=500)
    lines = catalog.read_text().splitlines()
    (catalog.parent / "snapshot.jsonl").write_text("\n".join(lines[:200]) + "\n")
    for n, line in enumerate(lines[200:]):
        (catalog.parent / f"change-{n:03d}.jsonl").write_text(json.dumps({"op": "upsert", **json.loads(line)}) + "\n")
    return catalog.parent


def _replayed(store_uri: str) -> FreshIndex:
    """What a replica of the served version holds after replaying its change log."""
    store = open_store(store_uri)
    version = str(read_current(store))
    fresh = FreshIndex(64)
    for seq, _ in list_changes(store, version):
        fresh.apply(read_batch(store, version, seq, embedder_sha256=FakeEmbedder().sha256, dim=64))
    return fresh


def test_a_rebuild_during_a_stream_of_changes_loses_none(shop: Path, tmp_path: Path) -> None:
    out = (tmp_path / "store").as_uri()
    old = rebuild(str(shop / "snapshot.jsonl"), out, FakeEmbedder(), OPTS)["version"]
    store = open_store(out)
    write_batch(store, old, [Delete("fmnist-train-00003")], embedder_sha256=FakeEmbedder().sha256, dim=64)
    time.sleep(1.1)  # version names have one-second resolution; the snapshot is taken after the delete
    snapshot_at = time.time()
    applied: list[Applied] = []
    done = threading.Event()

    def stream() -> None:
        for n in range(300):  # paced, so that it outlasts the rebuild even on a busy machine
            applied.append(apply_changes(str(shop / f"change-{n:03d}.jsonl"), out, FakeEmbedder(), OPTS))
            if done.is_set() and applied[-1].version != old:
                return  # the stream has run past the switch
            time.sleep(0.1)

    streamer = threading.Thread(target=stream)
    streamer.start()
    time.sleep(0.3)
    new = rebuild(str(shop / "snapshot.jsonl"), out, FakeEmbedder(), _since(snapshot_at))
    done.set()
    streamer.join()
    assert new["version"] != old and read_current(store) == new["version"]
    assert any(a.version == old for a in applied) and applied[-1].version == new["version"]  # it spanned the switch
    fresh = _replayed(out)
    ids = {f"fmnist-train-{200 + n:05d}" for n in range(len(applied))}
    missing = [i for i in sorted(ids) if fresh.get(i) is None]
    assert not missing, f"{len(missing)} of {len(ids)} streamed upserts lost: {missing[:5]}"
    assert "fmnist-train-00003" not in fresh.hidden  # older than the snapshot: superseded, not carried
    assert fresh.size == len(ids)


def _since(at: float) -> RebuildOptions:
    return RebuildOptions(progress=False, n_trees=8, gate_queries=100, changes_since=at)


def test_changes_carried_to_a_version_of_another_embedder_are_embedded_again(shop: Path, tmp_path: Path) -> None:
    out = (tmp_path / "store").as_uri()
    old = rebuild(str(shop / "snapshot.jsonl"), out, FakeEmbedder(), OPTS)["version"]
    applied = apply_changes(str(shop / "change-000.jsonl"), out, FakeEmbedder(), OPTS)
    assert applied.version == old
    time.sleep(1.1)  # a new version name
    other = FakeEmbedder(name="other-embedder", sha256="b" * 64)
    new = rebuild(str(shop / "snapshot.jsonl"), out, other, _since(applied.written_at - 1))["version"]
    store = open_store(out)
    [(seq, _)] = list_changes(store, new)
    batch = read_batch(store, new, seq, embedder_sha256=other.sha256, dim=64)  # refused unless bound to it
    assert batch.origin == f"{old}/{applied.seq}" and batch.written_at == applied.written_at
    assert [row.item_id for row in batch.rows] == ["fmnist-train-00200"]
