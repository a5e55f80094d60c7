"""Subcommands of the `imgsearch` CLI; each module exposes `register(subparsers)`."""
