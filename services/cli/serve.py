"""`imgsearch serve NAME`: run one service (detector, embedder, index or gateway) with uvicorn.

Every settings field is a flag (`--max-batch-size 32`) overriding its environment variable. SIGTERM stops
accepting connections and lets in-flight requests finish (up to `--graceful-shutdown-s`). Slow clients
are cut (`--header-timeout-s`, `--body-timeout-s`) and connections capped (`--max-client-connections`) by
`services.common.http_protocol`.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import types
import typing
from pathlib import Path
from typing import Any

from services.common.server import build_app, uvicorn_config
from services.common.settings import ADMIN_TOKEN_ENV, SETTINGS_CLASSES, CommonSettings
from services.common.settings_groups import flat_fields

# Flag destinations are prefixed so they never collide with the top-level CLI options (e.g. --log-level).
_DEST = "setting_"


def _is_bool(annotation: Any) -> bool:
    if annotation is bool:
        return True
    if isinstance(annotation, types.UnionType) or typing.get_origin(annotation) is typing.Union:
        return bool in typing.get_args(annotation)
    return False


def add_settings_flags(parser: argparse.ArgumentParser, cls: type[CommonSettings]) -> None:
    """One flag per settings field by its flat name (except the admin token), default None = not given."""
    prefix = cls.model_config.get("env_prefix", "")
    for name, where in flat_fields(cls).items():
        if name == "admin_token":
            continue
        flag = "--" + name.replace("_", "-")
        # argparse expands %-formats in help text ("+37 %" would break --help).
        description = (where.info.description or "").replace("%", "%%")
        help_text = f"{description} (env {prefix}{name.upper()})"
        if _is_bool(where.info.annotation):
            parser.add_argument(
                flag, dest=_DEST + name, action=argparse.BooleanOptionalAction, default=None, help=help_text
            )
        else:
            parser.add_argument(flag, dest=_DEST + name, default=None, metavar=name.upper(), help=help_text)


def settings_from_args(name: str, args: argparse.Namespace) -> CommonSettings:
    """The service's settings: environment, then the flags that were given (by flat name, like the environment)."""
    cls = SETTINGS_CLASSES[name]
    given = {key: getattr(args, _DEST + key, None) for key in flat_fields(cls)}
    return cls(**{key: value for key, value in given.items() if value is not None})


def nice_process(increment: int) -> None:
    """Raise the niceness of every thread of this process (on Linux it is per thread: threads started at import,
    a native library's pool, would keep theirs); threads started later inherit it from the main thread."""
    tasks = Path("/proc/self/task")
    for tid in [int(t.name) for t in tasks.iterdir()] if tasks.is_dir() else [0]:
        with contextlib.suppress(ProcessLookupError):  # a thread that ended meanwhile
            os.setpriority(os.PRIO_PROCESS, tid, min(os.getpriority(os.PRIO_PROCESS, tid) + increment, 19))


def run_service(name: str, settings: CommonSettings) -> int:
    """Build the service app and serve it until SIGTERM/SIGINT."""
    if settings.server.nice:
        nice_process(settings.server.nice)
    if name == "index" and getattr(settings, "workers", 1) > 1:
        from services.index.workers import run_workers

        return run_workers(settings)  # type: ignore[arg-type]
    import uvicorn

    app = build_app(name, settings)
    uvicorn.Server(uvicorn_config(app, settings)).run()
    return 0


def register(sub: Any) -> None:
    """Add `serve NAME [flags]`."""
    parser = sub.add_parser("serve", help="run one service", description=__doc__)
    services = parser.add_subparsers(dest="service", required=True, metavar="NAME")
    for name, cls in SETTINGS_CLASSES.items():
        one = services.add_parser(
            name,
            help=(cls.__doc__ or "").strip().splitlines()[0],
            description=f"{cls.__doc__} Admin token: env {ADMIN_TOKEN_ENV}.",
        )
        add_settings_flags(one, cls)
        one.set_defaults(func=lambda args, n=name: run_service(n, settings_from_args(n, args)))
