"""The CloudEvents 1.0 envelope every event travels in.

Extension attributes (lower-case, as CloudEvents requires) carry who and why: `userid`,
`sessionid`, `correlationid`, `causationid`, and `sequence`, the aggregate's version after
this event, which sinks use to ignore anything older than what they hold.
"""

from datetime import UTC, datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_serializer, field_validator

from schemas.ids import new_id

SPEC_VERSION: Literal["1.0"] = "1.0"
SOURCE_PREFIX = "/hyderabad-infra"


def utc_now() -> datetime:
    return datetime.now(UTC)


def format_time(value: datetime) -> str:
    """ISO-8601 UTC with a `Z`, millisecond precision: the one time format on the wire."""
    return value.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


class Envelope(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    specversion: Literal["1.0"] = SPEC_VERSION
    id: str = Field(min_length=1)
    type: str = Field(pattern=r"^[a-z][a-z0-9_]*(\.[a-z][a-z0-9_]*)+\.v[0-9]+$")
    source: str = Field(min_length=1)
    subject: str = Field(min_length=1)
    time: datetime
    datacontenttype: Literal["application/json"] = "application/json"
    userid: str | None = None
    sessionid: str | None = None
    correlationid: str | None = None
    causationid: str | None = None
    sequence: int | None = Field(default=None, ge=0)
    data: dict[str, Any] = Field(default_factory=dict)

    @field_validator("time")
    @classmethod
    def _must_be_aware(cls, value: datetime) -> datetime:
        if value.tzinfo is None:
            raise ValueError("time must carry a time zone")
        # The wire carries milliseconds; holding the same here makes encode/decode an exact round trip.
        return value.astimezone(UTC).replace(microsecond=value.microsecond // 1000 * 1000)

    @field_serializer("time")
    def _time_with_z(self, value: datetime) -> str:
        return format_time(value)

    @property
    def base_type(self) -> str:
        """`property.created.v2` -> `property.created`."""
        return self.type.rsplit(".", 1)[0]

    @property
    def version(self) -> int:
        return int(self.type.rsplit(".v", 1)[1])


def new_event(
    *,
    type: str,
    subject: str,
    data: dict[str, Any],
    service: str,
    userid: str | None = None,
    sessionid: str | None = None,
    correlationid: str | None = None,
    causationid: str | None = None,
    sequence: int | None = None,
    time: datetime | None = None,
    event_id: str | None = None,
) -> Envelope:
    """Build an envelope with a fresh `evt-…` id; `service` names the producer (`/hyderabad-infra/property`)."""
    event_id = event_id or new_id("evt")
    return Envelope(
        id=event_id,
        type=type,
        source=f"{SOURCE_PREFIX}/{service}",
        subject=subject,
        time=time or utc_now(),
        userid=userid,
        sessionid=sessionid,
        correlationid=correlationid or event_id,
        causationid=causationid,
        sequence=sequence,
        data=data,
    )
