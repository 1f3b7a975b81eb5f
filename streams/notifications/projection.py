"""Pure part of the notification read-model projection: records of `notifications` and `users` -> the
changes the Postgres sink applies, one function per event type.

- `notification.requested`: the notification's row (title and body for the inbox, never the
  recipient's name: `schemas.notifications.in_app`).
- `notification.sent` on `in_app`: the row enters the inbox.
- `notification.sent/failed/deferred/suppressed`: the channel's state (the state endpoint).
- `notification.read` / `notification.deleted`: the inbox row is read / removed.
- `notification.preferences_updated`: the user's preferences, absolute.
- `notification.sender_blocked/unblocked`: whether a user takes messages from a sender, absolute.
- `user.deleted` (on `users`): the user's notifications, channel states, preferences and blocks are
  erased, and the messages they wrote to others can no longer be read.

A message's title and body arrive sealed with its two people's keys: the sink opens them as it writes
the row (`Recorded.message`), and writes that it can no longer be read once either key is gone. A
listing alert's saved-search name arrives sealed with the recipient's key: the sink opens it for the
title (`Recorded.alert`), which speaks of "a saved search" once the key is gone.
"""

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from schemas.codec import EventDecodeError, decode_storable
from schemas.notifications import (
    NOTIFICATION_DEFERRED,
    NOTIFICATION_DELETED,
    NOTIFICATION_FAILED,
    NOTIFICATION_PREFERENCES_UPDATED,
    NOTIFICATION_READ,
    NOTIFICATION_REQUESTED,
    NOTIFICATION_SENDER_BLOCKED,
    NOTIFICATION_SENDER_UNBLOCKED,
    NOTIFICATION_SENT,
    NOTIFICATION_SUPPRESSED,
    Channel,
    Content,
    Kind,
    NotificationDeferred,
    NotificationDeleted,
    NotificationFailed,
    NotificationPreferencesUpdated,
    NotificationRead,
    NotificationRequested,
    NotificationSenderBlocked,
    NotificationSent,
    NotificationSuppressed,
    in_app,
    names_a_sealed_search,
)
from schemas.registry import EVENTS
from schemas.topics import USERS
from schemas.users import USER_DELETED
from streams.dead_letters import DeadLetter
from streams.positions import RawRecord, SourcePosition

PROJECTION_CONSUMER = "notification-projection"


@dataclass(frozen=True)
class Recorded:
    notification_id: str
    user_id: str | None
    requested_by: str | None
    kind: str
    channel: str
    title: str
    body: str
    data: dict[str, Any]
    at: datetime
    message: Content | None = None  # a user's message, sealed: the sink opens it for title and body
    alert: Content | None = None  # a listing alert naming its saved search sealed: the sink opens that


@dataclass(frozen=True)
class EnteredInbox:
    notification_id: str
    user_id: str | None
    at: datetime


@dataclass(frozen=True)
class ChannelState:
    notification_id: str
    user_id: str | None
    channel: str
    state: str
    attempts: int
    detail: str | None
    until: datetime | None
    offset: int
    at: datetime


@dataclass(frozen=True)
class MarkedRead:
    notification_id: str
    user_id: str
    at: datetime


@dataclass(frozen=True)
class Removed:
    notification_id: str
    user_id: str
    at: datetime


@dataclass(frozen=True)
class PreferencesSet:
    user_id: str
    preferences: dict[str, Any]
    version: int  # the event's offset: one user's preferences share a partition
    at: datetime


@dataclass(frozen=True)
class BlockSet:
    user_id: str
    sender_id: str
    blocked: bool
    version: int  # the event's offset: one user's blocks share a partition
    at: datetime


@dataclass(frozen=True)
class Erased:
    user_id: str
    at: datetime


Change = Recorded | EnteredInbox | ChannelState | MarkedRead | Removed | PreferencesSet | BlockSet | Erased


@dataclass(frozen=True)
class NotificationPlan:
    changes: list[Change]
    dead_letters: list[DeadLetter]
    positions: list[SourcePosition] = field(default_factory=list)


def _state(data: NotificationSent | NotificationFailed | NotificationDeferred | NotificationSuppressed) -> str:
    return {
        NotificationSent: "sent",
        NotificationFailed: "failed",
        NotificationDeferred: "deferred",
        NotificationSuppressed: "suppressed",
    }[type(data)]


def notification_changes(record: RawRecord) -> list[Change]:
    """Raises `EventDecodeError` for poison; [] for events with nothing to project."""
    envelope = decode_storable(record.value)
    at, offset = envelope.time, record.position.offset
    if record.position.topic == USERS.name:
        return [Erased(envelope.subject, at)] if envelope.type == USER_DELETED else []
    data = EVENTS.read(envelope).data
    if envelope.type == NOTIFICATION_REQUESTED:
        assert isinstance(data, NotificationRequested)
        message = data.content if data.kind == Kind.MESSAGE else None
        alert = data.content if names_a_sealed_search(data.content) else None
        title, body = ("", "") if message else in_app(data.content)
        extra: dict[str, Any] = dict(data.reference)
        if data.content.template:
            extra["template"] = data.content.template
        return [
            Recorded(
                data.notification_id,
                data.user_id,
                data.requested_by,
                data.kind.value,
                data.channel.value,
                title,
                body,
                extra,
                at,
                message,
                alert,
            )
        ]
    if envelope.type in (NOTIFICATION_SENT, NOTIFICATION_FAILED, NOTIFICATION_DEFERRED, NOTIFICATION_SUPPRESSED):
        assert isinstance(data, NotificationSent | NotificationFailed | NotificationDeferred | NotificationSuppressed)
        attempts = data.attempts if isinstance(data, NotificationSent | NotificationFailed) else 0
        detail: str | None = None
        if isinstance(data, NotificationFailed):
            detail = data.error
        elif isinstance(data, NotificationSuppressed):
            detail = data.reason
        until = data.until if isinstance(data, NotificationDeferred) else None
        state = ChannelState(
            data.notification_id, data.user_id, data.channel.value, _state(data), attempts, detail, until, offset, at
        )
        changes: list[Change] = [state]
        if isinstance(data, NotificationSent) and data.channel == Channel.IN_APP:
            changes.append(EnteredInbox(data.notification_id, data.user_id, at))
        return changes
    if envelope.type == NOTIFICATION_READ:
        assert isinstance(data, NotificationRead)
        return [MarkedRead(data.notification_id, data.user_id, at)]
    if envelope.type == NOTIFICATION_DELETED:
        assert isinstance(data, NotificationDeleted)
        return [Removed(data.notification_id, data.user_id, at)]
    if envelope.type == NOTIFICATION_PREFERENCES_UPDATED:
        assert isinstance(data, NotificationPreferencesUpdated)
        if envelope.subject != data.user_id:
            raise EventDecodeError("preferences must be keyed (subject) by their user id")
        return [PreferencesSet(data.user_id, data.preferences().wire(), offset, at)]
    if envelope.type in (NOTIFICATION_SENDER_BLOCKED, NOTIFICATION_SENDER_UNBLOCKED):
        assert isinstance(data, NotificationSenderBlocked)
        if envelope.subject != data.user_id:
            raise EventDecodeError("blocks must be keyed (subject) by the user who blocks")
        return [BlockSet(data.user_id, data.sender_id, envelope.type == NOTIFICATION_SENDER_BLOCKED, offset, at)]
    raise EventDecodeError(f"{envelope.type} does not belong on the notifications topic")


def plan_notifications(records: Sequence[RawRecord]) -> NotificationPlan:
    changes: list[Change] = []
    dead: list[DeadLetter] = []
    for record in records:
        try:
            changes.extend(notification_changes(record))
        except EventDecodeError as exc:
            dead.append(DeadLetter(record.key, record.value, str(exc), record.position, PROJECTION_CONSUMER))
    return NotificationPlan(changes, dead, [r.position for r in records])


def touched_users(changes: Sequence[Change]) -> list[str]:
    """Users whose unread count may have changed."""
    users = {
        c.user_id
        for c in changes
        if isinstance(c, EnteredInbox | MarkedRead | Removed | Erased) and c.user_id is not None
    }
    return sorted(users)
