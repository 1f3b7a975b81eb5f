"""The search language: what a search asks for (`SearchCriteria`), and the events on `searches`.

- `search.performed.v1`: a fact (unsequenced), produced by the search service for each search a
  signed-in user runs; keyed by the user id. Search history is its projection.
- `search.saved.v1` / `search.saved_deleted.v1`: a saved search and its removal, keyed by the saved
  search id (`search-…`), so one saved search's events stay in order on one partition.
- `search.saved_match.v1`: a listing that matches a saved search, produced by the saved-search
  matcher, keyed by the saved search id; its event id is derived from (saved search, listing), so a
  redelivery duplicates nothing and there is at most one per pair.

`SearchCriteria` is the one shape of a search: the advanced search body, a saved search's criteria and
(for its filters) the simple search's query string all become one; `schemas/search_query.py` turns it
into the OpenSearch query that both the search service runs and the percolator registers, so an alert
fires for exactly the listings the same search would find.
"""

import hashlib
from typing import Any

from pydantic import Field, ValidationInfo, field_validator

from schemas.properties import PropertyType
from schemas.registry import EVENTS, EventData

SEARCH_PERFORMED = "search.performed.v1"
SEARCH_SAVED = "search.saved.v1"
SEARCH_SAVED_DELETED = "search.saved_deleted.v1"
SEARCH_SAVED_MATCH = "search.saved_match.v1"

MAX_QUERY_CHARS = 200
MAX_TERMS = 20  # values in one list filter (locations, types, amenities)
MAX_SEARCH_NAME = 100
MAX_NEAR_KM = 100.0


# ---- criteria ----

Word = Field(min_length=1, max_length=100)


class Range(EventData):
    """Inclusive bounds; either may be left out. Money is whole rupees, area square feet."""

    min: int | None = Field(default=None, ge=0)
    max: int | None = Field(default=None, ge=0)

    @field_validator("max")
    @classmethod
    def _not_below_min(cls, value: int | None, info: ValidationInfo) -> int | None:
        low = info.data.get("min")
        if value is not None and low is not None and value < low:
            raise ValueError(f"must be at least min ({low})")
        return value

    @property
    def empty(self) -> bool:
        return self.min is None and self.max is None


class Near(EventData):
    """Listings within `km` of a point (the listing's own coordinates)."""

    lat: float = Field(ge=-90, le=90)
    lon: float = Field(ge=-180, le=180)
    km: float = Field(gt=0, le=MAX_NEAR_KM)


class AmenityFilter(EventData):
    """`all`: every one of these; `any`: at least one of these (matching ignores case)."""

    all: tuple[str, ...] = Field(default=(), max_length=MAX_TERMS)
    any: tuple[str, ...] = Field(default=(), max_length=MAX_TERMS)

    @field_validator("all", "any")
    @classmethod
    def _words(cls, values: tuple[str, ...]) -> tuple[str, ...]:
        return _clean_words(values)


class Filters(EventData):
    """Each list is "any of these"; different fields must all hold."""

    location: tuple[str, ...] = Field(default=(), max_length=MAX_TERMS)
    property_type: tuple[PropertyType, ...] = Field(default=(), max_length=MAX_TERMS)
    featured: bool | None = None
    has_images: bool | None = None

    @field_validator("location")
    @classmethod
    def _words(cls, values: tuple[str, ...]) -> tuple[str, ...]:
        return _clean_words(values)


class Exclusions(EventData):
    """Listings in none of these."""

    location: tuple[str, ...] = Field(default=(), max_length=MAX_TERMS)
    property_type: tuple[PropertyType, ...] = Field(default=(), max_length=MAX_TERMS)

    @field_validator("location")
    @classmethod
    def _words(cls, values: tuple[str, ...]) -> tuple[str, ...]:
        return _clean_words(values)


def _clean_words(values: tuple[str, ...]) -> tuple[str, ...]:
    cleaned = tuple(dict.fromkeys(v.strip() for v in values))
    if any(not v or len(v) > 100 for v in cleaned):
        raise ValueError("each value needs 1 to 100 characters")
    return cleaned


class SearchCriteria(EventData):
    """What a search asks for. Full text `q` over title, description and locality (locality synonyms
    apply: "Hitech City" finds "HITEC City"), and filters that must all hold."""

    q: str | None = Field(default=None, min_length=1, max_length=MAX_QUERY_CHARS)
    filters: Filters = Field(default_factory=Filters)
    exclude: Exclusions = Field(default_factory=Exclusions)
    price: Range | None = None
    area: Range | None = None
    bedrooms: Range | None = None
    bathrooms: Range | None = None
    near: Near | None = None
    amenities: AmenityFilter | None = None

    @field_validator("q")
    @classmethod
    def _stripped(cls, value: str | None) -> str | None:
        if value is None:
            return None
        value = " ".join(value.split())
        if not value:
            raise ValueError("must contain a word")
        return value

    @property
    def empty(self) -> bool:
        """True when it asks for nothing (every listing matches)."""
        return self.to_wire() == {}

    def to_wire(self) -> dict[str, Any]:
        """Only what is set: empty lists, ranges and sub-objects are left out."""
        pruned: dict[str, Any] = _pruned(self.model_dump(mode="json", by_alias=True, exclude_none=True))
        return pruned


def _pruned(value: Any) -> Any:
    if isinstance(value, dict):
        pruned = {k: _pruned(v) for k, v in value.items()}
        return {k: v for k, v in pruned.items() if v not in ({}, [], None)}
    if isinstance(value, list):
        return [_pruned(v) for v in value]
    return value


# ---- events ----


class SearchPerformed(EventData):
    """A signed-in user's search: the text (sealed with their key, `schemas/personal.py`
    `SEARCH_QUERY`) and the filters they used (criteria minus `q`)."""

    user_id: str
    query: str | None = None
    filters: dict[str, Any] = Field(default_factory=dict)
    result_count: int = Field(ge=0)


class SearchSaved(EventData):
    """The name (`SEARCH_NAME`) and the criteria's free text `q` (`SEARCH_QUERY`) travel sealed with the
    owner's key; the door checked their lengths, the sealed values are longer."""

    saved_search_id: str
    owner_id: str
    name: str = Field(min_length=1)
    criteria: dict[str, Any]


class SavedSearchDeleted(EventData):
    saved_search_id: str
    owner_id: str


class SavedSearchMatched(EventData):
    """A listing, as it was when it matched, for the owner's alert. The saved search's name is sealed with
    the owner's key (`SEARCH_NAME`), or absent when the matcher found no key (a closed account); older
    events carry it in the clear."""

    saved_search_id: str
    user_id: str
    property_id: str
    search_name: str | None = None
    title: str
    location: str
    price: int
    bedrooms: int


def saved_match_event_id(saved_search_id: str, property_id: str) -> str:
    """One id per (saved search, listing): a redelivered or re-decided match is the same event."""
    return "evt-" + hashlib.sha256(f"search.saved_match|{saved_search_id}|{property_id}".encode()).hexdigest()[:32]


for _type, _model in (
    (SEARCH_PERFORMED, SearchPerformed),
    (SEARCH_SAVED, SearchSaved),
    (SEARCH_SAVED_DELETED, SavedSearchDeleted),
    (SEARCH_SAVED_MATCH, SavedSearchMatched),
):
    EVENTS.register(_type, _model)
