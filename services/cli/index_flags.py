"""The flags of `imgsearch index build` that take checked values: shards, partitions, times, the embedder."""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING, Any

from services.defaults import DEFAULT_EMBEDDER_URI, model_uri

if TYPE_CHECKING:
    from ann_index.shards.spec import ShardSpec


def _shard_spec(text: str) -> ShardSpec:
    from ann_index.shards.spec import ShardError, ShardSpec

    try:
        return ShardSpec.parse(text)
    except ShardError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from exc


def _shard_count(text: str) -> int:
    from ann_index.shards.spec import MAX_SHARDS

    try:
        count = int(text)
    except ValueError:
        count = 0
    if not 1 <= count <= MAX_SHARDS:
        raise argparse.ArgumentTypeError(f"shard count must be an integer in 1..{MAX_SHARDS}, got {text!r}")
    return count


def _partition_count(text: str) -> int:
    from ann_index.version.partition_layout import MAX_PARTITIONS

    if not text.isdigit() or not 1 <= int(text) <= MAX_PARTITIONS:
        raise argparse.ArgumentTypeError(f"partitions must be an integer in 1..{MAX_PARTITIONS}, got {text!r}")
    return int(text)


def _instant(text: str) -> float:
    """Epoch seconds from epoch seconds or an ISO 8601 time (UTC unless it says otherwise)."""
    from datetime import UTC, datetime

    try:
        return float(text)
    except ValueError:
        pass
    try:
        stamp = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"not a time: {text!r} (ISO 8601 or epoch seconds)") from exc
    return (stamp if stamp.tzinfo else stamp.replace(tzinfo=UTC)).timestamp()


def add_shard_flags(build: argparse.ArgumentParser) -> None:
    """`--shard` and `--merge-shards`: the two steps of a sharded rebuild, one per run."""
    sharded = build.add_mutually_exclusive_group()
    sharded.add_argument(
        "--shard",
        type=_shard_spec,
        default=None,
        metavar="I/N",
        help="sharded rebuild, step 1: embed only shard I of N (sha256(item_id) mod N == I), write "
        "<out>/shards/<run>/I.npz and publish nothing; a shard already complete is skipped",
    )
    sharded.add_argument(
        "--merge-shards",
        type=_shard_count,
        default=None,
        metavar="N",
        help="sharded rebuild, step 2: merge the N shards of this catalog's run (refusing a missing or "
        "inconsistent set), then build, gate and publish as usual",
    )


def add_publish_flags(build: Any) -> None:
    """How the version is laid out (partitions), which changes it carries over (issue 17), what it reports."""
    build.add_argument(
        "--partitions",
        type=_partition_count,
        default=1,
        metavar="N",
        help="publish one version of N partitions (items split by a hash of item_id; each served by "
        "`imgsearch serve index --partition I`), gated on the merged answer; 1 (default): one index",
    )
    build.add_argument(
        "--changes-since",
        type=_instant,
        default=None,
        metavar="TIME",
        help="when the catalog snapshot was taken (ISO 8601 or epoch seconds): `items apply` changes written "
        "later are carried over to the new version, older ones are in the snapshot (default: when the rebuild "
        "reads the catalog)",
    )
    build.add_argument(
        "--duplicates",
        action="store_true",
        help="also write versions/<v>/duplicates.jsonl: near-identical images of different products, as "
        "`imgsearch index duplicates` lists them (an exact pass over all vectors; the manifest says how long)",
    )


def add_embedding_flags(build: Any) -> None:
    """Which embedder the version is built with, and where the images are decoded for it."""
    build.add_argument(
        "--decode-processes",
        type=int,
        default=0,
        metavar="N",
        help="worker processes that decode, thumbnail and preprocess images at lower priority than the model; "
        "0 (default): in the decode threads of the job's own process (docs/benchmarks.md, P4, decode processes: "
        "slower than the threads on a quiet 2-core machine)",
    )
    build.add_argument(
        "--thumbnail-format",
        choices=("jpeg", "webp"),  # ann_index.thumbs.ThumbFormat, without importing cv2 for --help
        default="jpeg",
        help="item thumbnails (256 px, served by /v1/items/{id}/image): jpeg (default; a twelfth of WebP's CPU "
        "in the rebuild; a catalog image that is already a small plain PNG or JPEG is kept as it is) or webp "
        "(~30 %% fewer bytes, always re-encoded)",
    )
    build.add_argument(
        "--embedder",
        type=model_uri,
        default=DEFAULT_EMBEDDER_URI,
        metavar="NAME|PATH|URI",
        help="embedder: a model of this repository (fmnist-lite0, general-lite0), a folder (the --out of "
        "imgsearch train) or a model folder URI (default: the demo's fmnist-lite0-int8)",
    )


def _threshold(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = float("nan")
    if not 0.0 < value <= 1.0:
        raise argparse.ArgumentTypeError(f"threshold must be a cosine in (0, 1], got {text!r}")
    return value


def add_duplicates_flags(dups: argparse.ArgumentParser) -> None:
    """`index duplicates`: which index, how near, where the report goes."""
    dups.add_argument("--index-uri", required=True, metavar="URI", help="index store root: path, file:// or s3://")
    dups.add_argument("--version", default=None, help="this version instead of CURRENT")
    dups.add_argument(
        "--threshold",
        type=_threshold,
        default=None,
        metavar="T",
        help="fingerprint cosine at or above which two pictures are near-identical (default: "
        "imgcore.fingerprint.DUPLICATE_PRINT_SCORE, calibrated on re-encoded, resized, cropped and tinted copies "
        "by bench/duplicates.py)",
    )
    dups.add_argument("--out", default=None, metavar="FILE", help="write the report here (default: stdout)")
