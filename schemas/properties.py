"""The property aggregate's language: the commands its decider takes and the events it emits.

Commands travel on `property-commands` and events on `properties`, both keyed by the property id, so
one property's commands are decided in order by one decider and its events stay in order.
Views are facts (`property.viewed.v1` on `property-views`), produced directly: nothing to decide.
"""

from enum import StrEnum
from typing import Annotated, Any

import orjson
from pydantic import AfterValidator, Field

from schemas.registry import EVENTS, EventData

# Commands
CREATE_PROPERTY = "property.create.v1"
UPDATE_PROPERTY = "property.update.v1"
DELETE_PROPERTY = "property.delete.v1"
ADD_PROPERTY_IMAGES = "property.add_images.v1"

# Events
PROPERTY_CREATED = "property.created.v1"
PROPERTY_UPDATED = "property.updated.v1"
PROPERTY_DELETED = "property.deleted.v1"
PROPERTY_IMAGES_ADDED = "property.images_added.v1"
PROPERTY_VIEWED = "property.viewed.v1"

MAX_IMAGES_PER_PROPERTY = 20


class PropertyType(StrEnum):
    APARTMENT = "APARTMENT"
    VILLA = "VILLA"
    INDEPENDENT_HOUSE = "INDEPENDENT_HOUSE"
    PLOT = "PLOT"
    COMMERCIAL = "COMMERCIAL"
    PENTHOUSE = "PENTHOUSE"


class Role(StrEnum):
    USER = "USER"
    ADMIN = "ADMIN"


# Rupees. The ceiling (₹1 lakh crore) is far above any listing and well inside Postgres bigint and a
# JavaScript number: a price accepted here is one every store can hold.
PRICE_MAX = 1_000_000_000_000


# What a listing may carry, checked at the door (ListingIn, the update body) rather than on the events,
# which keep reading whatever was once accepted. With these, the largest listing event stays far under
# the broker's 1 MB `max.message.bytes` (tests/unit/test_listing_bounds.py builds the largest one).
AMENITIES_MAX = 50
AMENITY_MAX_CHARS = 100
ATTRIBUTES_MAX_KEYS = 50
ATTRIBUTE_KEY_MAX_CHARS = 64
ATTRIBUTES_MAX_BYTES = 16 * 1024  # the attributes as JSON (UTF-8)


def _attributes_fit(attributes: dict[str, Any]) -> dict[str, Any]:
    try:
        size = len(orjson.dumps(attributes))
    except (TypeError, orjson.JSONEncodeError):
        raise ValueError("attributes must be plain JSON") from None
    if size > ATTRIBUTES_MAX_BYTES:
        raise ValueError(f"at most {ATTRIBUTES_MAX_BYTES} bytes as JSON; these are {size}")
    return attributes


Amenity = Annotated[str, Field(min_length=1, max_length=AMENITY_MAX_CHARS)]
Amenities = Annotated[tuple[Amenity, ...], Field(max_length=AMENITIES_MAX)]
AttributeKey = Annotated[str, Field(min_length=1, max_length=ATTRIBUTE_KEY_MAX_CHARS)]
Attributes = Annotated[dict[AttributeKey, Any], Field(max_length=ATTRIBUTES_MAX_KEYS), AfterValidator(_attributes_fit)]


class ListingFields(EventData):
    """What an owner says about a listing: the body of a create, the whole state after an update."""

    title: str = Field(min_length=3, max_length=200)
    location: str = Field(min_length=1, max_length=100)
    price: int = Field(gt=0, le=PRICE_MAX)
    property_type: PropertyType
    bedrooms: int = Field(ge=0, le=50)
    bathrooms: int = Field(ge=0, le=50)
    description: str | None = Field(default=None, max_length=5000)
    area_sqft: int | None = Field(default=None, gt=0, le=1_000_000)
    amenities: tuple[str, ...] = ()
    latitude: float | None = Field(default=None, ge=-90, le=90)
    longitude: float | None = Field(default=None, ge=-180, le=180)
    attributes: dict[str, Any] = Field(default_factory=dict)


class ListingIn(ListingFields):
    """A listing as an owner sends it: the listing's fields with the door's bounds."""

    amenities: Amenities = ()
    attributes: Attributes = Field(default_factory=dict)


class Image(EventData):
    url: str
    sha256: str
    content_type: str
    size_bytes: int


# ---- commands (data of the envelopes on `property-commands`) ----


class CreateProperty(EventData):
    listing: ListingFields


class UpdateProperty(EventData):
    """`changes` holds only the fields sent; `expected_version` comes from `If-Match`."""

    changes: dict[str, Any]
    expected_version: int | None = None
    actor_role: Role = Role.USER


class DeleteProperty(EventData):
    expected_version: int | None = None
    actor_role: Role = Role.USER


class AddPropertyImages(EventData):
    images: tuple[Image, ...]
    actor_role: Role = Role.USER


# ---- events (data of the envelopes on `properties`) ----


class PropertyCreated(EventData):
    owner_id: str
    listing: ListingFields
    featured: bool = False


class PropertyUpdated(EventData):
    """Carries the whole listing after the change, so projections write absolute rows."""

    listing: ListingFields
    featured: bool
    changed_fields: tuple[str, ...]


class PropertyDeleted(EventData):
    owner_id: str


class PropertyImagesAdded(EventData):
    added: tuple[Image, ...]
    images: tuple[Image, ...]  # every image of the property after this event


class PropertyViewed(EventData):
    viewer_id: str | None = None


for _type, _model in (
    (PROPERTY_CREATED, PropertyCreated),
    (PROPERTY_UPDATED, PropertyUpdated),
    (PROPERTY_DELETED, PropertyDeleted),
    (PROPERTY_IMAGES_ADDED, PropertyImagesAdded),
    (PROPERTY_VIEWED, PropertyViewed),
):
    EVENTS.register(_type, _model)

COMMANDS: dict[str, type[EventData]] = {
    CREATE_PROPERTY: CreateProperty,
    UPDATE_PROPERTY: UpdateProperty,
    DELETE_PROPERTY: DeleteProperty,
    ADD_PROPERTY_IMAGES: AddPropertyImages,
}
