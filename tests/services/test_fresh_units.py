"""Units of issue 17's service side: the gateway's cache state (version + change sequence, forward only) and
which upserts a partition replica keeps."""

from __future__ import annotations

from typing import Any

from imgcore.index_wire import partition_of
from services.gateway.served_index import ServedIndex, least_changes
from services.index.changes import partition_filter


def _ready(version: str, seq: int) -> dict[str, Any]:
    return {"index": {"version": version, "categories": {}, "changes": {"seq": seq}}}


def test_cache_state_follows_changes_forward_and_never_caches_a_lagging_answer() -> None:
    swaps: list[str | None] = []
    served = ServedIndex(backends=None, on_swap=lambda: swaps.append(served.state))  # type: ignore[arg-type]
    served.note(_ready("v1", 3))
    assert served.state == "v1+3" and served.answered == "v1+3"
    served.set_version("v1", 5)  # a replica applied more: cached answers end
    assert served.state == "v1+5" and swaps == ["v1+3", "v1+5"]
    served.set_version("v1", 4)  # a replica still behind: the state stays, its answer is not cacheable
    assert served.state == "v1+5" and served.answered == "v1+4" and len(swaps) == 2
    served.set_version("v2", 0)  # a new version starts its own log
    assert served.state == "v2+0" and served.answered == "v2+0"


def test_a_partitioned_gateway_keys_by_what_every_partition_applied() -> None:
    states = [(True, _ready("v1", 7)), (True, _ready("v1", 5)), (False, {}), (True, {"index": {"version": "v1"}})]
    assert least_changes(states) == 5
    assert least_changes([(False, {})]) is None


def test_a_partition_replica_keeps_only_its_own_upserts() -> None:
    assert partition_filter(None, {"partition": {"of": 4}}) is None
    assert partition_filter(2, {}) is None  # an unpartitioned version: everything
    keep = partition_filter(2, {"partition": {"index": 2, "of": 4}})
    assert keep is not None
    ids = [f"item-{i}" for i in range(200)]
    assert [i for i in ids if keep(i)] == [i for i in ids if partition_of(i, 4) == 2] != []
