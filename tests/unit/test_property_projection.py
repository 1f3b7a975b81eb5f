from datetime import UTC, datetime

import orjson

from schemas.codec import encode
from schemas.envelope import new_event
from schemas.listings import PropertyRow, search_document
from schemas.properties import (
    PROPERTY_CREATED,
    PROPERTY_DELETED,
    PROPERTY_IMAGES_ADDED,
    PROPERTY_UPDATED,
    PROPERTY_VIEWED,
)
from streams.positions import RawRecord, SourcePosition
from streams.properties.projection import (
    ImagesReplaced,
    ListingWritten,
    PropertyRemoved,
    plan_properties,
    plan_views,
    redis_document,
)

AT = datetime(2026, 3, 1, 10, 30, tzinfo=UTC)
LISTING = {
    "title": "3BHK in Gachibowli",
    "location": "Gachibowli",
    "price": 12_500_000,
    "propertyType": "APARTMENT",
    "bedrooms": 3,
    "bathrooms": 2,
    "amenities": ["gym", "pool"],
    "latitude": 17.44,
    "longitude": 78.35,
    "attributes": {"facing": "east"},
}
IMAGE = {"url": "/files/file-1", "sha256": "ab" * 32, "contentType": "image/jpeg", "sizeBytes": 1024}


def record(event_type: str, data: dict, sequence: int | None = 1, offset: int = 5, subject: str = "prop-1"):
    event = new_event(
        type=event_type, subject=subject, data=data, service="tests", userid="user-1", sequence=sequence, time=AT
    )
    return RawRecord(subject.encode(), encode(event), SourcePosition("properties", 3, offset)), event


def test_a_creation_becomes_the_whole_listing_with_its_owner_and_version():
    raw, event = record(PROPERTY_CREATED, {"ownerId": "user-1", "listing": LISTING, "featured": True}, sequence=1)
    plan = plan_properties([raw])
    assert plan.dead_letters == []
    [planned] = plan.changes
    change = planned.change
    assert isinstance(change, ListingWritten)
    assert (change.property_id, change.version, change.owner_id, change.created, change.featured) == (
        "prop-1",
        1,
        "user-1",
        True,
        True,
    )
    assert change.listing.price == 12_500_000 and change.at == AT and change.event_id == event.id
    assert plan.positions == [SourcePosition("properties", 3, 5)]


def test_an_update_carries_no_owner_and_is_not_a_creation():
    raw, _ = record(PROPERTY_UPDATED, {"listing": LISTING, "featured": False, "changedFields": ["price"]}, sequence=4)
    [planned] = plan_properties([raw]).changes
    assert isinstance(planned.change, ListingWritten)
    assert (planned.change.owner_id, planned.change.created, planned.change.version) == (None, False, 4)


def test_images_and_deletion():
    images, _ = record(PROPERTY_IMAGES_ADDED, {"added": [IMAGE], "images": [IMAGE]}, sequence=2)
    deleted, _ = record(PROPERTY_DELETED, {"ownerId": "user-1"}, sequence=3, offset=6)
    first, second = (p.change for p in plan_properties([images, deleted]).changes)
    assert isinstance(first, ImagesReplaced) and first.images == (IMAGE,)
    assert isinstance(second, PropertyRemoved) and (second.owner_id, second.version) == ("user-1", 3)


def test_poison_goes_to_dead_letters_and_its_position_still_counts():
    bad_data, _ = record(PROPERTY_CREATED, {"ownerId": "user-1", "listing": {"title": "x"}}, offset=1)
    no_sequence, _ = record(PROPERTY_CREATED, {"ownerId": "user-1", "listing": LISTING}, sequence=None, offset=2)
    wrong_type, _ = record(PROPERTY_VIEWED, {}, offset=3)
    garbage = RawRecord(b"prop-1", b"{nope", SourcePosition("properties", 3, 4))
    good, _ = record(PROPERTY_CREATED, {"ownerId": "user-1", "listing": LISTING}, offset=5)
    plan = plan_properties([bad_data, no_sequence, wrong_type, garbage, good])
    assert [p.record.position.offset for p in plan.changes] == [5]
    errors = [d.error for d in plan.dead_letters]
    assert "invalid property.created.v1 data" in errors[0]
    assert "needs a sequence" in errors[1]
    assert "does not belong on the properties topic" in errors[2]
    assert "malformed JSON" in errors[3]
    assert [p.offset for p in plan.positions] == [1, 2, 3, 4, 5]


def test_a_nul_character_is_refused_before_postgres_sees_it():
    """Our codec refuses to publish one; an event already on the topic (older code, another producer) is
    dead-lettered, not written."""
    good, _ = record(PROPERTY_CREATED, {"ownerId": "user-1", "listing": LISTING})
    wire = orjson.loads(good.value)
    wire["data"]["listing"]["title"] = "nul\u0000here"
    raw = RawRecord(good.key, orjson.dumps(wire), good.position)
    plan = plan_properties([raw])
    assert plan.changes == [] and "NUL" in plan.dead_letters[0].error


def test_views_carry_their_day_and_position_and_must_be_keyed_by_the_property():
    event = new_event(type=PROPERTY_VIEWED, subject="prop-9", data={"viewerId": "user-2"}, service="t", time=AT)
    good = RawRecord(b"prop-9", encode(event), SourcePosition("property-views", 1, 42))
    miskeyed = RawRecord(b"prop-8", encode(event), SourcePosition("property-views", 1, 43))
    plan = plan_views([good, miskeyed])
    [view] = plan.views
    assert (view.property_id, view.day, view.position.offset) == ("prop-9", AT.date(), 42)
    assert "expected the property id" in plan.dead_letters[0].error


def row(**changes) -> PropertyRow:
    values = {
        "id": "prop-1",
        "owner_id": "user-1",
        "title": "3BHK",
        "location": "Gachibowli",
        "price": 100,
        "property_type": "APARTMENT",
        "bedrooms": 3,
        "bathrooms": 2,
        "description": None,
        "area_sqft": 1200,
        "amenities": ["gym"],
        "latitude": 17.44,
        "longitude": 78.35,
        "attributes": {"viewCount": 99},
        "featured": True,
        "images": [IMAGE],
        "deleted": False,
        "deleted_at": None,
        "version": 3,
        "created_at": AT,
        "updated_at": AT,
        "view_count": 7,
    }
    return PropertyRow(**{**values, **changes})


def test_the_redis_document_is_camel_case_and_starts_with_the_view_count():
    raw = redis_document(row())
    assert raw.startswith(b'{"viewCount":7,')
    document = orjson.loads(raw)
    assert document["propertyType"] == "APARTMENT" and document["areaSqft"] == 1200
    assert document["createdAt"] == "2026-03-01T10:30:00.000Z" and document["version"] == 3
    assert document["images"] == [IMAGE] and document["deleted"] is False


def test_a_deleted_property_is_a_tombstone_in_redis_and_absent_from_search():
    gone = row(deleted=True, deleted_at=AT, version=4)
    assert orjson.loads(redis_document(gone)) == {
        "id": "prop-1",
        "deleted": True,
        "version": 4,
        "deletedAt": "2026-03-01T10:30:00.000Z",
    }
    assert search_document(gone) is None


def test_the_search_document_has_a_geo_point_only_with_both_coordinates():
    assert search_document(row())["geo"] == {"lat": 17.44, "lon": 78.35}
    assert "geo" not in search_document(row(longitude=None))
    assert row(title=None).complete is False
