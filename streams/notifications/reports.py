"""Pure: the events the delivery reactor produces for what became of a channel, and the dead letter of a
channel that gave up. Event ids are derived from (notification, channel, outcome), so an outcome
reported twice (the worker stopped between producing and recording that it had) is the same event."""

from dataclasses import dataclass
from datetime import datetime

from schemas.envelope import Envelope
from schemas.notifications import (
    NOTIFICATION_DEFERRED,
    NOTIFICATION_FAILED,
    NOTIFICATION_SENT,
    NOTIFICATION_SUPPRESSED,
    Channel,
    NotificationDeferred,
    NotificationFailed,
    NotificationSent,
    NotificationSuppressed,
    outcome_event_id,
)
from schemas.registry import EventData
from streams.dead_letters import DeadLetter
from streams.notifications.policy import DELIVERY_CONSUMER
from streams.positions import SourcePosition

SOURCE = "/hyderabad-infra/notification-delivery"

SENT = "sent"
FAILED = "failed"
DEFERRED = "deferred"
SUPPRESSED = "suppressed"


@dataclass(frozen=True)
class Outcome:
    """A channel's latest outcome as stored (`notification_deliveries`), to be reported."""

    notification_id: str
    channel: str
    user_id: str | None
    report: str
    attempts: int
    error: str | None
    permanent: bool
    provider_id: str | None
    deferred_until: datetime | None
    request_key: bytes | None
    request: bytes
    position: SourcePosition


def outcome_event(outcome: Outcome, cause: Envelope | None, now: datetime) -> Envelope:
    channel = Channel(outcome.channel)
    data: EventData
    if outcome.report == SENT:
        event_type, key = NOTIFICATION_SENT, SENT
        data = NotificationSent(
            notification_id=outcome.notification_id,
            user_id=outcome.user_id,
            channel=channel,
            attempts=outcome.attempts,
            provider_id=outcome.provider_id,
        )
    elif outcome.report == FAILED:
        event_type, key = NOTIFICATION_FAILED, FAILED
        data = NotificationFailed(
            notification_id=outcome.notification_id,
            user_id=outcome.user_id,
            channel=channel,
            attempts=outcome.attempts,
            error=outcome.error or "unknown error",
            permanent=outcome.permanent,
        )
    elif outcome.report == DEFERRED:
        assert outcome.deferred_until is not None
        event_type, key = NOTIFICATION_DEFERRED, f"{DEFERRED}|{outcome.deferred_until.isoformat()}"
        data = NotificationDeferred(
            notification_id=outcome.notification_id,
            user_id=outcome.user_id,
            channel=channel,
            until=outcome.deferred_until,
        )
    elif outcome.report == SUPPRESSED:
        event_type, key = NOTIFICATION_SUPPRESSED, SUPPRESSED
        data = NotificationSuppressed(
            notification_id=outcome.notification_id,
            user_id=outcome.user_id,
            channel=channel,
            reason=outcome.error or "",
        )
    else:
        raise ValueError(f"unknown report {outcome.report!r}")
    return Envelope(
        id=outcome_event_id(outcome.notification_id, outcome.channel, key),
        type=event_type,
        source=SOURCE,
        subject=outcome.notification_id,
        time=now,
        userid=outcome.user_id,
        correlationid=(cause.correlationid or cause.id) if cause else None,
        causationid=cause.id if cause else None,
        data=data.to_wire(),
    )


def dead_letter(outcome: Outcome) -> DeadLetter:
    """The request exactly as it arrived, with why its channel gave up."""
    kind = "permanent failure" if outcome.permanent else f"gave up after {outcome.attempts} attempts"
    error = f"{outcome.channel}: {kind}: {outcome.error or 'unknown error'}"
    return DeadLetter(outcome.request_key, outcome.request, error, outcome.position, DELIVERY_CONSUMER)
