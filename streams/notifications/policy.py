"""Pure rules of delivery: which channels a request becomes, whether a channel is sent now, later or not
at all, and how long to wait before the next attempt. No I/O: the reactor brings the clock, the
recipient and their preferences.
"""

import hashlib
import random
import re
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from schemas.codec import EventDecodeError, decode_storable
from schemas.notifications import (
    NOTIFICATION_REQUESTED,
    PREFERENCE_KINDS,
    QUIET_KINDS,
    Channel,
    Kind,
    NotificationRequested,
    Preferences,
    RequestedChannel,
    quiet_until,
)
from schemas.registry import EVENTS
from streams.dead_letters import DeadLetter
from streams.positions import RawRecord

DELIVERY_CONSUMER = "notification-delivery"


# ---- intake: a request -> one delivery per channel ----


@dataclass(frozen=True)
class Intake:
    notification_id: str
    channel: Channel
    user_id: str | None
    kind: Kind
    requested_at: datetime
    record: RawRecord


@dataclass(frozen=True)
class IntakePlan:
    deliveries: list[Intake]
    dead_letters: list[DeadLetter]


def channels_of(request: NotificationRequested) -> tuple[Channel, ...]:
    """`preferred` becomes every channel; the dispatcher suppresses those the recipient turned off, at the
    moment of sending (so a change of mind before then is honoured, and the record says why). A user's
    message always tries the inbox too: by default it is the only channel a recipient takes them on."""
    if request.channel == RequestedChannel.PREFERRED:
        return (Channel.IN_APP, Channel.EMAIL, Channel.SMS)
    channel = Channel(request.channel.value)
    if request.kind == Kind.MESSAGE and channel != Channel.IN_APP:
        return (Channel.IN_APP, channel)
    return (channel,)


def plan_intake(records: Sequence[RawRecord]) -> IntakePlan:
    """Requests become deliveries; the topic's other events (outcomes, reads, preferences) are not ours.
    A request that cannot be read is a dead letter."""
    deliveries: list[Intake] = []
    dead: list[DeadLetter] = []
    for record in records:
        try:
            envelope = decode_storable(record.value)
            if envelope.type != NOTIFICATION_REQUESTED:
                if not EVENTS.knows(envelope.type):
                    raise EventDecodeError(f"{envelope.type} does not belong on the notifications topic")
                continue
            request = EVENTS.read(envelope).data
            assert isinstance(request, NotificationRequested)
            if envelope.subject != request.notification_id:
                raise EventDecodeError("a notification request must be keyed (subject) by its notification id")
        except EventDecodeError as exc:
            dead.append(DeadLetter(record.key, record.value, str(exc), record.position, DELIVERY_CONSUMER))
            continue
        for channel in channels_of(request):
            deliveries.append(
                Intake(request.notification_id, channel, request.user_id, request.kind, envelope.time, record)
            )
    return IntakePlan(deliveries, dead)


# ---- dispatch: send now, later, or not at all ----


@dataclass(frozen=True)
class Recipient:
    """A registered recipient as the users read model has them now. Held in memory for one send only."""

    user_id: str
    email: str | None
    phone: str | None
    name: str | None
    deleted: bool


@dataclass(frozen=True)
class SendNow:
    pass


@dataclass(frozen=True)
class Defer:
    until: datetime


@dataclass(frozen=True)
class Suppress:
    reason: str


@dataclass(frozen=True)
class NotYet:
    """The recipient is not in the users read model yet (it lags the `users` topic by milliseconds)."""

    reason: str


@dataclass(frozen=True)
class Fail:
    """Cannot ever be delivered on this channel: a permanent failure."""

    reason: str


Decision = SendNow | Defer | Suppress | NotYet | Fail


def decide(
    request: NotificationRequested,
    channel: Channel,
    recipient: Recipient | None,
    preferences: Preferences,
    now: datetime,
    requested_at: datetime | None = None,
    expiry: timedelta | None = None,
    sender: Recipient | None = None,
    blocked: bool = False,
) -> Decision:
    """`sender` and `blocked` matter for a user's message only: its writer as the users read model has
    them now, and whether the recipient blocked them."""
    if requested_at is not None and expiry is not None and now - requested_at > expiry:
        # A reactor replayed from the start, or one that was down for days, does not send old news.
        return Suppress(f"expired: requested more than {expiry} before it could be sent")
    if request.user_id is None:
        return SendNow()  # an outside address: no account, no preferences
    if recipient is None:
        return NotYet(f"user {request.user_id} is not in the users read model (yet)")
    if recipient.deleted:
        return Suppress("the recipient's account is closed")
    if request.kind == Kind.MESSAGE:
        if sender is None:
            return NotYet(f"user {request.requested_by} is not in the users read model (yet)")
        if sender.deleted:
            return Suppress("the sender's account is closed")
        if blocked:
            return Suppress("the recipient does not take messages from the sender")
    if request.kind in PREFERENCE_KINDS and not preferences.channels.of(request.kind).allows(channel):
        return Suppress(f"the recipient turned off {channel.value} for {request.kind.value} notifications")
    if channel == Channel.EMAIL and not recipient.email:
        return Fail("the recipient has no email address")
    if channel == Channel.SMS and not recipient.phone:
        return Fail("the recipient has no phone number")
    if channel != Channel.IN_APP and request.kind in QUIET_KINDS:
        until = quiet_until(preferences, now)
        if until is not None:
            return Defer(until)
    return SendNow()


def retry_delay(attempts: int, base: float, cap: float, notification_id: str = "") -> timedelta:
    """Exponential backoff with a little jitter (seeded by the id, so a batch does not retry in lockstep)."""
    raw = min(cap, base * 2 ** max(0, attempts - 1))
    seed = int(hashlib.sha256(f"{notification_id}|{attempts}".encode()).hexdigest()[:8], 16)
    jitter = 1 + (random.Random(seed).random() - 0.5) * 0.2
    return timedelta(seconds=min(cap, raw * jitter))


def scrub(error: str, *secrets: str | None) -> str:
    """An SMTP server echoes the address it refused; an error travels in events and dead-letter headers,
    so a registered recipient's address or number is replaced before it leaves the reactor."""
    for secret in secrets:
        if secret:
            error = re.sub(re.escape(secret), "<recipient>", error, flags=re.IGNORECASE)
    return error
