"""Request bodies and the small vocabularies of the search service (camelCase on the wire)."""

from enum import StrEnum

from pydantic import ConfigDict, Field, field_validator

from api.common.pagination import DEFAULT_LIMIT, MAX_CURSOR_LENGTH, MAX_LIMIT
from api.common.responses import ApiModel
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
