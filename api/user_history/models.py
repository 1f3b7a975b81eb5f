"""Request bodies of the user-history service."""

from datetime import UTC, datetime, timedelta
from typing import Annotated

from pydantic import Field, field_validator

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
