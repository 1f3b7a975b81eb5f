"""What a search means, as OpenSearch query DSL: pure data in, pure data out, no I/O.

One translation serves the search service (`/api/search/properties`, `/advanced`) and the saved-search
percolator (registered by the search projection, matched by the saved-search matcher), so a saved
search alerts on exactly the listings the same search finds. The field names are those of the
`properties` index (`ops/search_index.py`); the percolator index maps the same fields.

Text: every word of `q` must appear in the title, the locality or the description (cross fields, so
"3BHK Gachibowli" needs "3bhk" in the title and "Gachibowli" in the locality, not both in one field);
locality synonyms are applied by the index's search analyzer. Ranking adds what the words say: a
named locality boosts listings in it, "3BHK" boosts 3-bedroom listings.
"""

import re
from typing import Any

from schemas.localities import CANONICAL_NAME
from schemas.searches import SearchCriteria

Query = dict[str, Any]

TEXT_FIELDS = ("title^3", "location.text^2", "description")

# Every spelling of every locality, lower-cased (to find the localities a query names).
_SPELLINGS = sorted(CANONICAL_NAME, key=len, reverse=True)
# Longest first, so "Gachibowli Financial District" wins over "Gachibowli".
_LOCALITY_IN_TEXT = re.compile(
    r"(?<![\w])(" + "|".join(re.escape(n) for n in _SPELLINGS) + r")(?![\w])",
    re.IGNORECASE,
)
_BHK_IN_TEXT = re.compile(r"(?<![\w])(\d{1,2})\s*-?\s*bhk(?![\w])", re.IGNORECASE)


def canonical_location(location: str) -> str:
    return CANONICAL_NAME.get(location.strip().lower(), location.strip())


def localities_named(text: str) -> list[str]:
    """Canonical names of the localities a text mentions, in order of appearance."""
    return list(dict.fromkeys(CANONICAL_NAME[m.group(1).lower()] for m in _LOCALITY_IN_TEXT.finditer(text)))


def bedrooms_named(text: str) -> list[int]:
    """Bedroom counts a text names: "3BHK", "3 bhk" and "3-BHK" all say 3."""
    return list(dict.fromkeys(int(m.group(1)) for m in _BHK_IN_TEXT.finditer(text)))


def text_query(q: str) -> Query:
    return {
        "multi_match": {
            "query": q,
            "type": "cross_fields",
            "fields": list(TEXT_FIELDS),
            "operator": "and",
        }
    }


def _range(field: str, low: int | None, high: int | None) -> Query | None:
    bounds = {k: v for k, v in (("gte", low), ("lte", high)) if v is not None}
    return {"range": {field: bounds}} if bounds else None


def filter_clauses(criteria: SearchCriteria) -> list[Query]:
    """The conditions every hit must meet (filter context: cached, no scoring)."""
    clauses: list[Query] = []
    filters = criteria.filters
    if filters.location:
        # The `location` keyword's normaliser maps every spelling of a locality to its name, in the index
        # and in this term alike: "Hitech City" finds listings written "HITEC City".
        clauses.append({"terms": {"location": list(filters.location)}})
    if filters.property_type:
        clauses.append({"terms": {"propertyType": [t.value for t in filters.property_type]}})
    if filters.featured is not None:
        clauses.append({"term": {"featured": filters.featured}})
    if filters.has_images is True:
        clauses.append({"range": {"imageCount": {"gte": 1}}})
    elif filters.has_images is False:
        clauses.append({"bool": {"must_not": [{"range": {"imageCount": {"gte": 1}}}]}})
    for field, bounds in (
        ("price", criteria.price),
        ("areaSqft", criteria.area),
        ("bedrooms", criteria.bedrooms),
        ("bathrooms", criteria.bathrooms),
    ):
        if bounds is not None and (clause := _range(field, bounds.min, bounds.max)) is not None:
            clauses.append(clause)
    if criteria.near is not None:
        near = criteria.near
        clauses.append({"geo_distance": {"distance": f"{near.km}km", "geo": {"lat": near.lat, "lon": near.lon}}})
    if criteria.amenities is not None:
        clauses.extend({"term": {"amenities": amenity}} for amenity in criteria.amenities.all)
        if criteria.amenities.any:
            clauses.append({"terms": {"amenities": list(criteria.amenities.any)}})
    return clauses


def exclusion_clauses(criteria: SearchCriteria) -> list[Query]:
    clauses: list[Query] = []
    if criteria.exclude.location:
        clauses.append({"terms": {"location": list(criteria.exclude.location)}})
    if criteria.exclude.property_type:
        clauses.append({"terms": {"propertyType": [t.value for t in criteria.exclude.property_type]}})
    return clauses


def ranking_boosts(q: str) -> list[Query]:
    """What the words say beyond matching them: the localities and bedroom counts they name."""
    boosts: list[Query] = []
    for locality in localities_named(q):
        boosts.append({"term": {"location": {"value": locality, "boost": 4.0}}})
    bedrooms = bedrooms_named(q)
    if bedrooms:
        boosts.append({"terms": {"bedrooms": bedrooms, "boost": 3.0}})
    return boosts


def search_query(criteria: SearchCriteria) -> Query:
    """The query the search service runs: matching plus ranking."""
    must = [text_query(criteria.q)] if criteria.q else []
    query: Query = {
        "bool": {
            "must": must or [{"match_all": {}}],
            "filter": filter_clauses(criteria),
            "must_not": exclusion_clauses(criteria),
        }
    }
    if criteria.q:
        query["bool"]["should"] = ranking_boosts(criteria.q)
    return query


def percolator_query(criteria: SearchCriteria) -> Query:
    """The query a saved search registers: the same matching, no ranking (a listing matches or not)."""
    query = search_query(criteria)
    query["bool"].pop("should", None)
    return query
