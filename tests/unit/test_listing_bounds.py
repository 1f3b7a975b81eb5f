"""The largest listing the door lets through still makes an event the broker takes (1 MB)."""

from datetime import UTC, datetime

import pytest
from pydantic import ValidationError

from schemas.codec import encode
from schemas.envelope import new_event
from schemas.properties import (
    AMENITIES_MAX,
    AMENITY_MAX_CHARS,
    ATTRIBUTE_KEY_MAX_CHARS,
    ATTRIBUTES_MAX_BYTES,
    ATTRIBUTES_MAX_KEYS,
    MAX_IMAGES_PER_PROPERTY,
    PROPERTY_UPDATED,
    Image,
    ListingIn,
    PropertyImagesAdded,
    PropertyUpdated,
)

BROKER_MAX_MESSAGE_BYTES = 1_048_588  # Kafka's default max.message.bytes, which the topics keep
WIDE = "\U0001f3e0"  # four bytes in UTF-8: the widest a character gets


def largest_listing() -> ListingIn:
    keys = [f"{n:02d}".ljust(ATTRIBUTE_KEY_MAX_CHARS, "k") for n in range(ATTRIBUTES_MAX_KEYS)]
    # Values filling the attributes' byte budget once keys, quotes and commas are counted.
    room = (ATTRIBUTES_MAX_BYTES - 2 - ATTRIBUTES_MAX_KEYS * (ATTRIBUTE_KEY_MAX_CHARS + 6)) // ATTRIBUTES_MAX_KEYS
    return ListingIn.model_validate(
        {
            "title": WIDE * 200,
            "location": WIDE * 100,
            "price": 1,
            "propertyType": "VILLA",
            "bedrooms": 50,
            "bathrooms": 50,
            "description": WIDE * 5000,
            "amenities": [WIDE * AMENITY_MAX_CHARS] * AMENITIES_MAX,
            "attributes": {key: "v" * room for key in keys},
        }
    )


def test_the_largest_listing_event_fits_the_broker_with_room_to_spare():
    listing = largest_listing()
    updated = PropertyUpdated(listing=listing, featured=True, changed_fields=tuple(ListingIn.model_fields))
    envelope = new_event(
        type=PROPERTY_UPDATED,
        subject="prop-" + "x" * 32,
        data=updated.to_wire(),
        service="property",
        userid="user-" + "x" * 32,
        time=datetime(2026, 12, 1, tzinfo=UTC),
    )
    assert len(encode(envelope)) < BROKER_MAX_MESSAGE_BYTES / 10


def test_the_images_event_fits_too():
    image = Image(
        url="/api/properties/prop-x/images/" + "f" * 64, sha256="f" * 64, content_type="image/jpeg", size_bytes=1
    )
    images = (image,) * MAX_IMAGES_PER_PROPERTY
    envelope = new_event(
        type="property.images_added.v1",
        subject="prop-x",
        data=PropertyImagesAdded(added=images, images=images).to_wire(),
        service="property",
    )
    assert len(encode(envelope)) < BROKER_MAX_MESSAGE_BYTES / 10


@pytest.mark.parametrize(
    "change",
    [
        {"amenities": ["a"] * (AMENITIES_MAX + 1)},
        {"amenities": ["a" * (AMENITY_MAX_CHARS + 1)]},
        {"attributes": {str(n): n for n in range(ATTRIBUTES_MAX_KEYS + 1)}},
        {"attributes": {"k" * (ATTRIBUTE_KEY_MAX_CHARS + 1): 1}},
        {"attributes": {"notes": "x" * ATTRIBUTES_MAX_BYTES}},
    ],
)
def test_one_past_any_bound_is_refused(change):
    with pytest.raises(ValidationError):
        ListingIn.model_validate({**largest_listing().to_wire(), **change})
