"""UTC time stamps in names (index versions, query log objects): `20261129T081500Z`, sortable as text."""

from __future__ import annotations

from datetime import UTC, datetime

STAMP_FORMAT = "%Y%m%dT%H%M%SZ"


def utc_stamp(when: datetime | None = None) -> str:
    """`when` (default: now) as a UTC stamp; an aware time is converted, a naive one is taken as UTC."""
    when = when or datetime.now(UTC)
    return (when.astimezone(UTC) if when.tzinfo else when).strftime(STAMP_FORMAT)


def parse_stamp(text: str) -> datetime | None:
    """The UTC time of a stamp; None when `text` is not one."""
    try:
        return datetime.strptime(text, STAMP_FORMAT).replace(tzinfo=UTC)
    except ValueError:
        return None
