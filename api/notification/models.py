"""Request and answer bodies of the notification service (camelCase on the wire). Rules that span fields (one
recipient, a template or a subject and text) are checked in `api/notification/commands.py`, so each
problem names its field."""

from typing import Any, Literal

from pydantic import ConfigDict, Field, field_validator

from api.common.pagination import Page
from api.common.responses import ApiModel
from schemas.notifications import (
    HTML_MAX,
    SMS_MAX,
    SUBJECT_MAX,
    TEXT_MAX,
    Kind,
    Variable,
    header_problem,
    parse_clock,
    valid_time_zone,
)

USER_ID_PATTERN = r"^user-[A-Za-z0-9._-]{1,64}$"
NOTIFICATION_ID_PATTERN = r"^notif-[A-Za-z0-9]{1,64}$"
MAX_VARIABLES = 30


class EmailIn(ApiModel):
    """To a registered user (`userId`) or, for admins, an address (`to`). Either `subject` + `text` (+
    optional `html`; a plain HTML part is made from the text otherwise), or a `template` with
    `variables` (admins). `subject` is one line: line breaks and control characters are refused (422).

    What a user sends another user is a `message`: plain text only (`html` is refused with 403: HTML
    and templates are the platform's), labelled "Message from <sender> via Hyderabad Infra" wherever it
    arrives, in the recipient's inbox and by email or SMS only if their `message` preferences allow it."""

    model_config = ConfigDict(extra="forbid")

    user_id: str | None = Field(default=None, pattern=USER_ID_PATTERN)
    to: str | None = Field(default=None, min_length=3, max_length=254)
    kind: Kind | None = None
    subject: str | None = Field(default=None, min_length=1, max_length=SUBJECT_MAX)
    text: str | None = Field(default=None, min_length=1, max_length=TEXT_MAX)
    html: str | None = Field(default=None, min_length=1, max_length=HTML_MAX)
    template: str | None = Field(default=None, min_length=1, max_length=50)
    variables: dict[str, Variable] = Field(default_factory=dict, max_length=MAX_VARIABLES)

    @field_validator("subject")
    @classmethod
    def _one_line(cls, value: str | None) -> str | None:
        problem = None if value is None else header_problem(value)
        if problem:
            raise ValueError(problem)
        return value


class SmsIn(ApiModel):
    """To a registered user (`userId`) or, for admins, an E.164 number (`to`). From a user, a `message`
    (see the email's body)."""

    model_config = ConfigDict(extra="forbid")

    user_id: str | None = Field(default=None, pattern=USER_ID_PATTERN)
    to: str | None = Field(default=None, max_length=16)
    kind: Kind | None = None
    text: str | None = Field(default=None, min_length=1, max_length=SMS_MAX)
    template: str | None = Field(default=None, min_length=1, max_length=50)
    variables: dict[str, Variable] = Field(default_factory=dict, max_length=MAX_VARIABLES)


class ChannelChoiceIn(ApiModel):
    model_config = ConfigDict(extra="forbid")

    email: bool | None = None
    sms: bool | None = None
    in_app: bool | None = None


class ChannelsIn(ApiModel):
    model_config = ConfigDict(extra="forbid")

    listing_alert: ChannelChoiceIn | None = None
    account: ChannelChoiceIn | None = None
    marketing: ChannelChoiceIn | None = None
    message: ChannelChoiceIn | None = Field(
        default=None, description="Messages from other users: in the inbox only by default"
    )


class QuietHoursIn(ApiModel):
    """Times of day in the user's time zone, `HH:MM` or `HH:MM:SS`; start after end spans midnight."""

    model_config = ConfigDict(extra="forbid")

    start: str = Field(max_length=8)
    end: str = Field(max_length=8)

    @field_validator("start", "end")
    @classmethod
    def _clock(cls, value: str) -> str:
        parse_clock(value)
        return value


class PreferencesIn(ApiModel):
    """Only what is sent changes; `quietHours: null` turns quiet hours off."""

    model_config = ConfigDict(extra="forbid")

    channels: ChannelsIn | None = None
    quiet_hours: QuietHoursIn | None = None
    time_zone: str | None = Field(default=None, max_length=64)

    @field_validator("time_zone")
    @classmethod
    def _zone(cls, value: str | None) -> str | None:
        return None if value is None else valid_time_zone(value)


# ---- answers (`data` of the success envelope) ----


class NotificationQueuedOut(ApiModel):
    id: str
    state: Literal["queued"]
    state_url: str = Field(description="Where to read what became of it, channel by channel")


class ChannelChoiceOut(ApiModel):
    email: bool
    sms: bool
    in_app: bool


class ChannelsOut(ApiModel):
    listing_alert: ChannelChoiceOut
    account: ChannelChoiceOut
    marketing: ChannelChoiceOut
    message: ChannelChoiceOut


class QuietHoursOut(ApiModel):
    start: str
    end: str


class PreferencesOut(ApiModel):
    user_id: str
    channels: ChannelsOut
    quiet_hours: QuietHoursOut | None
    time_zone: str
    is_default: bool = Field(description="True until the user changes anything")
    updated_at: str | None


class BlockOut(ApiModel):
    user_id: str
    sender_id: str
    blocked: bool


class BlockedSendersOut(ApiModel):
    user_id: str
    blocked: list[str]


class MarkedReadOut(ApiModel):
    id: str
    read: Literal[True]
    read_at: str | None = Field(description="When it was read; null while the mark is on its way")


class NotificationDeletedOut(ApiModel):
    id: str
    deleted: Literal[True]


class ChannelStateOut(ApiModel):
    channel: str
    state: str = Field(description="`deferred` (with `until`), `suppressed` (with why), `sent` or `failed`")
    attempts: int
    detail: str | None
    until: str | None
    updated_at: str


class NotificationStateOut(ApiModel):
    id: str
    user_id: str | None = Field(description="The registered recipient; null for an outside address")
    requested_by: str | None = Field(description="The sender; null for the platform")
    kind: str
    channel: str
    title: str
    in_inbox: bool
    read: bool
    created_at: str
    channels: list[ChannelStateOut]


class InboxItemOut(ApiModel):
    id: str
    kind: str
    sender_id: str | None = Field(description="Who wrote a message; null for the platform's own")
    title: str
    body: str
    data: dict[str, Any]
    read: bool
    read_at: str | None
    created_at: str
    delivered_at: str | None


class InboxOut(Page[InboxItemOut]):
    unread_count: int
