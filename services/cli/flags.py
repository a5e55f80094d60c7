"""Options that several subcommands take, spelled the same in each."""

from __future__ import annotations

import argparse
from pathlib import Path

S3_ENDPOINT_FLAG = "--s3-endpoint-url"  # the settings field and env var are s3_endpoint_url / S3_ENDPOINT_URL
S3_ENDPOINT_ALIAS = "--s3-endpoint"  # most subcommands' spelling before they were made alike: kept for scripts


def add_s3_endpoint_url(parser: argparse.ArgumentParser, store: str = "store") -> None:
    """`--s3-endpoint-url URL` into `args.s3_endpoint_url`; `--s3-endpoint` is accepted too but not shown.

    `store` names what the endpoint serves in the help ("index store", "log").
    """
    parser.add_argument(
        S3_ENDPOINT_FLAG,
        dest="s3_endpoint_url",
        default=None,
        metavar="URL",
        help=f"S3-compatible endpoint for an s3:// {store} (else $AWS_ENDPOINT_URL)",
    )
    # A second action, not a second option string of the first: argparse can hide a whole action only.
    parser.add_argument(S3_ENDPOINT_ALIAS, dest="s3_endpoint_url", help=argparse.SUPPRESS)


def add_embedding_cache(parser: argparse.ArgumentParser, what: str) -> None:
    """`--embedding-cache FILE`: SQLite vectors keyed by image sha256 per embedder and crop; `what` it does here."""
    parser.add_argument(
        "--embedding-cache",
        type=lambda s: Path(s) if s else None,
        default=None,
        metavar="FILE",
        help="SQLite file of vectors keyed by image sha256 (per embedder and crop): " + what,
    )
