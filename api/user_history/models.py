"""Request bodies of the user-history service."""

from datetime import UTC, datetime, timedelta
from typing import Annotated, Literal

from pydantic import Field, field_validator

from api.common.responses import ApiModel, Timestamp

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
        Literal["earliest"] | Timestamp,
        Field(
            default="earliest",
            alias="from",
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

    @field_validator("from_", "until")
    @classmethod
    def _not_in_the_future(cls, value: datetime | str | None) -> datetime | str | None:
        if isinstance(value, datetime) and value > datetime.now(UTC) + _SKEW:
            raise ValueError("must not be in the future")
        return value

    @property
    def from_time(self) -> datetime | None:
        return self.from_ if isinstance(self.from_, datetime) else None
