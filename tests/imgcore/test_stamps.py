"""UTC stamps in names: one format for index versions and query log objects."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

from imgcore.stamps import parse_stamp, utc_stamp


def test_a_stamp_round_trips_to_the_second_in_utc() -> None:
    when = datetime(2026, 11, 29, 8, 15, 0, tzinfo=UTC)
    assert utc_stamp(when) == "20261129T081500Z"
    assert parse_stamp("20261129T081500Z") == when


def test_an_aware_time_is_converted_and_a_naive_one_taken_as_utc() -> None:
    tokyo = datetime(2026, 11, 29, 17, 15, 0, tzinfo=timezone(timedelta(hours=9)))
    assert utc_stamp(tokyo) == "20261129T081500Z"
    assert utc_stamp(datetime(2026, 11, 29, 8, 15, 0)) == "20261129T081500Z"


def test_anything_else_is_not_a_stamp() -> None:
    assert parse_stamp("latest") is None
    assert parse_stamp("20261129T081500") is None
    assert parse_stamp("20261332T081500Z") is None
