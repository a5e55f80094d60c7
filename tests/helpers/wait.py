"""Polling until something happens: one loop, one deadline, one failure message, for every test."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TypeVar

from services.stack import ServiceProcess

T = TypeVar("T")


def wait_until(
    predicate: Callable[[], T],
    timeout_s: float = 30.0,
    *,
    interval_s: float = 0.1,
    ignoring: type[Exception] | tuple[type[Exception], ...] = (),
    service: ServiceProcess | None = None,
    message: str | Callable[[], str] = "condition not reached in time",
) -> T:
    """Call `predicate` every `interval_s` seconds until it returns a true value; return that value.

    An exception of an `ignoring` type counts as "not yet". With `service`, fail at once (with its log) when
    that process exits. After `timeout_s`, AssertionError with `message` (a callable: evaluated then).
    """
    deadline = time.monotonic() + timeout_s
    while True:
        if service is not None:
            assert service.alive(), f"{service.name} exited with {service.proc.returncode}:\n{service.log_tail()}"
        try:
            value = predicate()
            if value:
                return value
        except ignoring:
            pass
        if time.monotonic() > deadline:
            text = message() if callable(message) else message
            tail = f"\n{service.log_tail()}" if service is not None else ""
            raise AssertionError(f"{text} (waited {timeout_s:g} s){tail}")
        time.sleep(interval_s)
