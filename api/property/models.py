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
    """An update's or a delisting's answer: the version it made (the next `If-Match`)."""

    id: str
    version: int


class ViewRecordedOut(ApiModel):
    property_id: str
    counted: bool = Field(description="False when this viewer's view in this window was counted already")


class ImageOut(ApiModel):
    url: str = Field(description="Where the image is served: `/api/properties/{id}/images/{sha256}`")
    sha256: str
    content_type: str
    size_bytes: int


class ImagesAddedOut(ApiModel):
    id: str
    version: int
    images: list[ImageOut] = Field(description="The images of this upload")


class PropertyOut(ApiModel):
    """A live listing as the details, a user's listings and the recent list show it."""

    id: str
    owner_id: str
    title: str
    description: str | None
    location: str
    price: int = Field(description="Rupees")
    property_type: PropertyType
    bedrooms: int
    bathrooms: int
    area_sqft: int | None
    amenities: list[str]
    latitude: float | None
    longitude: float | None
    attributes: dict[str, Any]
    featured: bool
    images: list[ImageOut]
    view_count: int = Field(description="Views counted, all time")
    version: int = Field(description="The listing's version, as its `ETag`")
    created_at: Timestamp
    updated_at: Timestamp


class FeaturedPropertyOut(PropertyOut):
    views_this_week: int = Field(description="Views counted over the last 7 days (UTC)")


class GeoPointOut(ApiModel):
    lat: float
    lon: float


class SimilarPropertyOut(ApiModel):
    """A listing as the search index holds it, with how alike it is to the one asked about."""

    id: str
    owner_id: str
    title: str
    description: str | None = None
    location: str
    property_type: PropertyType
    price: int
    bedrooms: int
    bathrooms: int
    area_sqft: int | None = None
    amenities: list[str]
    attributes: dict[str, Any]
    featured: bool
    image_count: int
    geo: GeoPointOut | None = Field(default=None, description="Only when the listing has a position")
    version: int
    created_at: Timestamp
    updated_at: Timestamp
    score: float = Field(description="Relevance to the listing asked about; higher is more alike")
