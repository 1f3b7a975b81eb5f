"""Pure part of the property read-model projection: Kafka records in, changes and documents out.

Two steps, both pure:
1. `plan_properties` / `plan_views`: records of `properties` / `property-views` -> the changes the
   Postgres sink applies (one function per event type), or dead letters for what cannot be read.
2. `redis_document` / `schemas.listings.search_document`: a property's *current* Postgres row -> the
   Redis JSON and the OpenSearch document. Redis and OpenSearch are fed from the row, not from the
   event, because an update carries no images and an images event carries no listing: the row is the
   whole property, at a version at least as new as the event, so the version-guarded writes converge
   whatever replays.
"""

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime
from typing import Any

import orjson

from schemas.codec import EventDecodeError, decode_storable
from schemas.envelope import Envelope
from schemas.listings import PropertyRow, listing_document, tombstone_document
from schemas.properties import (
    PROPERTY_CREATED,
    PROPERTY_DELETED,
    PROPERTY_IMAGES_ADDED,
    PROPERTY_UPDATED,
    PROPERTY_VIEWED,
    ListingFields,
    PropertyCreated,
    PropertyDeleted,
    PropertyImagesAdded,
    PropertyUpdated,
)
from schemas.registry import EVENTS, EventData
from streams.dead_letters import DeadLetter
from streams.positions import RawRecord, SourcePosition

PROJECTION_CONSUMER = "property-projection"
SEARCH_CONSUMER = "property-search-projection"


# ---- changes for Postgres ----


@dataclass(frozen=True)
class ListingWritten:
    """property.created / property.updated: the whole listing as of `version`."""

    property_id: str
    version: int
    event_id: str
    at: datetime
    listing: ListingFields
    featured: bool
    owner_id: str | None = None  # only a creation names the owner
    created: bool = False


@dataclass(frozen=True)
class ImagesReplaced:
    property_id: str
    version: int
    event_id: str
    at: datetime
    images: tuple[dict[str, Any], ...]


@dataclass(frozen=True)
class PropertyRemoved:
    property_id: str
    version: int
    event_id: str
    at: datetime
    owner_id: str


PropertyChange = ListingWritten | ImagesReplaced | PropertyRemoved


@dataclass(frozen=True)
class PlannedChange:
    change: PropertyChange
    record: RawRecord


@dataclass(frozen=True)
class PropertyPlan:
    changes: list[PlannedChange]
    dead_letters: list[DeadLetter]
    positions: list[SourcePosition] = field(default_factory=list)


def _created(envelope: Envelope, data: EventData, version: int) -> PropertyChange:
    assert isinstance(data, PropertyCreated)
    return ListingWritten(
        envelope.subject,
        version,
        envelope.id,
        envelope.time,
        data.listing,
        data.featured,
        owner_id=data.owner_id,
        created=True,
    )


def _updated(envelope: Envelope, data: EventData, version: int) -> PropertyChange:
    assert isinstance(data, PropertyUpdated)
    return ListingWritten(envelope.subject, version, envelope.id, envelope.time, data.listing, data.featured)


def _images_added(envelope: Envelope, data: EventData, version: int) -> PropertyChange:
    assert isinstance(data, PropertyImagesAdded)
    images = tuple(image.to_wire() for image in data.images)
    return ImagesReplaced(envelope.subject, version, envelope.id, envelope.time, images)


def _deleted(envelope: Envelope, data: EventData, version: int) -> PropertyChange:
    assert isinstance(data, PropertyDeleted)
    return PropertyRemoved(envelope.subject, version, envelope.id, envelope.time, data.owner_id)


_PROJECTIONS: dict[str, Callable[[Envelope, EventData, int], PropertyChange]] = {
    PROPERTY_CREATED: _created,
    PROPERTY_UPDATED: _updated,
    PROPERTY_IMAGES_ADDED: _images_added,
    PROPERTY_DELETED: _deleted,
}


def property_change(raw: bytes | None) -> PropertyChange:
    """Raises `EventDecodeError` for anything this projection cannot apply."""
    event = EVENTS.read(decode_storable(raw))
    envelope = event.envelope
    project = _PROJECTIONS.get(envelope.type)
    if project is None:
        raise EventDecodeError(f"{envelope.type} does not belong on the properties topic")
    if envelope.sequence is None or envelope.sequence < 1:
        raise EventDecodeError(f"{envelope.type} needs a sequence (the property's version), got {envelope.sequence}")
    return project(envelope, event.data, envelope.sequence)


def plan_properties(records: Sequence[RawRecord], consumer: str = PROJECTION_CONSUMER) -> PropertyPlan:
    changes: list[PlannedChange] = []
    dead: list[DeadLetter] = []
    for record in records:
        try:
            changes.append(PlannedChange(property_change(record.value), record))
        except EventDecodeError as exc:
            dead.append(DeadLetter(record.key, record.value, str(exc), record.position, consumer))
    return PropertyPlan(changes, dead, [r.position for r in records])


def newest_versions(changes: Sequence[PlannedChange]) -> dict[str, int]:
    """Per property, the highest version a batch carries: the row the search projection must see."""
    newest: dict[str, int] = {}
    for planned in changes:
        change = planned.change
        newest[change.property_id] = max(newest.get(change.property_id, 0), change.version)
    return newest


def behind(rows: Sequence[PropertyRow], wanted: dict[str, int]) -> set[str]:
    """The properties whose Postgres row (missing counts as version 0) is older than the batch."""
    have = {row.id: row.version for row in rows}
    return {property_id for property_id, version in wanted.items() if have.get(property_id, 0) < version}


def passed(applied: dict[tuple[str, int], int], needed: dict[tuple[str, int], int]) -> bool:
    """True when a checkpoint (`applied`, per topic and partition) is at or past every `needed` offset."""
    return all(applied.get(where, -1) >= offset for where, offset in needed.items())


# ---- views ----


@dataclass(frozen=True)
class ViewSeen:
    property_id: str
    day: date
    at: datetime
    position: SourcePosition


@dataclass(frozen=True)
class ViewPlan:
    views: list[ViewSeen]
    dead_letters: list[DeadLetter]
    positions: list[SourcePosition] = field(default_factory=list)


def view_seen(record: RawRecord) -> ViewSeen:
    event = EVENTS.read(decode_storable(record.value))
    if event.envelope.type != PROPERTY_VIEWED:
        raise EventDecodeError(f"{event.envelope.type} does not belong on the property-views topic")
    if record.key is not None and record.key != event.envelope.subject.encode():
        # Counting relies on a property's views living on one partition, i.e. keyed by its id.
        raise EventDecodeError(f"view of {event.envelope.subject} keyed {record.key!r}, expected the property id")
    at = event.envelope.time
    return ViewSeen(event.envelope.subject, at.date(), at, record.position)


def plan_views(records: Sequence[RawRecord]) -> ViewPlan:
    views: list[ViewSeen] = []
    dead: list[DeadLetter] = []
    for record in records:
        try:
            views.append(view_seen(record))
        except EventDecodeError as exc:
            dead.append(DeadLetter(record.key, record.value, str(exc), record.position, PROJECTION_CONSUMER))
    return ViewPlan(views, dead, [r.position for r in records])


@dataclass(frozen=True)
class ViewTotals:
    """A property's absolute view count after a batch, as Postgres holds it."""

    property_id: str
    view_count: int
    last_offset: int


# ---- documents for Redis and OpenSearch, from the current row ----


def epoch_ms(value: datetime) -> int:
    return int(value.timestamp() * 1000)


def redis_document(row: PropertyRow) -> bytes:
    """The JSON `property:{id}` holds: the listing document (`viewCount` first, as the views script
    needs), or the tombstone of a deleted property."""
    if row.deleted:
        return orjson.dumps(tombstone_document(row))
    return orjson.dumps({**listing_document(row), "deleted": False})
