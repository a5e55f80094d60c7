"""Units of the partitioned index's serving side (issue 16): the gateway's version choice and URL list, and when a
partition drops the previous version."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from services.common.settings import IndexSettings
from services.gateway.backends import index_urls
from services.gateway.partitions import choose_version
from services.index.partition_holder import PartitionHolder


def _up(primary: str, *held: str) -> tuple[bool, dict[str, Any]]:
    return True, {"index": {"version": primary}, "versions": [primary, *held]}


DOWN: tuple[bool, dict[str, Any]] = (False, {"error": "unreachable"})


def test_the_gateway_switches_only_when_every_partition_reports_the_new_version() -> None:
    assert choose_version("v1", [_up("v2", "v1"), _up("v1"), _up("v2", "v1")]) == "v1"
    assert choose_version("v1", [_up("v2", "v1"), _up("v2", "v1"), _up("v2", "v1")]) == "v2"
    assert choose_version(None, [_up("v1"), _up("v1"), _up("v1")]) == "v1"


def test_a_partition_that_is_down_holds_the_switch_but_not_the_answers() -> None:
    assert choose_version("v1", [_up("v2", "v1"), DOWN, _up("v2", "v1")]) == "v1"
    # A restarted partition that only has the new one: the others still hold it, so it is served.
    assert choose_version("v1", [_up("v2", "v1"), _up("v2"), _up("v2", "v1")]) == "v2"
    assert choose_version("v1", [DOWN, DOWN, DOWN]) == "v1"


def test_one_url_is_todays_index_and_several_are_partitions() -> None:
    assert index_urls("http://a:1/") == {"index": "http://a:1"}
    assert index_urls("http://a:1, http://b:2") == {
        "index": "http://a:1",
        "index-0": "http://a:1",
        "index-1": "http://b:2",
    }


@dataclass
class _Held:
    version: str


def test_the_previous_version_goes_when_unused_for_the_idle_time_or_at_the_timeout() -> None:
    holder = PartitionHolder(IndexSettings(partition=0, partition_drop_idle_s=5, partition_drop_timeout_s=60))
    holder.previous = _Held("v1")  # type: ignore[assignment]
    holder.loaded_at = 100.0
    assert not holder.drop_due(103.0)  # the gateways had no time to switch yet
    holder.last_use["v1"] = 104.0
    assert not holder.drop_due(108.0)  # still asked for 4 s ago
    assert holder.drop_due(109.5)  # nobody asked for 5 s: the gateways moved on
    holder.last_use["v1"] = 159.0
    assert holder.drop_due(160.0)  # still asked for, but held past the timeout
