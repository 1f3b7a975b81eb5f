"""Request and response bodies and the small vocabularies of the search service (camelCase on the wire)."""

from enum import StrEnum
from typing import Any, Literal

from pydantic import ConfigDict, Field, field_validator

from api.common.pagination import DEFAULT_LIMIT, MAX_CURSOR_LENGTH, MAX_LIMIT, Page
from api.common.responses import ApiModel, Timestamp
from schemas.properties import PropertyType
from schemas.searches import MAX_SEARCH_NAME, SearchCriteria


class Sort(StrEnum):
    RELEVANCE = "relevance"  # the default when there is text to rank by; otherwise newest
    NEWEST = "newest"
    PRICE_ASC = "price_asc"
    PRICE_DESC = "price_desc"


class Facet(StrEnum):
    LOCATION = "location"
    PROPERTY_TYPE = "propertyType"
    BEDROOMS = "bedrooms"
    BATHROOMS = "bathrooms"
    PRICE = "price"
    AMENITIES = "amenities"


class AdvancedSearchIn(SearchCriteria):
    """Criteria (text, filters, exclusions, ranges, distance, amenities) plus how to answer.

    ```json
    {"q": "lake view", "filters": {"location": ["Kondapur", "Gachibowli"], "propertyType": ["APARTMENT"]},
     "exclude": {"location": ["Kokapet"]}, "price": {"max": 10000000}, "bedrooms": {"min": 2},
     "area": {"min": 1200}, "near": {"lat": 17.4647, "lon": 78.3636, "km": 3},
     "amenities": {"all": ["gym"], "any": ["swimming pool", "clubhouse"]},
     "sort": "price_asc", "facets": ["location", "price"], "limit": 20}
    ```
    """

    sort: Sort | None = None
    facets: tuple[Facet, ...] = Field(default=(), max_length=len(Facet))
    limit: int = Field(default=DEFAULT_LIMIT, ge=1, le=MAX_LIMIT)
    cursor: str | None = Field(default=None, max_length=MAX_CURSOR_LENGTH)

    def criteria(self) -> SearchCriteria:
        return SearchCriteria.model_validate(
            self.model_dump(by_alias=True, exclude={"sort", "facets", "limit", "cursor"}, exclude_none=True)
        )


class SaveSearchIn(ApiModel):
    """A name for the owner and the criteria new listings are matched against (as in `/advanced`)."""

    model_config = ConfigDict(extra="forbid")

    name: str = Field(min_length=1, max_length=MAX_SEARCH_NAME)
    criteria: SearchCriteria

    @field_validator("name")
    @classmethod
    def _stripped(cls, value: str) -> str:
        value = " ".join(value.split())
        if not value:
            raise ValueError("must contain a word")
        return value

    @field_validator("criteria")
    @classmethod
    def _asks_for_something(cls, value: SearchCriteria) -> SearchCriteria:
        if value.empty:
            raise ValueError("give at least one criterion (q, filters, a range, near or amenities)")
        return value


# ---- answers ----


class ListingHitOut(ApiModel):
    """A listing as search finds it (the search index's copy of the listing)."""

    id: str
    owner_id: str
    title: str
    description: str | None = None
    location: str
    property_type: PropertyType
    price: int = Field(description="Rupees")
    bedrooms: int
    bathrooms: int
    area_sqft: int | None = None
    amenities: list[str]
    attributes: dict[str, Any]
    featured: bool
    image_count: int
    latitude: float | None
    longitude: float | None
    version: int
    created_at: Timestamp
    updated_at: Timestamp
    score: float | None = Field(default=None, description="Relevance, when sorted by relevance")


class TermCountOut(ApiModel):
    value: str
    count: int


class NumberCountOut(ApiModel):
    value: int
    count: int


class PriceBandOut(ApiModel):
    key: str
    label: str
    min: int = Field(description="Rupees, inclusive: the band's `minPrice`")
    max: int | None = Field(description="Rupees, inclusive: the band's `maxPrice`; null: no ceiling")
    count: int


class FacetsOut(ApiModel):
    """Counts over every match, for the facets asked for."""

    location: list[TermCountOut] | None = None
    property_type: list[TermCountOut] | None = None
    bedrooms: list[NumberCountOut] | None = None
    bathrooms: list[NumberCountOut] | None = None
    amenities: list[TermCountOut] | None = None
    price: list[PriceBandOut] | None = None


class SearchResultsOut(Page[ListingHitOut]):
    total: int = Field(description="Every match, not only this page")
    sort: Sort
    facets: FacetsOut | None = Field(default=None, description="On the first page, when facets were asked for")


class LocalityCountOut(ApiModel):
    name: str
    count: int


class Bounds(ApiModel):
    min: int | None
    max: int | None


class SearchFiltersOut(ApiModel):
    total: int = Field(description="Live listings")
    localities: list[LocalityCountOut]
    property_types: list[TermCountOut]
    price_ranges: list[PriceBandOut]
    bedrooms: list[NumberCountOut]
    bathrooms: list[NumberCountOut]
    amenities: list[TermCountOut]
    price: Bounds
    area_sqft: Bounds


class SuggestionOut(ApiModel):
    kind: Literal["locality", "title"]
    text: str
    count: int | None = Field(default=None, description="A locality's listings")
    property_id: str | None = Field(default=None, description="A title's listing")


class SearchHistoryEntryOut(ApiModel):
    id: str
    query: str | None
    filters: dict[str, Any]
    result_count: int
    searched_at: Timestamp


class SavedSearchOut(ApiModel):
    id: str
    owner_id: str
    name: str | None
    criteria: dict[str, Any]
    created_at: Timestamp | None


class SavedSearchCreatedOut(ApiModel):
    id: str
    name: str
    criteria: dict[str, Any] = Field(description="As saved, the words in the clear")
    created_at: Timestamp


class SavedSearchDeletedOut(ApiModel):
    id: str
