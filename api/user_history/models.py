"""Request and response bodies of the user-history service (camelCase on the wire)."""

from datetime import UTC, datetime, timedelta
from typing import Annotated, Any, Literal

from pydantic import BaseModel, Field, field_validator

from api.common.pagination import Page
from api.common.responses import ApiModel, Timestamp, require_utc

USER_ID_PATTERN = r"^user-[A-Za-z0-9._-]{1,64}$"
# A little clock skew between the client and us is not a time "in the future".
_SKEW = timedelta(seconds=5)


class ReplayIn(ApiModel):
    """What to rebuild. Everything is optional: `{}` rebuilds all users' history from the earliest offsets
    and swaps it in."""

    user_id: Annotated[
        str | None, Field(default=None, pattern=USER_ID_PATTERN, description="Rebuild only this user's history")
    ] = None
    from_: Annotated[
        str,
        Field(
            default="earliest",
            alias="from",
            max_length=40,
            description="`earliest`, or a time: history before it is kept as it is, events from it replayed",
        ),
    ] = "earliest"
    until: Annotated[
        Timestamp | None,
        Field(
            default=None,
            description="A past time: build a separate read-only copy of history as it was then (never swapped in)",
        ),
    ] = None

    @field_validator("from_")
    @classmethod
    def _earliest_or_a_time(cls, value: str) -> str:
        if value == "earliest":
            return value
        try:
            moment = datetime.fromisoformat(value.replace("Z", "+00:00"))
        except ValueError:
            raise ValueError("must be 'earliest' or an ISO-8601 time, e.g. 2024-01-15T10:30:00Z") from None
        if moment.tzinfo is None:
            raise ValueError("must carry a time zone, e.g. 2024-01-15T10:30:00Z")
        require_utc(moment)  # or `from_time` overflows
        if moment > datetime.now(UTC) + _SKEW:
            raise ValueError("must not be in the future")
        return value

    @field_validator("until")
    @classmethod
    def _not_in_the_future(cls, value: datetime | None) -> datetime | None:
        if value is not None and value > datetime.now(UTC) + _SKEW:
            raise ValueError("must not be in the future")
        return value

    @property
    def from_time(self) -> datetime | None:
        if self.from_ == "earliest":
            return None
        return datetime.fromisoformat(self.from_.replace("Z", "+00:00")).astimezone(UTC)


# ---- answers ----


class ReplayRequestedOut(ApiModel):
    job_id: str
    state: Literal["queued"]
    user_id: str | None = Field(description="The one user rebuilt; null: everyone")
    from_: str = Field(alias="from", description="`earliest`, or the time replayed from")
    until: Timestamp | None = Field(description="The point in time of a snapshot; null: a rebuild swapped in")


class ReplayJobOut(ApiModel):
    job_id: str
    state: Literal["queued", "running", "completed", "failed"]
    phase: str
    user_id: str | None
    from_: str = Field(alias="from", description="`earliest`, or the time replayed from")
    until: Timestamp | None
    requested_by: str
    requested_at: Timestamp
    generation: int | None
    consumer_group: str | None
    events_processed: int
    events_total: int
    percent: float
    events_per_second: float | None
    eta_seconds: float | None
    started_at: Timestamp | None
    finished_at: Timestamp | None
    error: str | None
    snapshot: str | None = Field(description="The `?snapshot=` to read this job's point-in-time copy with")
    snapshot_expires_at: Timestamp | None
    snapshot_dropped_at: Timestamp | None


class ActivityOut(ApiModel):
    """One thing the user did (or that happened to their account), as history keeps it."""

    id: str = Field(description="The id of the event it comes from")
    type: str = Field(description="The activity type, e.g. `property.created`")
    category: str
    event_type: str = Field(description="The event's type with its version, e.g. `property.created.v1`")
    subject: str
    property_id: str | None
    occurred_at: Timestamp
    summary: str
    details: dict[str, Any]


class TimelineDayOut(ApiModel):
    date: str = Field(description="The local day, `YYYY-MM-DD`")
    count: int = Field(description="All the day's activities")
    by_type: dict[str, int]
    activities: list[ActivityOut] = Field(description="The day's newest `perDay` activities")


class TimelineOut(Page[TimelineDayOut]):
    time_zone: str


class RawEventOut(BaseModel):
    """A CloudEvent exactly as archived (its attribute names are CloudEvents', not camelCase)."""

    specversion: str
    id: str
    type: str
    source: str
    subject: str | None
    time: str
    datacontenttype: str
    userid: str | None = None
    sessionid: str | None = None
    correlationid: str | None = None
    causationid: str | None = None
    sequence: int | None = None
    data: Any


class StatsOut(ApiModel):
    user_id: str
    total_activities: int
    by_type: dict[str, int]
    by_category: dict[str, int]
    listings_created: int
    views_received: int
    searches: int
    saved_searches: int
    first_active_at: Timestamp | None
    last_active_at: Timestamp | None
    active_days_last30: int = Field(alias="activeDaysLast30")
    time_zone: str
    account_closed: bool
