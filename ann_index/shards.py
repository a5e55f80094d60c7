"""Sharded rebuilds: which catalog rows a shard embeds, shard files, and the verified merge.

A Kubernetes Indexed Job runs `count` pods; pod `i` (env JOB_COMPLETION_INDEX) embeds only the rows of
shard `i` and writes `<out>/shards/<run>/<i>.npz`. A final step merges every shard of the run in a
deterministic order and refuses an incomplete or inconsistent set before any index is built
(`ann_index.shard_job` runs both steps for `imgsearch index build --shard i/N | --merge-shards N`).

Pure functions over plain values and a minimal store protocol (`put_bytes`, `get_bytes`, `list`), so the
same code runs against file://, s3:// or an in-memory fake. This module is the public API; the code is in
- `shard_spec`: ShardSpec, assignment ("hash": sha256(item_id) mod count; "range": balanced contiguous
  blocks), run ids and shard keys;
- `shard_io`: shard files (encode, decode, write, find, "already done?");
- `shard_merge`: the verified merge.
"""

from __future__ import annotations

from ann_index.shard_io import (
    FORMAT_VERSION,
    Shard,
    decode_shard,
    encode_shard,
    shard_indices,
    shard_is_done,
    write_shard,
)
from ann_index.shard_merge import MergedShards, merge_shards
from ann_index.shard_spec import (
    JOB_INDEX_ENV,
    MAX_SHARDS,
    MODES,
    SHARD_DIR,
    ShardError,
    ShardMode,
    ShardSpec,
    ShardStore,
    check_run,
    line_range,
    run_id,
    select_rows,
    shard_key,
    shard_of,
)

__all__ = [
    "FORMAT_VERSION",
    "JOB_INDEX_ENV",
    "MAX_SHARDS",
    "MODES",
    "SHARD_DIR",
    "MergedShards",
    "Shard",
    "ShardError",
    "ShardMode",
    "ShardSpec",
    "ShardStore",
    "check_run",
    "decode_shard",
    "encode_shard",
    "line_range",
    "merge_shards",
    "run_id",
    "select_rows",
    "shard_indices",
    "shard_is_done",
    "shard_key",
    "shard_of",
    "write_shard",
]
