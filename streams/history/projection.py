"""Pure part of the user-history projection: Kafka records in, activities (one per event a user took
part in), property owners, erasures and dead letters out. One function per event type.

Which user an activity belongs to is the actor: the envelope's `userid` for property actions (an admin's
edit is in the admin's history), the payload's owner/user where the contract names one (searches,
files), the subject for `users` events. Views keep their viewer when there is one; anonymous views are
still kept (with no user) because "views received on own listings" counts them.

Nothing personal is copied: no email, phone or name (those travel sealed in `users` events and stay
there); a profile update records only which fields changed, a file upload not its file name.

Types not listed here (notifications, system facts such as a recount or an image variant) are skipped:
they advance the position and write nothing. A record that is not a CloudEvent, or a listed type whose
payload breaks its contract, is poison and goes to `dead-letters`.
"""

import importlib
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from schemas.codec import EventDecodeError, decode_storable
from schemas.envelope import Envelope
from schemas.history import ACTIVITY_CATEGORIES, VIEWED, activity_document, saved_search_summary, search_summary
from schemas.registry import EVENTS
from streams.dead_letters import DeadLetter
from streams.positions import RawRecord, SourcePosition

# Loaded for their side effect: each registers its event types (and upcasters), so the events history
# reads are validated against their own models.
importlib.import_module("schemas.files")
importlib.import_module("schemas.properties")
importlib.import_module("schemas.searches")
importlib.import_module("schemas.users")

HISTORY_CONSUMER = "user-history"


@dataclass(frozen=True, slots=True)
class Activity:
    event_id: str
    user_id: str | None
    activity_type: str
    event_type: str
    subject: str
    property_id: str | None
    occurred_at: datetime
    summary: str
    details: dict[str, Any]
    position: SourcePosition

    @property
    def category(self) -> str:
        return ACTIVITY_CATEGORIES[self.activity_type].value

    def document(self) -> dict[str, Any]:
        return activity_document(
            event_id=self.event_id,
            activity_type=self.activity_type,
            category=self.category,
            event_type=self.event_type,
            subject=self.subject,
            property_id=self.property_id,
            occurred_at=self.occurred_at,
            summary=self.summary,
            details=self.details,
        )


@dataclass(frozen=True, slots=True)
class OwnerFact:
    """Who listed a property: "views received on own listings" joins views to these."""

    property_id: str
    owner_id: str
    position: SourcePosition


@dataclass(frozen=True, slots=True)
class Erasure:
    """`user.deleted.v1`: the account is closed; see `streams/history/sinks.py` for what history keeps."""

    user_id: str
    event_id: str
    at: datetime
    position: SourcePosition


Fact = Activity | OwnerFact | Erasure


@dataclass
class HistoryPlan:
    activities: list[Activity] = field(default_factory=list)
    owners: list[OwnerFact] = field(default_factory=list)
    erasures: list[Erasure] = field(default_factory=list)
    dead_letters: list[DeadLetter] = field(default_factory=list)
    positions: list[SourcePosition] = field(default_factory=list)

    def only_user(self, user_id: str) -> "HistoryPlan":
        """What a one-user rebuild keeps: that user's activities, every view (their listings' views
        received), every owner fact and erasure (both tiny, and needed to read the rest right)."""
        return HistoryPlan(
            activities=[a for a in self.activities if a.user_id == user_id or a.activity_type == VIEWED],
            owners=self.owners,
            erasures=self.erasures,
            dead_letters=self.dead_letters,
            positions=self.positions,
        )


# ---- one function per event type: (envelope, payload, position) -> facts ----

Handler = Callable[[Envelope, dict[str, Any], SourcePosition], list[Fact]]


def _text(data: dict[str, Any], name: str, event_type: str, required: bool = True) -> str | None:
    value = data.get(name)
    if value is None and not required:
        return None
    if not isinstance(value, str) or not value:
        raise EventDecodeError(f"{event_type}: {name} must be a non-empty string, got {value!r}")
    return value


def _activity(
    envelope: Envelope,
    position: SourcePosition,
    user_id: str | None,
    summary: str,
    details: dict[str, Any],
    property_id: str | None = None,
) -> Activity:
    return Activity(
        event_id=envelope.id,
        user_id=user_id,
        activity_type=envelope.base_type,
        event_type=envelope.type,
        subject=envelope.subject,
        property_id=property_id,
        occurred_at=envelope.time,
        summary=summary,
        details=details,
        position=position,
    )


def _plural(n: int, word: str) -> str:
    return f"{n} {word}" if n == 1 else f"{n} {word}s"


# users: the subject is the user the event is about.


def _registered(envelope: Envelope, data: dict[str, Any], position: SourcePosition) -> list[Fact]:
    return [_activity(envelope, position, envelope.subject, "Created an account", {"role": data.get("role", "USER")})]


def _logged_in(envelope: Envelope, data: dict[str, Any], position: SourcePosition) -> list[Fact]:
    method = data.get("method", "password")
    return [_activity(envelope, position, envelope.subject, "Signed in", {"method": method})]


def _profile_updated(envelope: Envelope, data: dict[str, Any], position: SourcePosition) -> list[Fact]:
    changed = [str(name) for name in data.get("changedFields", [])]
    summary = "Updated profile" + (f": {', '.join(changed)}" if changed else "")
    return [_activity(envelope, position, envelope.subject, summary, {"changedFields": changed})]


def _user_deleted(envelope: Envelope, data: dict[str, Any], position: SourcePosition) -> list[Fact]:
    return [Erasure(envelope.subject, envelope.id, envelope.time, position)]


# properties: the actor is the envelope's user; creation and deletion also name the owner.


def _listing_details(listing: dict[str, Any]) -> dict[str, Any]:
    return {
        "title": listing.get("title"),
        "location": listing.get("location"),
        "price": listing.get("price"),
        "propertyType": listing.get("propertyType"),
        "bedrooms": listing.get("bedrooms"),
    }


def _property_created(envelope: Envelope, data: dict[str, Any], position: SourcePosition) -> list[Fact]:
    owner = _text(data, "ownerId", envelope.type)
    assert owner is not None
    listing = data.get("listing") or {}
    details = _listing_details(listing)
    summary = f"Listed {details['title']} in {details['location']}"
    activity = _activity(envelope, position, envelope.userid or owner, summary, details, envelope.subject)
    return [OwnerFact(envelope.subject, owner, position), activity]


def _property_updated(envelope: Envelope, data: dict[str, Any], position: SourcePosition) -> list[Fact]:
    if envelope.userid is None:
        return []  # no actor to attribute it to; the listing itself is the property projection's
    changed = [str(name) for name in data.get("changedFields", [])]
    listing = data.get("listing") or {}
    details = {**_listing_details(listing), "changedFields": changed}
    summary = f"Updated {details['title']}" + (f": {', '.join(changed)}" if changed else "")
    return [_activity(envelope, position, envelope.userid, summary, details, envelope.subject)]


def _property_deleted(envelope: Envelope, data: dict[str, Any], position: SourcePosition) -> list[Fact]:
    owner = _text(data, "ownerId", envelope.type)
    assert owner is not None
    activity = _activity(envelope, position, envelope.userid or owner, "Delisted a property", {}, envelope.subject)
    return [OwnerFact(envelope.subject, owner, position), activity]


def _images_added(envelope: Envelope, data: dict[str, Any], position: SourcePosition) -> list[Fact]:
    if envelope.userid is None:
        return []
    added, every = len(data.get("added") or ()), len(data.get("images") or ())
    details = {"added": added, "total": every}
    summary = f"Added {_plural(added, 'image')} to a listing"
    return [_activity(envelope, position, envelope.userid, summary, details, envelope.subject)]


def _viewed(envelope: Envelope, data: dict[str, Any], position: SourcePosition) -> list[Fact]:
    viewer = data.get("viewerId") or envelope.userid
    return [_activity(envelope, position, viewer, "Viewed a listing", {}, envelope.subject)]


# searches (contract: docs of the search slice): the user is named in the payload.


def _search_performed(envelope: Envelope, data: dict[str, Any], position: SourcePosition) -> list[Fact]:
    user = _text(data, "userId", envelope.type, required=False) or envelope.userid or envelope.subject
    query = data.get("query")
    filters = data.get("filters") or {}
    count = data.get("resultCount")
    if not isinstance(filters, dict) or (count is not None and not isinstance(count, int)):
        raise EventDecodeError(f"{envelope.type}: filters must be an object and resultCount an integer")
    summary = search_summary(query)
    return [_activity(envelope, position, user, summary, {"query": query, "filters": filters, "resultCount": count})]


def _search_saved(envelope: Envelope, data: dict[str, Any], position: SourcePosition) -> list[Fact]:
    saved = _text(data, "savedSearchId", envelope.type)
    owner = _text(data, "ownerId", envelope.type)
    name = data.get("name")
    details = {"savedSearchId": saved, "name": name, "criteria": data.get("criteria") or {}}
    summary = saved_search_summary(name)
    return [_activity(envelope, position, owner, summary, details)]


def _search_saved_deleted(envelope: Envelope, data: dict[str, Any], position: SourcePosition) -> list[Fact]:
    saved = _text(data, "savedSearchId", envelope.type)
    owner = _text(data, "ownerId", envelope.type)
    return [_activity(envelope, position, owner, "Deleted a saved search", {"savedSearchId": saved})]


# files (contract: docs of the file slice): the owner is named in the payload; the file name is not kept.


def _file_uploaded(envelope: Envelope, data: dict[str, Any], position: SourcePosition) -> list[Fact]:
    file_id = _text(data, "fileId", envelope.type)
    owner = _text(data, "ownerId", envelope.type)
    property_id = _text(data, "propertyId", envelope.type, required=False)
    kind = data.get("kind")
    details = {
        "fileId": file_id,
        "kind": kind,
        "contentType": data.get("contentType"),
        "sizeBytes": data.get("sizeBytes"),
    }
    summary = f"Uploaded a {str(kind).replace('_', ' ')}" if kind else "Uploaded a file"
    return [_activity(envelope, position, owner, summary, details, property_id)]


def _file_deleted(envelope: Envelope, data: dict[str, Any], position: SourcePosition) -> list[Fact]:
    file_id = _text(data, "fileId", envelope.type)
    owner = _text(data, "ownerId", envelope.type)
    property_id = _text(data, "propertyId", envelope.type, required=False)
    return [_activity(envelope, position, owner, "Deleted a file", {"fileId": file_id}, property_id)]


HANDLERS: dict[str, Handler] = {
    "user.registered.v1": _registered,
    "user.logged_in.v1": _logged_in,
    "user.profile_updated.v1": _profile_updated,
    "user.deleted.v1": _user_deleted,
    "property.created.v1": _property_created,
    "property.updated.v1": _property_updated,
    "property.deleted.v1": _property_deleted,
    "property.images_added.v1": _images_added,
    "property.viewed.v1": _viewed,
    "search.performed.v1": _search_performed,
    "search.saved.v1": _search_saved,
    "search.saved_deleted.v1": _search_saved_deleted,
    "file.uploaded.v1": _file_uploaded,
    "file.deleted.v1": _file_deleted,
}


def facts_of(record: RawRecord) -> list[Fact]:
    """Raises `EventDecodeError` for poison; an empty list for events history has nothing to do with."""
    envelope = decode_storable(record.value)
    known = EVENTS.knows(envelope.type)
    if known:
        envelope = EVENTS.upcast(envelope)  # to the newest version; the id, time and subject stay
    handler = HANDLERS.get(envelope.type)
    if handler is None:
        return []  # not history's business, valid or not: the topic's own projection judges it
    if known:
        # Validated against the registered model; the handlers read the payload as it travels (camelCase).
        envelope = EVENTS.read(envelope).envelope
    return handler(envelope, envelope.data, record.position)


def plan_history(records: Iterable[RawRecord], consumer: str = HISTORY_CONSUMER) -> HistoryPlan:
    plan = HistoryPlan()
    for record in records:
        plan.positions.append(record.position)
        try:
            facts = facts_of(record)
        except EventDecodeError as exc:
            plan.dead_letters.append(DeadLetter(record.key, record.value, str(exc), record.position, consumer))
            continue
        for fact in facts:
            if isinstance(fact, Activity):
                plan.activities.append(fact)
            elif isinstance(fact, OwnerFact):
                plan.owners.append(fact)
            else:
                plan.erasures.append(fact)
    return plan
