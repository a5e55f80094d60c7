"""Admin endpoints' guard: `Authorization: Bearer <IMGSEARCH_ADMIN_TOKEN>`, compared in constant time.

A token that is a placeholder or too short (`admin_token_problem`) is refused at start: admin stays off and
the log says why, so a template Secret applied as is never becomes a live, guessable token.
"""

from __future__ import annotations

import hmac
import logging
from collections.abc import Callable

from fastapi import Request

from services.common.errors import AdminDisabled, Unauthorized
from services.common.settings import ADMIN_TOKEN_ENV, CommonSettings, admin_token_problem

log = logging.getLogger("imgsearch.admin")


def usable_admin_token(settings: CommonSettings) -> bytes:
    """The admin token to require, or b"" (admin off) when none is set or the one set is unusable."""
    given = settings.admin_token.get_secret_value() if settings.admin_token else ""
    if not given:
        return b""
    problem = admin_token_problem(given)
    if problem is not None:
        log.error(
            "admin endpoints disabled: %s is %s; set a random token (openssl rand -hex 32)", ADMIN_TOKEN_ENV, problem
        )
        return b""
    return given.encode()


def admin_guard(settings: CommonSettings) -> Callable[[Request], None]:
    """A dependency that refuses the request unless it carries the admin token (admin off without one)."""
    token = usable_admin_token(settings)

    def require_admin(request: Request) -> None:
        if not token:
            raise AdminDisabled(f"admin endpoints are disabled: {ADMIN_TOKEN_ENV} is not set or not usable")
        scheme, _, given = request.headers.get("authorization", "").partition(" ")
        if scheme.lower() != "bearer" or not hmac.compare_digest(given.strip().encode(), token):
            raise Unauthorized("admin endpoints need 'Authorization: Bearer <token>'")

    return require_admin
