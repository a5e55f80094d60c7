"""Shard assignment, shard files and the verified merge of a sharded (Indexed Job) rebuild."""

from __future__ import annotations

import hashlib
import io
import json
from dataclasses import dataclass, replace

import numpy as np
import pytest

from ann_index.shards.files import decode_shard, encode_shard, shard_indices, shard_is_done, write_shard
from ann_index.shards.merge import MergedShards, merge_shards
from ann_index.shards.spec import ShardError, ShardSpec, run_id, select_rows, shard_key, shard_of


class MemStore:
    """The three ObjectStore methods sharding uses, in memory."""

    def __init__(self) -> None:
        self.objects: dict[str, bytes] = {}

    def put_bytes(self, key: str, data: bytes) -> None:
        self.objects[key] = bytes(data)

    def get_bytes(self, key: str) -> bytes:
        return self.objects[key]

    def list(self, prefix: str = "") -> list[str]:
        return sorted(k for k in self.objects if k.startswith(prefix))


@pytest.fixture(params=["memory", "file"])
def store(request: pytest.FixtureRequest, tmp_path):  # type: ignore[no-untyped-def]
    if request.param == "memory":
        return MemStore()
    storage = pytest.importorskip("imgcore.storage")
    return storage.open_store(tmp_path.as_uri())


@dataclass(frozen=True)
class Row:
    item_id: str
    category: str


CATALOG = [Row(f"item-{n:04d}", "shirt" if n % 3 else "shoe") for n in range(257)]
IDS = [row.item_id for row in CATALOG]
DIM = 8


def fake_embed(ids: list[str]) -> np.ndarray:
    """Deterministic per-id vectors, so a merge can be checked against an unsharded run."""
    out = np.zeros((len(ids), DIM), dtype=np.float32)
    for n, item_id in enumerate(ids):
        out[n] = np.random.default_rng(shard_of(item_id, 2**32)).standard_normal(DIM)
    return out


def run_sharded(store, run: str, count: int, *, skip: set[str] = frozenset()) -> None:  # type: ignore[no-untyped-def, assignment]
    for i in range(count):
        rows = select_rows(CATALOG, ShardSpec(i, count))
        ids = [r.item_id for r in rows if r.item_id not in skip]
        skipped = [r.item_id for r in rows if r.item_id in skip]
        write_shard(store, run, ShardSpec(i, count), ids, fake_embed(ids), skipped=skipped, embedder_sha256="e" * 64)


# --- assignment -------------------------------------------------------------------------------------


def test_spec_parse() -> None:
    assert ShardSpec.parse("3/8") == ShardSpec(3, 8)
    assert ShardSpec.parse(" 0 / 1 ") == ShardSpec(0, 1)
    assert str(ShardSpec(2, 5)) == "2/5"
    for bad in ("8/8", "-1/4", "1/0", "a/b", "3", "", "0/10001"):
        with pytest.raises(ShardError):
            ShardSpec.parse(bad)


def test_shard_of_spreads_rows() -> None:
    assert shard_of("a", 1) == 0
    counts = np.bincount([shard_of(x, 8) for x in IDS], minlength=8)
    assert counts.sum() == len(IDS) and counts.min() > 10  # no empty or starved shard on 257 rows
    with pytest.raises(ShardError):
        shard_of("a", 0)


def test_shard_of_known_values() -> None:
    # The formula is part of the on-disk contract: a change would silently re-shard runs in flight.
    for key in ("a", "item-0042", "日本"):
        expected = int.from_bytes(hashlib.sha256(key.encode()).digest()[:8], "big") % 7
        assert shard_of(key, 7) == expected


@pytest.mark.parametrize("count", [1, 3, 8])
def test_select_rows_partitions_catalog(count: int) -> None:
    parts = [select_rows(CATALOG, ShardSpec(i, count)) for i in range(count)]
    flat = [r.item_id for p in parts for r in p]
    assert sorted(flat) == sorted(IDS) and len(flat) == len(set(flat))
    for i, p in enumerate(parts):  # catalog order within a shard, and every row where shard_of puts it
        pos = [IDS.index(r.item_id) for r in p]
        assert pos == sorted(pos)
        assert all(shard_of(r.item_id, count) == i for r in p)


def test_hash_mode_ignores_catalog_order_and_other_rows() -> None:
    spec = ShardSpec(2, 5)
    a = {r.item_id for r in select_rows(CATALOG, spec)}
    b = {r.item_id for r in select_rows(list(reversed(CATALOG[:100])), spec)}
    assert b == {x for x in a if int(x.split("-")[1]) < 100}


# --- shard files ------------------------------------------------------------------------------------


def test_shard_key_layout_and_run_ids() -> None:
    assert shard_key("2024-06-01T0300", 3) == "shards/2024-06-01T0300/3.npz"
    for bad in ("", "a/b", "..", ".", "x" * 200, "a b", "-x"):
        with pytest.raises(ShardError):
            shard_key(bad, 0)


def test_write_and_decode_roundtrip(store) -> None:  # type: ignore[no-untyped-def]
    spec = ShardSpec(1, 3)
    ids = [x for x in IDS if shard_of(x, 3) == 1][:10]
    vec = fake_embed(ids).astype(np.float64)  # cast to float32 on write
    key = write_shard(store, "r1", spec, ids, vec, skipped=[], embedder_sha256="ab" * 32)
    assert key == "shards/r1/1.npz"
    shard = decode_shard(store.get_bytes(key))
    assert shard.ids == tuple(ids) and shard.spec == spec
    assert shard.vectors.dtype == np.float32 and np.allclose(shard.vectors, vec)
    assert shard.embedder_sha256 == "ab" * 32 and shard.dim == DIM


def test_write_refuses_bad_input() -> None:
    s = MemStore()
    spec = ShardSpec(0, 1)
    with pytest.raises(ShardError, match="2 ids but 1 vectors"):
        write_shard(s, "r", spec, ["a", "b"], np.zeros((1, 4)))
    with pytest.raises(ShardError, match="twice"):
        write_shard(s, "r", spec, ["a", "a"], np.zeros((2, 4)))
    with pytest.raises(ShardError, match="twice"):
        write_shard(s, "r", spec, ["a"], np.zeros((1, 4)), skipped=["a"])
    with pytest.raises(ShardError, match="NaN"):
        write_shard(s, "r", spec, ["a"], np.full((1, 4), np.nan))
    with pytest.raises(ShardError, match="2-D"):
        write_shard(s, "r", spec, ["a"], np.zeros(4))
    with pytest.raises(ShardError, match="floating"):
        write_shard(s, "r", spec, ["a"], np.zeros((1, 4), dtype=np.int64))
    wrong = next(x for x in IDS if shard_of(x, 4) != 0)
    with pytest.raises(ShardError, match="belongs to shard"):
        write_shard(s, "r", ShardSpec(0, 4), [wrong], np.zeros((1, 4)))
    assert s.objects == {}


def test_decode_refuses_garbage_and_pickles() -> None:
    with pytest.raises(ShardError):
        decode_shard(b"not a zip")
    buf = io.BytesIO()
    np.savez(buf, header=np.array([{"format": 1}], dtype=object))
    with pytest.raises(ShardError):
        decode_shard(buf.getvalue())


# --- merge ------------------------------------------------------------------------------------------


@pytest.mark.parametrize("count", [1, 4, 7])
def test_merge_equals_unsharded(store, count: int) -> None:  # type: ignore[no-untyped-def]
    run_sharded(store, "run1", count)
    merged = merge_shards(store, "run1", count, expected_ids=IDS, embedder_sha256="e" * 64)
    assert isinstance(merged, MergedShards)
    assert merged.ids == IDS and merged.skipped == [] and merged.vectors.shape[1] == DIM
    np.testing.assert_array_equal(merged.vectors, fake_embed(IDS))
    # Without the catalog: shard order, deterministic across calls.
    again = merge_shards(store, "run1", count)
    assert sorted(again.ids) == sorted(IDS)
    assert again.ids == merge_shards(store, "run1", count).ids


def test_merge_accounts_for_skipped_rows(store) -> None:  # type: ignore[no-untyped-def]
    skip = {"item-0003", "item-0100"}
    run_sharded(store, "r", 3, skip=skip)
    merged = merge_shards(store, "r", 3, expected_ids=IDS)
    assert merged.ids == [x for x in IDS if x not in skip]
    assert merged.skipped == ["item-0003", "item-0100"]
    assert merged.vectors.shape == (len(IDS) - 2, DIM)


def test_merge_refuses_missing_and_extra_shards() -> None:
    s = MemStore()
    run_sharded(s, "r", 4)
    del s.objects["shards/r/2.npz"]
    with pytest.raises(ShardError, match=r"missing \[2\]"):
        merge_shards(s, "r", 4)
    s2 = MemStore()
    run_sharded(s2, "r", 5)
    with pytest.raises(ShardError, match=r"unexpected \[4\]"):
        merge_shards(s2, "r", 4)  # a leftover shard of a run with another count
    s2.objects["shards/r/notes.txt"] = b"x"
    with pytest.raises(ShardError, match="unexpected object"):
        shard_indices(s2, "r")


def test_merge_refuses_incomplete_catalog_coverage() -> None:
    s = MemStore()
    run_sharded(s, "r", 2)
    with pytest.raises(ShardError, match="1 catalog rows in no shard"):
        merge_shards(s, "r", 2, expected_ids=[*IDS, "item-new"])
    with pytest.raises(ShardError, match="shard rows not in the catalog"):
        merge_shards(s, "r", 2, expected_ids=IDS[:-1])


def test_merge_refuses_inconsistent_shards() -> None:
    s = MemStore()
    run_sharded(s, "r", 2)
    other = MemStore()
    run_sharded(other, "other", 2)
    s.objects["shards/r/1.npz"] = other.objects["shards/other/1.npz"]  # copied from another run
    with pytest.raises(ShardError, match="of run 'other'"):
        merge_shards(s, "r", 2)

    s = MemStore()
    run_sharded(s, "r", 2)
    ids1 = [x for x in IDS if shard_of(x, 2) == 1]
    write_shard(s, "r", ShardSpec(1, 2), ids1, np.zeros((len(ids1), DIM + 1)), embedder_sha256="e" * 64)
    with pytest.raises(ShardError, match="different dimensions"):
        merge_shards(s, "r", 2)

    s = MemStore()
    run_sharded(s, "r", 2)
    write_shard(s, "r", ShardSpec(1, 2), ids1, fake_embed(ids1), embedder_sha256="f" * 64)
    with pytest.raises(ShardError, match="different models"):
        merge_shards(s, "r", 2)

    s = MemStore()
    run_sharded(s, "r", 2)
    with pytest.raises(ShardError, match="expected"):
        merge_shards(s, "r", 2, embedder_sha256="0" * 64)


def test_merge_refuses_an_id_in_the_wrong_shard() -> None:
    s = MemStore()
    run_sharded(s, "r", 2)
    shard = decode_shard(s.objects["shards/r/0.npz"])
    s.objects["shards/r/1.npz"] = encode_shard(replace(shard, spec=ShardSpec(1, 2)))  # shard 0's ids, again
    with pytest.raises(ShardError, match="belongs to shard 0/2, not 1/2"):
        merge_shards(s, "r", 2)


def test_decode_refuses_a_foreign_assignment() -> None:
    s = MemStore()
    run_sharded(s, "r", 2)
    with np.load(io.BytesIO(s.objects["shards/r/0.npz"])) as npz:
        members = {name: npz[name] for name in npz.files}
    header = json.loads(str(members["header"]))
    buf = io.BytesIO()
    np.savez(buf, **{**members, "header": np.array(json.dumps({**header, "mode": "range"}))})
    with pytest.raises(ShardError, match="unknown mode 'range'"):
        decode_shard(buf.getvalue())


def test_empty_shards_merge() -> None:
    s = MemStore()
    ids = ["only-one"]
    count = 4
    for i in range(count):
        mine = [x for x in ids if shard_of(x, count) == i]
        vec = fake_embed(mine) if mine else np.zeros((0, 0), dtype=np.float32)
        write_shard(s, "r", ShardSpec(i, count), mine, vec)
    merged = merge_shards(s, "r", count, expected_ids=ids)
    assert merged.ids == ids and merged.vectors.shape == (1, DIM)


def test_run_id_is_content_addressed() -> None:
    cat, emb = "a" * 64, "b" * 64
    rid = run_id(cat, emb, 8)
    assert rid == run_id(cat, emb, 8) and rid.startswith("hash8-") and len(rid) == len("hash8-") + 16
    salted = run_id(cat, emb, 8, salt="crop=foreground")
    assert len({rid, run_id("c" * 64, emb, 8), run_id(cat, "c" * 64, 8), run_id(cat, emb, 4), salted}) == 5
    # The id is part of the on-disk contract (shards written by a release are merged by the next one).
    material = f"{cat}:{emb}:8:hash".encode()
    assert rid == "hash8-" + hashlib.sha256(material).hexdigest()[:16]
    shard_key(rid, 0)  # a valid run id
    with pytest.raises(ShardError):
        run_id("A" * 64, emb, 8)
    with pytest.raises(ShardError):
        run_id(cat, emb, 0)


def test_shard_is_done_for_resumed_runs() -> None:
    s = MemStore()
    run_sharded(s, "r", 3)
    assert all(shard_is_done(s, "r", ShardSpec(i, 3), embedder_sha256="e" * 64) for i in range(3))
    assert not shard_is_done(s, "r", ShardSpec(1, 3), embedder_sha256="f" * 64)
    assert not shard_is_done(s, "other", ShardSpec(1, 3))
    s.objects["shards/r/2.npz"] = b"truncated"
    assert not shard_is_done(s, "r", ShardSpec(2, 3))
    assert not shard_is_done(s, "r", ShardSpec(1, 4))  # same index, other layout
