"""Request and response bodies of the property service (camelCase on the wire)."""

from typing import Any

from pydantic import ConfigDict, Field

from api.common.responses import ApiModel, Timestamp
from schemas.properties import PRICE_MAX, Amenities, Attributes, ListingIn, PropertyType

# The create body is exactly the listing the decider records: one model, one set of rules.
PropertyCreateIn = ListingIn


class PropertyUpdateIn(ApiModel):
    """Only the fields sent change; `featured` is for admins."""

    model_config = ConfigDict(extra="forbid")

    title: str | None = Field(default=None, min_length=3, max_length=200)
    location: str | None = Field(default=None, min_length=1, max_length=100)
    price: int | None = Field(default=None, gt=0, le=PRICE_MAX)
    property_type: PropertyType | None = None
    bedrooms: int | None = Field(default=None, ge=0, le=50)
    bathrooms: int | None = Field(default=None, ge=0, le=50)
    description: str | None = Field(default=None, max_length=5000)
    area_sqft: int | None = Field(default=None, gt=0, le=1_000_000)
    amenities: Amenities | None = None
    latitude: float | None = Field(default=None, ge=-90, le=90)
    longitude: float | None = Field(default=None, ge=-180, le=180)
    attributes: Attributes | None = None
    featured: bool | None = None


class PropertyCreatedOut(ApiModel):
    id: str
    title: str
    created_at: Timestamp


class PropertyChangedOut(ApiModel):
    id: str
    version: int


class ViewRecordedOut(ApiModel):
    property_id: str
    counted: bool


class ImagesAddedOut(ApiModel):
    id: str
    version: int
    images: list[dict[str, Any]]
