"""The item -> partition hash: stable, in range, and spreading items evenly."""

from __future__ import annotations

import subprocess
import sys
from collections import Counter

import pytest

from imgcore.index_wire import partition_of


def test_one_partition_holds_everything() -> None:
    assert {partition_of(f"item-{i}", 1) for i in range(100)} == {0}


def test_spread_is_even_and_in_range() -> None:
    counts = Counter(partition_of(f"item-{i}", 4) for i in range(8000))
    assert set(counts) == {0, 1, 2, 3}
    assert all(1800 < n < 2200 for n in counts.values()), counts


def test_same_answer_in_another_process() -> None:
    ids = [f"sku-{i}" for i in range(50)]
    mine = [partition_of(i, 7) for i in ids]
    code = "from imgcore.index_wire import partition_of as p; print([p(f'sku-{i}', 7) for i in range(50)])"
    out = subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, text=True).stdout
    assert out.strip() == str(mine)


def test_zero_partitions_refused() -> None:
    with pytest.raises(ValueError, match="partitions"):
        partition_of("x", 0)
