"""The notification language: requests, what became of each channel, the inbox and preferences.

Every event is on `notifications`. A notification's own events are keyed by its id (`notif-…`), so
they stay in order on one partition; a user's preferences are keyed by the user id, so one user's
changes stay in order too.

- `notification.requested.v1`   the notification service (email/SMS endpoints) or the notification
                                delivery reactor (saved-search alerts, welcome messages) asks for one.
- `notification.deferred.v1`    a channel waits for the end of the recipient's quiet hours.
- `notification.suppressed.v1`  a channel was not used: the recipient turned it off for that kind, or
                                the account was closed.
- `notification.sent.v1`        a channel delivered it (email accepted by the SMTP server, SMS by the
                                gateway, or placed in the in-app inbox), with the attempts it took.
- `notification.failed.v1`      a channel gave up (a permanent refusal, or the last attempt failed);
                                the request is on `dead-letters` with the error.
- `notification.read.v1`, `notification.deleted.v1`   the recipient read or removed it in the inbox.
- `notification.preferences_updated.v1`   a user's whole preferences after a change (absolute).
- `notification.sender_blocked.v1`, `notification.sender_unblocked.v1`   a user stops or resumes taking
                                messages from another user (keyed by the user who blocks, absolute).

Personal data: a registered recipient is named by user id only. Their email, phone and name are read
from the users read model at the moment of delivery, never written into these events. `address` is
only for recipients who are not registered users (an admin writing to an outside address).

Messages (`kind` `message`): what one user writes to another is plain text, labelled with the sender's
name when delivered, in-app unless the recipient's `message` preferences allow more, refused once the
recipient blocked the sender, and its subject and text travel sealed with both people's keys
(`seal_message`): closing either account leaves no readable copy.

Listing alerts: the saved search's name (`variables.searchName`) travels as the matcher sealed it, with
its owner's key; it is opened only in memory where an email, SMS or inbox text is rendered
(`open_search_name`), and once the key is gone the alert speaks of "a saved search". Older requests
carry it in the clear and render as they did.
"""

import hashlib
import html
import re
import unicodedata
from dataclasses import dataclass
from datetime import datetime, time, timedelta
from enum import StrEnum
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import Field, field_validator, model_validator

from schemas.personal import (
    MESSAGE_SUBJECT,
    MESSAGE_TEXT,
    SEARCH_NAME,
    UnreadablePersonalData,
    is_sealed,
    seal,
    unseal,
)
from schemas.registry import EVENTS, EventData

NOTIFICATION_REQUESTED = "notification.requested.v1"
NOTIFICATION_DEFERRED = "notification.deferred.v1"
NOTIFICATION_SUPPRESSED = "notification.suppressed.v1"
NOTIFICATION_SENT = "notification.sent.v1"
NOTIFICATION_FAILED = "notification.failed.v1"
NOTIFICATION_READ = "notification.read.v1"
NOTIFICATION_DELETED = "notification.deleted.v1"
NOTIFICATION_PREFERENCES_UPDATED = "notification.preferences_updated.v1"
NOTIFICATION_SENDER_BLOCKED = "notification.sender_blocked.v1"
NOTIFICATION_SENDER_UNBLOCKED = "notification.sender_unblocked.v1"

SUBJECT_MAX = 200
TEXT_MAX = 20_000
HTML_MAX = 100_000
SMS_MAX = 480  # three concatenated GSM segments' worth; longer texts belong in an email
E164 = r"^\+[1-9][0-9]{7,14}$"
DEFAULT_TIME_ZONE = "Asia/Kolkata"
PLATFORM = "Hyderabad Infra"


class Channel(StrEnum):
    EMAIL = "email"
    SMS = "sms"
    IN_APP = "in_app"


class RequestedChannel(StrEnum):
    """A request names one channel, or `preferred`: every channel the recipient chose for its kind."""

    EMAIL = "email"
    SMS = "sms"
    IN_APP = "in_app"
    PREFERRED = "preferred"


class Kind(StrEnum):
    LISTING_ALERT = "listing_alert"
    ACCOUNT = "account"
    MARKETING = "marketing"
    DIRECT = "direct"  # the platform (an admin) writing to one recipient: not subject to preferences
    MESSAGE = "message"  # one user writing to another: plain text, labelled, in-app unless the recipient allows more


# Kinds whose channels the recipient chooses (preferences); `direct` is always delivered as asked.
PREFERENCE_KINDS: tuple[Kind, ...] = (Kind.LISTING_ALERT, Kind.ACCOUNT, Kind.MARKETING, Kind.MESSAGE)
# Kinds held back during quiet hours. Account messages (a welcome, a security notice) follow the
# user's own action and are sent at once.
QUIET_KINDS = frozenset({Kind.LISTING_ALERT, Kind.MARKETING, Kind.DIRECT, Kind.MESSAGE})


def derived_notification_id(*parts: str) -> str:
    """The same trigger always names the same notification: a redelivered trigger duplicates nothing."""
    return "notif-" + hashlib.sha256("|".join(parts).encode()).hexdigest()[:32]


def listing_alert_id(user_id: str, property_id: str) -> str:
    """At most one alert per listing per user, however many of their saved searches it matches."""
    return derived_notification_id("listing_alert", user_id, property_id)


def welcome_id(user_id: str) -> str:
    return derived_notification_id("account.welcome", user_id)


def outcome_event_id(notification_id: str, channel: str, outcome: str) -> str:
    """Ids of the reactor's events: re-reporting an outcome after a crash produces the same event."""
    return "evt-" + hashlib.sha256(f"{notification_id}|{channel}|{outcome}".encode()).hexdigest()[:32]


# ---- content and templates ----


def header_problem(value: str) -> str | None:
    """Why `value` cannot be a header line (an email's subject), or None. Line breaks of any kind (CR, LF,
    U+0085, U+2028, U+2029) would start a new header, which the message builder refuses; other control
    characters are refused with them, since no mail client shows them."""
    for char in value:
        if unicodedata.category(char) in ("Cc", "Zl", "Zp"):
            return f"must be one line without control characters (found U+{ord(char):04X})"
    return None


Variable = str | int | float | bool | None


class Content(EventData):
    """Either a `template` with `variables`, or a `subject` and `text` (and optionally `html`). A message's
    subject and text are sealed (`seal_message`), and so longer than the plain limits allow."""

    subject: str | None = None
    text: str | None = None
    html: str | None = Field(default=None, max_length=HTML_MAX)
    template: str | None = None
    variables: dict[str, Variable] = Field(default_factory=dict)

    @model_validator(mode="after")
    def _plain_lengths(self) -> "Content":
        for name, limit in (("subject", SUBJECT_MAX), ("text", TEXT_MAX)):
            value = getattr(self, name)
            if value is not None and len(value) > (_sealed_length(limit) if is_sealed(value) else limit):
                raise ValueError(f"{name} is longer than {limit} characters")
        return self


def _sealed_length(chars: int) -> int:
    """The longest a value of `chars` characters (at most 4 UTF-8 bytes each) is once sealed twice."""
    size = 4 * chars
    for _ in range(2):
        size = 7 + 4 * ((size + 28 + 2) // 3)  # the prefix, base64 of nonce + ciphertext + tag
    return size


def seal_message(content: Content, sender: tuple[str, bytes], recipient: tuple[str, bytes]) -> Content:
    """A message's subject and text sealed with the recipient's key inside the sender's: it opens only
    while both accounts exist, so closing either (the writer, or the person written to and about)
    leaves no readable copy. Each `(user id, key)`."""

    def sealed(field: str, value: str | None) -> str | None:
        if value is None:
            return None
        inner = seal(recipient[1], recipient[0], field, value)
        return seal(sender[1], sender[0], field, inner)

    return content.model_copy(
        update={"subject": sealed(MESSAGE_SUBJECT, content.subject), "text": sealed(MESSAGE_TEXT, content.text)}
    )


def open_message(content: Content, sender: tuple[str, bytes], recipient: tuple[str, bytes]) -> Content:
    """The message as written; raises `schemas.personal.UnreadablePersonalData` when it does not open."""

    def opened(field: str, value: str | None) -> str | None:
        if value is None:
            return None
        return unseal(recipient[1], recipient[0], field, unseal(sender[1], sender[0], field, value))

    return content.model_copy(
        update={"subject": opened(MESSAGE_SUBJECT, content.subject), "text": opened(MESSAGE_TEXT, content.text)}
    )


def message_label(sender_name: str) -> str:
    """Who wrote it, in every copy a recipient receives: a user's words never pass for the platform's."""
    return f"Message from {sender_name} via {PLATFORM}"


@dataclass(frozen=True)
class Template:
    name: str
    kind: Kind
    required: tuple[str, ...]
    subject: str
    text: str
    in_app_title: str
    in_app_body: str


TEMPLATES: dict[str, Template] = {
    t.name: t
    for t in (
        Template(
            name="welcome",
            kind=Kind.ACCOUNT,
            required=(),
            subject="Welcome to Hyderabad Infra",
            text=(
                "Hello {recipientName},\n\nYour Hyderabad Infra account is ready. Save a search and we will tell you "
                "as soon as a new listing matches it.\n"
            ),
            in_app_title="Welcome to Hyderabad Infra",
            in_app_body="Your account is ready. Save a search and we will tell you when a new listing matches it.",
        ),
        Template(
            name="listing_alert",
            kind=Kind.LISTING_ALERT,
            required=("searchName", "title", "location", "price", "bedrooms", "propertyId"),
            subject="New match for {savedSearch}: {title}",
            text=(
                "Hello {recipientName},\n\nA new listing matches {yourSavedSearch}:\n\n"
                "{title}\n{location} \u00b7 {bedrooms} BHK \u00b7 \u20b9{price}\n\n{link}\n"
            ),
            in_app_title="New match for {savedSearch}",
            in_app_body="{title} in {location} \u00b7 {bedrooms} BHK \u00b7 \u20b9{price}",
        ),
    )
}


def indian_rupees(amount: int) -> str:
    """95,00,000: the lakh/crore grouping Hyderabad reads prices in."""
    digits = str(abs(amount))
    if len(digits) <= 3:
        grouped = digits
    else:
        head, tail = digits[:-3], digits[-3:]
        pairs = [head[max(0, i - 2) : i] for i in range(len(head), 0, -2)][::-1]
        grouped = ",".join(pairs) + "," + tail
    return ("-" if amount < 0 else "") + grouped


_PLACEHOLDER = re.compile(r"\{([A-Za-z][A-Za-z0-9]*)\}")


def fill(pattern: str, values: dict[str, str]) -> str:
    """`{name}` placeholders only (no attribute access, no format specs): content never runs code."""
    return _PLACEHOLDER.sub(lambda m: values.get(m[1], ""), pattern)


@dataclass(frozen=True)
class Rendered:
    subject: str
    text: str
    html: str


def template_values(template: Template, variables: dict[str, Variable]) -> dict[str, str]:
    values = {k: "" if v is None else str(v) for k, v in variables.items()}
    if template.name == "listing_alert":
        if isinstance(variables.get("price"), int):
            values["price"] = indian_rupees(int(variables["price"]))  # type: ignore[arg-type]
        values.update(_saved_search_phrases(variables.get("searchName")))
    return values


def _saved_search_phrases(name: Variable) -> dict[str, str]:
    """How an alert names its saved search: by its name when we hold it in the clear (opened with the
    owner's key, or an older event's), and without it once it is sealed for good (the key is gone)."""
    if isinstance(name, str) and name and not is_sealed(name):
        return {"savedSearch": f"\u201c{name}\u201d", "yourSavedSearch": f"your saved search \u201c{name}\u201d"}
    return {"savedSearch": "a saved search", "yourSavedSearch": "one of your saved searches"}


def names_a_sealed_search(content: Content) -> bool:
    """A listing alert whose saved-search name is sealed: its texts need the owner's key to name it."""
    return content.template == "listing_alert" and is_sealed(content.variables.get("searchName"))


def open_search_name(content: Content, user_id: str | None, key: bytes | None) -> Content:
    """A listing alert's saved-search name (sealed with its owner's key, `SEARCH_NAME`) opened, held in
    memory for the one text being rendered; left out (None) when the key is gone or does not open it.
    Any other content, and an older alert's clear name, as it is."""
    if not names_a_sealed_search(content):
        return content
    opened: str | None = None
    if key is not None and user_id is not None:
        try:
            opened = unseal(key, user_id, SEARCH_NAME, str(content.variables["searchName"]))
        except UnreadablePersonalData:
            opened = None
    return content.model_copy(update={"variables": {**content.variables, "searchName": opened}})


def text_to_html(text: str) -> str:
    paragraphs = [p for p in text.split("\n\n") if p.strip()]
    body = "".join(f"<p>{html.escape(p).replace(chr(10), '<br>')}</p>" for p in paragraphs)
    return f'<!doctype html><html><body style="font-family:sans-serif">{body}</body></html>'


def render(
    content: Content, recipient_name: str | None = None, link: str | None = None, sender_name: str | None = None
) -> Rendered:
    """The email of a request: subject, plain text and HTML. `recipient_name` is read from the users read
    model at delivery time and never stored. A user's message (`sender_name`) is plain text under the
    sender's label, its HTML part made from that text (escaped), with a reminder of what we never ask."""
    if content.template is not None:
        template = TEMPLATES[content.template]
        values = template_values(template, content.variables)
        values["recipientName"] = recipient_name or "there"
        values["link"] = link or ""
        text = fill(template.text, values)
        return Rendered(fill(template.subject, values), text, text_to_html(text))
    text = content.text or ""
    if sender_name is not None:
        text = (
            f"{message_label(sender_name)}:\n\n{text}\n\n"
            f"{sender_name} wrote this, not {PLATFORM}. {PLATFORM} never asks for your password or a payment.\n"
        )
        return Rendered(content.subject or "", text, text_to_html(text))
    return Rendered(content.subject or "", text, content.html or text_to_html(text))


def in_app(content: Content) -> tuple[str, str]:
    """(title, body) for the inbox: never the recipient's name, so the inbox holds nothing personal."""
    if content.template is not None:
        template = TEMPLATES[content.template]
        values = template_values(template, content.variables)
        return fill(template.in_app_title, values), fill(template.in_app_body, values)
    return content.subject or (content.text or "")[:SUBJECT_MAX], content.text or ""


def sms_text(content: Content, sender_name: str | None = None) -> str:
    if content.template is not None:
        title, body = in_app(content)
        return f"{title}: {body}"[:SMS_MAX]
    if sender_name is not None:
        return f"{message_label(sender_name)}: {content.text or ''}"[:SMS_MAX]
    return (content.text or "")[:SMS_MAX]


# ---- preferences ----


class ChannelChoice(EventData):
    email: bool
    sms: bool
    in_app: bool

    def allows(self, channel: Channel) -> bool:
        return {Channel.EMAIL: self.email, Channel.SMS: self.sms, Channel.IN_APP: self.in_app}[channel]


# Messages from other users: in the inbox only, unless the recipient asks for email or SMS too.
DEFAULT_MESSAGE_CHANNELS = ChannelChoice(email=False, sms=False, in_app=True)


class KindChannels(EventData):
    listing_alert: ChannelChoice
    account: ChannelChoice
    marketing: ChannelChoice
    # Preferences stored before messages had a category of their own read as the default.
    message: ChannelChoice = DEFAULT_MESSAGE_CHANNELS

    def of(self, kind: Kind) -> ChannelChoice:
        return {
            Kind.LISTING_ALERT: self.listing_alert,
            Kind.ACCOUNT: self.account,
            Kind.MARKETING: self.marketing,
            Kind.MESSAGE: self.message,
        }[kind]


_CLOCK = re.compile(r"^([01][0-9]|2[0-3]):([0-5][0-9])(?::([0-5][0-9]))?$")


def parse_clock(value: str) -> time:
    match = _CLOCK.match(value)
    if not match:
        raise ValueError("expected a time of day HH:MM or HH:MM:SS (24-hour)")
    return time(int(match[1]), int(match[2]), int(match[3] or 0))


class QuietHours(EventData):
    """A daily window in the user's time zone; `start` after `end` spans midnight (22:00 to 07:00)."""

    start: str
    end: str

    @field_validator("start", "end")
    @classmethod
    def _clock(cls, value: str) -> str:
        parse_clock(value)
        return value

    @model_validator(mode="after")
    def _not_empty(self) -> "QuietHours":
        if parse_clock(self.start) == parse_clock(self.end):
            raise ValueError("start and end must differ")
        return self


def valid_time_zone(name: str) -> str:
    if "/" not in name and name != "UTC":
        raise ValueError("expected an IANA time zone such as Asia/Kolkata")
    try:
        ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        raise ValueError("unknown time zone; use an IANA name such as Asia/Kolkata") from None
    return name


class Preferences(EventData):
    channels: KindChannels
    quiet_hours: QuietHours | None = None
    time_zone: str = DEFAULT_TIME_ZONE

    @field_validator("time_zone")
    @classmethod
    def _zone(cls, value: str) -> str:
        return valid_time_zone(value)

    def wire(self) -> dict[str, Any]:
        """Like `to_wire`, but keeps `quietHours: null` so a client sees the field."""
        return {**self.to_wire(), "quietHours": self.quiet_hours.to_wire() if self.quiet_hours else None}


DEFAULT_PREFERENCES = Preferences(
    channels=KindChannels(
        listing_alert=ChannelChoice(email=True, sms=False, in_app=True),
        account=ChannelChoice(email=True, sms=False, in_app=True),
        marketing=ChannelChoice(email=False, sms=False, in_app=False),  # opt-in only
        message=DEFAULT_MESSAGE_CHANNELS,
    ),
    quiet_hours=None,
    time_zone=DEFAULT_TIME_ZONE,
)


def quiet_until(preferences: Preferences, now: datetime) -> datetime | None:
    """The moment the quiet hours that contain `now` end (aware, same zone as `now`), or None when
    `now` is outside them. Pure: the caller brings the clock."""
    quiet = preferences.quiet_hours
    if quiet is None:
        return None
    zone = ZoneInfo(preferences.time_zone)
    local = now.astimezone(zone)
    start, end = parse_clock(quiet.start), parse_clock(quiet.end)
    at = local.time().replace(microsecond=0)
    today = local.date()

    def moment(day_offset: int, clock: time) -> datetime:
        return datetime.combine(today + timedelta(days=day_offset), clock, zone)

    if start < end:
        if start <= at < end:
            return moment(0, end)
        return None
    # Spans midnight: quiet from `start` to 24:00 and from 00:00 to `end`.
    if at >= start:
        return moment(1, end)
    if at < end:
        return moment(0, end)
    return None


# ---- events ----


class NotificationRequested(EventData):
    notification_id: str
    user_id: str | None = None  # a registered recipient
    address: str | None = None  # an email or E.164 number of someone who is not a registered user
    channel: RequestedChannel
    kind: Kind
    content: Content
    requested_by: str | None = None  # the sender's user id; None for the system
    reference: dict[str, str] = Field(default_factory=dict)  # e.g. savedSearchId, propertyId

    @model_validator(mode="after")
    def _one_recipient(self) -> "NotificationRequested":
        if (self.user_id is None) == (self.address is None):
            raise ValueError("exactly one of userId and address names the recipient")
        if self.address is not None and self.channel not in (RequestedChannel.EMAIL, RequestedChannel.SMS):
            raise ValueError("an address is for an email or an SMS")
        if self.content.template is not None and self.content.template not in TEMPLATES:
            raise ValueError(f"unknown template {self.content.template!r}")
        if self.kind == Kind.MESSAGE:
            self._a_message()
        return self

    def _a_message(self) -> None:
        content = self.content
        if self.user_id is None or self.requested_by is None:
            raise ValueError("a message is from one user (requestedBy) to another (userId)")
        if content.html is not None or content.template is not None or content.text is None:
            raise ValueError("a message is plain text: a text, perhaps a subject, no html or template")
        if not all(is_sealed(value) for value in (content.subject, content.text) if value is not None):
            raise ValueError("a message's subject and text travel sealed (schemas.notifications.seal_message)")


class NotificationDeferred(EventData):
    notification_id: str
    user_id: str | None = None
    channel: Channel
    until: datetime


class NotificationSuppressed(EventData):
    notification_id: str
    user_id: str | None = None
    channel: Channel
    reason: str


class NotificationSent(EventData):
    notification_id: str
    user_id: str | None = None
    channel: Channel
    attempts: int = Field(ge=0)
    provider_id: str | None = None  # the Message-ID, or the SMS gateway's id


class NotificationFailed(EventData):
    notification_id: str
    user_id: str | None = None
    channel: Channel
    attempts: int = Field(ge=0)
    error: str
    permanent: bool


class NotificationRead(EventData):
    notification_id: str
    user_id: str


class NotificationDeleted(EventData):
    notification_id: str
    user_id: str


class NotificationSenderBlocked(EventData):
    """`user_id` takes no more messages from `sender_id` (or, unblocked, takes them again)."""

    user_id: str
    sender_id: str


class NotificationPreferencesUpdated(EventData):
    user_id: str
    channels: KindChannels
    quiet_hours: QuietHours | None = None
    time_zone: str = DEFAULT_TIME_ZONE

    def preferences(self) -> Preferences:
        return Preferences(channels=self.channels, quiet_hours=self.quiet_hours, time_zone=self.time_zone)


for _type, _model in (
    (NOTIFICATION_REQUESTED, NotificationRequested),
    (NOTIFICATION_DEFERRED, NotificationDeferred),
    (NOTIFICATION_SUPPRESSED, NotificationSuppressed),
    (NOTIFICATION_SENT, NotificationSent),
    (NOTIFICATION_FAILED, NotificationFailed),
    (NOTIFICATION_READ, NotificationRead),
    (NOTIFICATION_DELETED, NotificationDeleted),
    (NOTIFICATION_PREFERENCES_UPDATED, NotificationPreferencesUpdated),
    (NOTIFICATION_SENDER_BLOCKED, NotificationSenderBlocked),
    (NOTIFICATION_SENDER_UNBLOCKED, NotificationSenderBlocked),
):
    EVENTS.register(_type, _model)
