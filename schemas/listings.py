"""The listing as the read side shows it: one builder for the document the property projection stores and
the property service answers with.

`PropertyRow` is a `properties` row with its view count. `listing_document` is what
GET /api/properties/{id} returns (camelCase), whether the service finds it in Redis (`property:{id}`,
written by the projection) or falls back to Postgres; `search_document` is the `properties` index
document. Pure: rows in, dicts out.
"""

from collections.abc import Mapping
from dataclasses import dataclass, fields
from datetime import datetime
from typing import Any

from schemas.envelope import format_time


@dataclass(frozen=True)
class PropertyRow:
    """A `properties` row (as the projection reads it back, or a query selects it), with its view count."""

    id: str
    owner_id: str | None
    title: str | None
    location: str | None
    price: int | None
    property_type: str | None
    bedrooms: int | None
    bathrooms: int | None
    description: str | None
    area_sqft: int | None
    amenities: list[str]
    latitude: float | None
    longitude: float | None
    attributes: dict[str, Any]
    featured: bool
    images: list[dict[str, Any]]
    deleted: bool
    deleted_at: datetime | None
    version: int
    created_at: datetime | None
    updated_at: datetime
    view_count: int = 0

    @classmethod
    def of(cls, columns: Mapping[str, Any]) -> "PropertyRow":
        """From a query's row that may carry more columns than these."""
        return cls(**{f.name: columns[f.name] for f in fields(cls) if f.name in columns})

    @property
    def complete(self) -> bool:
        """False for a row that saw a later event before its creation (only in a partial replay)."""
        return self.title is not None and self.owner_id is not None and self.created_at is not None


def _time(value: datetime | None) -> str | None:
    return format_time(value) if value is not None else None


def listing_document(row: PropertyRow) -> dict[str, Any]:
    """A live listing as the API shows it.

    `viewCount` comes first on purpose: the projection's Redis scripts patch it in place with a string
    match on the first `"viewCount":<digits>`, which no user text can fake (quotes inside strings are
    escaped).
    """
    return {
        "viewCount": row.view_count,
        "id": row.id,
        "ownerId": row.owner_id,
        "title": row.title,
        "description": row.description,
        "location": row.location,
        "price": row.price,
        "propertyType": row.property_type,
        "bedrooms": row.bedrooms,
        "bathrooms": row.bathrooms,
        "areaSqft": row.area_sqft,
        "amenities": list(row.amenities),
        "latitude": row.latitude,
        "longitude": row.longitude,
        "attributes": row.attributes,
        "featured": row.featured,
        "images": row.images,
        "version": row.version,
        "createdAt": _time(row.created_at),
        "updatedAt": _time(row.updated_at),
    }


def tombstone_document(row: PropertyRow) -> dict[str, Any]:
    """A delisted property: it keeps its version, so a stale redelivery cannot resurrect it."""
    return {"id": row.id, "deleted": True, "version": row.version, "deletedAt": _time(row.deleted_at)}


def search_document(row: PropertyRow) -> dict[str, Any] | None:
    """The `properties` index document, or None when the property is gone (the sink deletes it)."""
    if row.deleted:
        return None
    document: dict[str, Any] = {
        "id": row.id,
        "ownerId": row.owner_id,
        "title": row.title,
        "description": row.description,
        "location": row.location,
        "propertyType": row.property_type,
        "price": row.price,
        "bedrooms": row.bedrooms,
        "bathrooms": row.bathrooms,
        "areaSqft": row.area_sqft,
        "amenities": list(row.amenities),
        "attributes": row.attributes,
        "featured": row.featured,
        "imageCount": len(row.images),
        "createdAt": _time(row.created_at),
        "updatedAt": _time(row.updated_at),
        "version": row.version,
    }
    if row.latitude is not None and row.longitude is not None:
        document["geo"] = {"lat": row.latitude, "lon": row.longitude}
    return document
