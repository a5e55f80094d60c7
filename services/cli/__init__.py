"""`imgsearch` command line. Each subcommand lives in services/cli/<name>.py."""

from __future__ import annotations

import argparse
import importlib
import logging
import sys
from collections.abc import Sequence

from imgcore.errors import ImgSearchError
from services.common.server import configure_logging

COMMAND_MODULES: tuple[str, ...] = (
    "infer",
    "models",
    "catalog",
    "index",
    "evaluate",
    "serve",
    "up",
    "search",
    "replay",
    "rollout",
    "train",
    "items",
)
# What a user can cause with their input (a missing file, a bad value, a refused artifact): one line, no
# traceback. Any other exception is a bug and keeps its traceback.
USER_ERRORS = (ImgSearchError, OSError, ValueError)

log = logging.getLogger("imgsearch.cli")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="imgsearch", description=__doc__)
    parser.add_argument("--log-level", default="INFO", help="logging level (default INFO)")
    sub = parser.add_subparsers(dest="command", required=True)
    for name in COMMAND_MODULES:
        module = importlib.import_module(f"services.cli.{name}")
        module.register(sub)
    return parser


def command_name(args: argparse.Namespace) -> str:
    """`imgsearch index build`, `imgsearch detect`: the words the user typed to pick the command."""
    words = [str(value) for key, value in vars(args).items() if key.endswith("command") and value]
    return " ".join(["imgsearch", *words])


def main(argv: Sequence[str] | None = None) -> int:
    """Run one command; a user mistake prints `imgsearch CMD: error: ...` and exits 2, like a usage error."""
    args = build_parser().parse_args(argv)
    configure_logging(args.log_level)
    try:
        code: int = args.func(args)
    except USER_ERRORS as exc:
        log.debug("what failed", exc_info=exc)  # the traceback, for --log-level DEBUG
        message = exc.message if isinstance(exc, ImgSearchError) else str(exc)
        print(f"{command_name(args)}: error: {message or type(exc).__name__}", file=sys.stderr)
        return 2
    return code


if __name__ == "__main__":
    sys.exit(main())
