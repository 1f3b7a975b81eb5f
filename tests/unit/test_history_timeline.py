"""Days in the user's time zone: Asia/Kolkata's midnight is 18:30 UTC the evening before."""

from datetime import UTC, date, datetime, timedelta

import pytest

from api.user_history.timeline import UnknownTimeZone, bucket_by_day, day_bounds, last_days_start, local_day, zone

KOLKATA = zone("Asia/Kolkata")


def at(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


def test_one_millisecond_before_midnight_in_kolkata_is_the_previous_day():
    assert local_day(at("2024-03-14T18:29:59.999Z"), KOLKATA) == date(2024, 3, 14)
    assert local_day(at("2024-03-14T18:30:00.000Z"), KOLKATA) == date(2024, 3, 15)


def test_the_same_instants_are_one_utc_day():
    utc = zone("UTC")
    assert local_day(at("2024-03-14T18:29:59.999Z"), utc) == local_day(at("2024-03-14T18:30:00.000Z"), utc)


def test_bucketing_splits_at_local_midnight_and_keeps_order_newest_day_first():
    activities = [
        {"id": "c", "occurred_at": at("2024-03-15T02:00:00Z")},
        {"id": "b", "occurred_at": at("2024-03-14T18:30:00Z")},
        {"id": "a", "occurred_at": at("2024-03-14T18:29:59.999Z")},
    ]
    days = bucket_by_day(activities, KOLKATA)
    assert list(days) == [date(2024, 3, 15), date(2024, 3, 14)]
    assert [a["id"] for a in days[date(2024, 3, 15)]] == ["c", "b"]
    assert [a["id"] for a in days[date(2024, 3, 14)]] == ["a"]


def test_day_bounds_are_the_local_midnights_in_utc():
    start, end = day_bounds(date(2024, 3, 15), KOLKATA)
    assert start == at("2024-03-14T18:30:00Z") and end == at("2024-03-15T18:30:00Z")


def test_a_daylight_saving_day_has_23_hours():
    start, end = day_bounds(date(2024, 3, 10), zone("America/New_York"))
    assert end - start == timedelta(hours=23)


def test_the_last_30_days_start_at_the_local_midnight_29_days_before_today():
    now = at("2024-03-14T20:00:00Z")  # already the 15th in Kolkata
    assert last_days_start(now, KOLKATA, 30) == at("2024-02-14T18:30:00Z")
    assert last_days_start(now, KOLKATA, 1) == at("2024-03-14T18:30:00Z")


def test_unknown_zones_are_refused():
    for name in ("Mars/Olympus", "", "../etc/passwd"):
        with pytest.raises(UnknownTimeZone):
            zone(name)


def test_naive_instants_are_refused():
    with pytest.raises(ValueError, match="time zone"):
        local_day(datetime(2024, 1, 1), KOLKATA)


def test_utc_instants_from_postgres_and_python_agree():
    assert local_day(datetime(2024, 3, 14, 18, 30, tzinfo=UTC), KOLKATA) == date(2024, 3, 15)
