"""Days in a user's time zone: pure functions, no I/O.

A day is the user's local calendar day: in Asia/Kolkata (UTC+05:30, no daylight saving) it starts at
18:30 UTC the evening before. Zones with daylight saving have 23- and 25-hour days; the bounds come
from the zone's rules, never from a fixed offset.
"""

from collections.abc import Iterable, Mapping
from datetime import UTC, date, datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

DEFAULT_TIME_ZONE = "Asia/Kolkata"


class UnknownTimeZone(ValueError):
    pass


def zone(name: str) -> ZoneInfo:
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        raise UnknownTimeZone(f"{name!r} is not an IANA time zone (e.g. Asia/Kolkata)") from None


def local_day(instant: datetime, tz: ZoneInfo) -> date:
    if instant.tzinfo is None:
        raise ValueError("an instant needs a time zone")
    return instant.astimezone(tz).date()


def day_bounds(day: date, tz: ZoneInfo) -> tuple[datetime, datetime]:
    """[start, end) of a local day, in UTC."""
    start = datetime.combine(day, time.min, tzinfo=tz)
    end = datetime.combine(day + timedelta(days=1), time.min, tzinfo=tz)
    return start.astimezone(UTC), end.astimezone(UTC)


def last_days_start(now: datetime, tz: ZoneInfo, days: int) -> datetime:
    """The start (UTC) of the local day `days - 1` days before today: "the last 30 days" includes today."""
    return day_bounds(local_day(now, tz) - timedelta(days=days - 1), tz)[0]


def bucket_by_day(
    activities: Iterable[Mapping[str, Any]], tz: ZoneInfo, at: str = "occurred_at"
) -> dict[date, list[Mapping[str, Any]]]:
    """Activities grouped by local day, days newest first, each day's activities in the order given."""
    days: dict[date, list[Mapping[str, Any]]] = {}
    for activity in activities:
        days.setdefault(local_day(activity[at], tz), []).append(activity)
    return dict(sorted(days.items(), reverse=True))
