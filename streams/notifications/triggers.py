"""Pure part of the delivery reactor's trigger agent: events of other aggregates -> notification requests.

- `search.saved_match.v1` (on `searches`): a listing matched a user's saved search -> a listing alert on
  the channels the user chose. Its id is derived from (user, listing), so however many of the user's
  saved searches match one listing, and however often the match is redelivered, there is one alert.
- `user.registered.v1` (on `users`): a welcome, id derived from the user id.
- `user.deleted.v1` (on `users`): the user's pending deliveries are erased.
Only ids travel: the user's address and name are never read from these events (they are sealed there).
Triggers older than `max_age` are skipped: a reactor replayed from the beginning must not welcome
every user again, and an alert about a listing matched weeks ago is noise.
"""

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from schemas.codec import EventDecodeError, decode_storable
from schemas.envelope import Envelope
from schemas.notifications import (
    NOTIFICATION_REQUESTED,
    Content,
    Kind,
    NotificationRequested,
    RequestedChannel,
    listing_alert_id,
    outcome_event_id,
    welcome_id,
)
from schemas.registry import EVENTS
from schemas.searches import SEARCH_SAVED_MATCH as SAVED_MATCH
from schemas.searches import SavedSearchMatched
from schemas.users import USER_DELETED, USER_REGISTERED
from streams.dead_letters import DeadLetter
from streams.positions import RawRecord

TRIGGER_CONSUMER = "notification-triggers"
SOURCE = "/hyderabad-infra/notification-delivery"


@dataclass(frozen=True)
class TriggerPlan:
    requests: list[Envelope]
    erased_users: list[str]
    dead_letters: list[DeadLetter]
    skipped: int = 0


def _request(cause: Envelope, request: NotificationRequested) -> Envelope:
    """The event id follows the notification, not the trigger: two saved searches matching one listing,
    or one match redelivered, give identical requests, which every reader treats as one."""
    return Envelope(
        id=outcome_event_id(request.notification_id, "request", "requested"),
        type=NOTIFICATION_REQUESTED,
        source=SOURCE,
        subject=request.notification_id,
        time=cause.time,
        userid=request.user_id,
        correlationid=cause.correlationid or cause.id,
        causationid=cause.id,
        data=request.to_wire(),
    )


def listing_alert(envelope: Envelope, match: SavedSearchMatched) -> Envelope:
    request = NotificationRequested(
        notification_id=listing_alert_id(match.user_id, match.property_id),
        user_id=match.user_id,
        channel=RequestedChannel.PREFERRED,
        kind=Kind.LISTING_ALERT,
        content=Content(
            template="listing_alert",
            variables={
                "searchName": match.search_name,
                "title": match.title,
                "location": match.location,
                "price": match.price,
                "bedrooms": match.bedrooms,
                "propertyId": match.property_id,
            },
        ),
        reference={"savedSearchId": match.saved_search_id, "propertyId": match.property_id},
    )
    return _request(envelope, request)


def welcome(envelope: Envelope) -> Envelope:
    user_id = envelope.subject
    request = NotificationRequested(
        notification_id=welcome_id(user_id),
        user_id=user_id,
        channel=RequestedChannel.PREFERRED,
        kind=Kind.ACCOUNT,
        content=Content(template="welcome"),
    )
    return _request(envelope, request)


def plan_triggers(records: Sequence[RawRecord], now: datetime, max_age: timedelta) -> TriggerPlan:
    requests: list[Envelope] = []
    erased: list[str] = []
    dead: list[DeadLetter] = []
    skipped = 0
    for record in records:
        try:
            envelope = decode_storable(record.value)
            if envelope.type == USER_DELETED:
                erased.append(envelope.subject)
                continue
            if envelope.type not in (SAVED_MATCH, USER_REGISTERED):
                continue  # other events of these topics are not triggers
            if now - envelope.time > max_age:
                skipped += 1
                continue
            if envelope.type == SAVED_MATCH:
                match = EVENTS.read(envelope).data
                assert isinstance(match, SavedSearchMatched)
                requests.append(listing_alert(envelope, match))
            else:
                if not envelope.subject.startswith("user-"):
                    raise EventDecodeError(f"{USER_REGISTERED} must be keyed by a user id")
                requests.append(welcome(envelope))
        except EventDecodeError as exc:
            dead.append(DeadLetter(record.key, record.value, str(exc), record.position, TRIGGER_CONSUMER))
    return TriggerPlan(requests, erased, dead, skipped)
