"""`imgsearch` command line. Each subcommand lives in services/cli/<name>.py."""

from __future__ import annotations

import argparse
import importlib
import logging
import sys
from collections.abc import Sequence

COMMAND_MODULES = ("infer", "models", "catalog", "index", "evaluate", "serve", "up", "search")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="imgsearch", description=__doc__)
    parser.add_argument("--log-level", default="INFO", help="logging level (default INFO)")
    sub = parser.add_subparsers(dest="command", required=True)
    for name in COMMAND_MODULES:
        module = importlib.import_module(f"services.cli.{name}")
        module.register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(
        level=args.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s %(message)s", stream=sys.stderr
    )
    code: int = args.func(args)
    return code


if __name__ == "__main__":
    sys.exit(main())
