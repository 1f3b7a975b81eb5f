"""Pure part of the saved-search matcher: records of `properties` -> the listings to percolate, and a
percolator hit -> the `search.saved_match.v1` event.

A listing is percolated when it is created or changed (`property.created` / `property.updated` carry the
whole listing), as the event says it is: the newest version of each property in a batch. Its document
has the fields of the `properties` index, so the registered query (`schemas/search_query.py`) reads it
exactly as a search reads the indexed listing. Images are not in those events: a saved search asking
for listings with images is matched when a later change of the listing comes by, not on creation.
"""

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Any

from schemas.codec import EventDecodeError, decode_storable
from schemas.envelope import Envelope, format_time
from schemas.personal import SEARCH_NAME, is_sealed, seal
from schemas.properties import (
    PROPERTY_CREATED,
    PROPERTY_DELETED,
    PROPERTY_IMAGES_ADDED,
    PROPERTY_UPDATED,
    ListingFields,
    PropertyCreated,
    PropertyUpdated,
)
from schemas.read_models import saved_search_matches_checkpoint
from schemas.registry import EVENTS
from schemas.searches import SEARCH_SAVED_MATCH, SavedSearchMatched, saved_match_event_id
from streams.dead_letters import DeadLetter
from streams.positions import RawRecord, SourcePosition

MATCHER_CONSUMER = "saved-search-matcher"
MATCHER_SOURCE = "/hyderabad-infra/saved-search-matcher"


def matches_checkpoint(group: str) -> str:
    """How far a matcher group has alerted: one checkpoint per group (a test's matcher vouches only for itself)."""
    return saved_search_matches_checkpoint(group, MATCHER_CONSUMER)


@dataclass(frozen=True)
class ListedProperty:
    """A listing as one event left it."""

    property_id: str
    version: int
    event_id: str
    correlation_id: str | None
    at: datetime
    listing: ListingFields
    featured: bool
    owner_id: str | None = None  # only a creation names the owner


@dataclass(frozen=True)
class MatchPlan:
    listings: list[ListedProperty]
    dead_letters: list[DeadLetter]
    positions: list[SourcePosition] = field(default_factory=list)


@dataclass(frozen=True)
class SavedSearchHit:
    """A saved search whose query matched the listing percolated in `slot`."""

    slot: int
    saved_search_id: str
    owner_id: str
    name: str | None  # as the percolator holds it: in the clear, until `with_sealed_names`
    saved_at: datetime | None = None


def with_sealed_names(
    matches: Sequence[tuple[SavedSearchHit, ListedProperty]], keys: Mapping[str, bytes]
) -> list[tuple[SavedSearchHit, ListedProperty]]:
    """The matches with each saved search's name sealed with its owner's key (`SEARCH_NAME`): `searches`
    and the alerts made from it keep events forever, and the name must not outlive the account. Without a
    key (the account is closing) the alert goes without the name rather than with it in the clear."""
    sealed = []
    for hit, listed in matches:
        key = keys.get(hit.owner_id)
        if hit.name is None or is_sealed(hit.name):
            name = hit.name
        else:
            name = None if key is None else seal(key, hit.owner_id, SEARCH_NAME, hit.name)
        sealed.append((replace(hit, name=name), listed))
    return sealed


def alerts_due(
    hits: Sequence[SavedSearchHit], listings: Sequence[ListedProperty]
) -> list[tuple[SavedSearchHit, ListedProperty]]:
    """The matches to alert on: listings created or changed after the search was saved. A saved search
    tells of homes listed from then on, not of the catalogue it already had; and a matcher replayed from
    the start of `properties` re-percolates years of listings, which must not alert anyone."""
    due = []
    for hit in hits:
        listed = listings[hit.slot]
        if hit.saved_at is None or listed.at >= hit.saved_at:
            due.append((hit, listed))
    return due


def listed_property(raw: bytes | None) -> ListedProperty | None:
    """None for events that list nothing new (images, deletions); `EventDecodeError` for poison."""
    event = EVENTS.read(decode_storable(raw))
    envelope, data = event.envelope, event.data
    if envelope.type in (PROPERTY_DELETED, PROPERTY_IMAGES_ADDED):
        return None
    if envelope.type not in (PROPERTY_CREATED, PROPERTY_UPDATED):
        raise EventDecodeError(f"{envelope.type} does not belong on the properties topic")
    if envelope.sequence is None or envelope.sequence < 1:
        raise EventDecodeError(f"{envelope.type} needs a sequence (the property's version), got {envelope.sequence}")
    assert isinstance(data, PropertyCreated | PropertyUpdated)
    return ListedProperty(
        envelope.subject,
        envelope.sequence,
        envelope.id,
        envelope.correlationid,
        envelope.time,
        data.listing,
        data.featured,
        data.owner_id if isinstance(data, PropertyCreated) else None,
    )


def plan_matches(records: Sequence[RawRecord]) -> MatchPlan:
    newest: dict[str, ListedProperty] = {}
    dead: list[DeadLetter] = []
    for record in records:
        try:
            listed = listed_property(record.value)
        except EventDecodeError as exc:
            dead.append(DeadLetter(record.key, record.value, str(exc), record.position, MATCHER_CONSUMER))
            continue
        if listed is not None and (
            listed.property_id not in newest or newest[listed.property_id].version < listed.version
        ):
            newest[listed.property_id] = listed
    return MatchPlan(list(newest.values()), dead, [r.position for r in records])


def percolation_document(listed: ListedProperty) -> dict[str, Any]:
    """The listing with the fields of the `properties` index (as `search_document` builds them)."""
    listing = listed.listing
    document: dict[str, Any] = {
        "id": listed.property_id,
        "title": listing.title,
        "description": listing.description,
        "location": listing.location,
        "propertyType": listing.property_type.value,
        "price": listing.price,
        "bedrooms": listing.bedrooms,
        "bathrooms": listing.bathrooms,
        "areaSqft": listing.area_sqft,
        "amenities": list(listing.amenities),
        "featured": listed.featured,
        "version": listed.version,
        "updatedAt": format_time(listed.at),
    }
    if listed.owner_id is not None:
        document["ownerId"] = listed.owner_id
        document["imageCount"] = 0  # a listing is created without images
        document["createdAt"] = format_time(listed.at)
    if listing.latitude is not None and listing.longitude is not None:
        document["geo"] = {"lat": listing.latitude, "lon": listing.longitude}
    return {k: v for k, v in document.items() if v is not None}


def match_event(hit: SavedSearchHit, listed: ListedProperty) -> Envelope:
    """The alert, with an id derived from (saved search, listing): whatever redelivers it, it is one event.
    Its time is the listing event's, so a redelivery of that event yields the very same bytes."""
    listing = listed.listing
    data = SavedSearchMatched(
        saved_search_id=hit.saved_search_id,
        user_id=hit.owner_id,
        property_id=listed.property_id,
        search_name=hit.name,
        title=listing.title,
        location=listing.location,
        price=listing.price,
        bedrooms=listing.bedrooms,
    )
    return Envelope(
        id=saved_match_event_id(hit.saved_search_id, listed.property_id),
        type=SEARCH_SAVED_MATCH,
        source=MATCHER_SOURCE,
        subject=hit.saved_search_id,
        time=listed.at,
        userid=hit.owner_id,
        correlationid=listed.correlation_id or listed.event_id,
        causationid=listed.event_id,
        data=data.to_wire(),
    )
