"""Admin endpoints' guard: `Authorization: Bearer <IMGSEARCH_ADMIN_TOKEN>`, compared in constant time."""

from __future__ import annotations

import hmac
from collections.abc import Callable

from fastapi import Request

from services.common.errors import AdminDisabled, Unauthorized
from services.common.settings import CommonSettings


def admin_guard(settings: CommonSettings) -> Callable[[Request], None]:
    """A dependency that refuses the request unless it carries the admin token (admin off without one)."""
    token = settings.admin_token.get_secret_value().encode() if settings.admin_token else b""

    def require_admin(request: Request) -> None:
        if not token:
            raise AdminDisabled("admin endpoints are disabled: IMGSEARCH_ADMIN_TOKEN is not set")
        scheme, _, given = request.headers.get("authorization", "").partition(" ")
        if scheme.lower() != "bearer" or not hmac.compare_digest(given.strip().encode(), token):
            raise Unauthorized("admin endpoints need 'Authorization: Bearer <token>'")

    return require_admin
