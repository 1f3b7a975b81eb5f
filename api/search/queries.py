"""The search service's reads: OpenSearch (listings through the `properties` alias) and Postgres (saved
searches, search history), both written by projections only.

A query sent with `X-Consistency-Token` first waits (bounded) for the checkpoint of the store it reads:
`properties-opensearch` for listings, `saved-searches-opensearch` for saved searches (the percolator is
written after Postgres, so a saved search seen there also alerts), `searches-postgres` for history.
"""

import hashlib
import logging
from collections.abc import Sequence
from datetime import datetime
from typing import Any

import orjson
from fastapi import Request
from opensearchpy import AsyncOpenSearch
from opensearchpy.exceptions import NotFoundError, TransportError
from psycopg.rows import dict_row

from api.common.consistency import Reader, wait_for_positions
from api.common.errors import ApiError, DependencyUnavailable, field_error
from api.common.pagination import PageParams, encode_cursor, page
from api.common.status import ReadModel
from api.search.models import Facet, Sort
from config.settings import Settings
from schemas.envelope import format_time
from schemas.localities import CANONICAL_NAME
from schemas.read_models import SEARCHES_POSTGRES_CHECKPOINT
from schemas.search_query import search_query
from schemas.searches import SearchCriteria
from schemas.topics import PROPERTIES, SEARCHES, USERS

log = logging.getLogger("api.search")

_LISTING_TOPICS = frozenset({PROPERTIES.name})
_SEARCH_TOPICS = frozenset({SEARCHES.name})

# Price bands of the facets and the filters list: (key, label, from inclusive, to exclusive), rupees.
PRICE_BANDS: tuple[tuple[str, str, int | None, int | None], ...] = (
    ("under-50-lakh", "Under ₹50 lakh", None, 5_000_000),
    ("50-lakh-to-1-crore", "₹50 lakh to ₹1 crore", 5_000_000, 10_000_000),
    ("1-to-2-crore", "₹1 to ₹2 crore", 10_000_000, 20_000_000),
    ("2-to-5-crore", "₹2 to ₹5 crore", 20_000_000, 50_000_000),
    ("above-5-crore", "₹5 crore and above", 50_000_000, None),
)
_LOCALITY_BUCKETS = 100
_AMENITY_BUCKETS = 50

# What a listing hit needs from OpenSearch: less JSON to parse on every answer.
HIT_FIELDS = "hits.total,hits.hits._id,hits.hits._score,hits.hits._source,hits.hits.sort,aggregations"


def freshness_headers(fresh: bool) -> dict[str, str]:
    return {} if fresh else {"X-Consistency": "stale"}


async def _caught_up(
    pool: Reader, settings: Settings, checkpoint: str, topics: frozenset[str], token: str | None
) -> bool:
    return await wait_for_positions(pool, checkpoint, topics, token, settings.consistency_wait_seconds)


async def listings_caught_up(pool: Reader, settings: Settings, token: str | None) -> bool:
    return await _caught_up(pool, settings, settings.properties_search_checkpoint, _LISTING_TOPICS, token)


async def saved_caught_up(pool: Reader, settings: Settings, token: str | None) -> bool:
    return await _caught_up(pool, settings, settings.saved_searches_checkpoint, _SEARCH_TOPICS, token)


async def read_models(request: Request) -> Sequence[ReadModel]:
    """What `/status` reports on: the listings and saved-searches aliases this service was pointed at, and
    the search history in Postgres (closed accounts' erasures come from `users`)."""
    settings = request.app.state.settings
    return (
        ReadModel(settings.properties_search_checkpoint, _LISTING_TOPICS),
        ReadModel(settings.saved_searches_checkpoint, _SEARCH_TOPICS | {USERS.name}),
        ReadModel(SEARCHES_POSTGRES_CHECKPOINT, _SEARCH_TOPICS | {USERS.name}),
    )


async def history_caught_up(pool: Reader, settings: Settings, token: str | None) -> bool:
    return await _caught_up(pool, settings, SEARCHES_POSTGRES_CHECKPOINT, _SEARCH_TOPICS, token)


# ---- OpenSearch ----


async def _search(
    search: AsyncOpenSearch, settings: Settings, body: dict[str, Any], filter_path: str | None = HIT_FIELDS
) -> dict[str, Any]:
    params = {"filter_path": filter_path} if filter_path else {}
    try:
        return await search.search(  # type: ignore[no-any-return]
            index=settings.opensearch_properties_alias, body=body, params=params
        )
    except NotFoundError:
        raise DependencyUnavailable("opensearch", "the listings index is missing; run `make prepare`") from None
    except TransportError as exc:
        if isinstance(exc.status_code, int) and (exc.status_code == 429 or exc.status_code >= 500):
            raise DependencyUnavailable("opensearch", f"answered {exc.status_code}") from None
        raise


def sort_clause(sort: Sort) -> list[Any]:
    tiebreak = {"id": "asc"}
    if sort == Sort.RELEVANCE:
        return ["_score", {"createdAt": "desc"}, tiebreak]
    if sort == Sort.PRICE_ASC:
        return [{"price": "asc"}, tiebreak]
    if sort == Sort.PRICE_DESC:
        return [{"price": "desc"}, tiebreak]
    return [{"createdAt": "desc"}, tiebreak]


def facet_aggregations(facets: set[Facet]) -> dict[str, Any]:
    aggs: dict[str, Any] = {}
    if Facet.LOCATION in facets:
        # Buckets of the canonical locality (the keyword's normaliser); `raw` names one it does not know.
        aggs["location"] = {
            "terms": {"field": "location", "size": _LOCALITY_BUCKETS},
            "aggs": {"spelling": {"terms": {"field": "location.raw", "size": 1}}},
        }
    if Facet.PROPERTY_TYPE in facets:
        aggs["propertyType"] = {"terms": {"field": "propertyType", "size": 20}}
    if Facet.BEDROOMS in facets:
        aggs["bedrooms"] = {"terms": {"field": "bedrooms", "size": 60, "order": {"_key": "asc"}}}
    if Facet.BATHROOMS in facets:
        aggs["bathrooms"] = {"terms": {"field": "bathrooms", "size": 60, "order": {"_key": "asc"}}}
    if Facet.PRICE in facets:
        ranges = []
        for key, _, low, high in PRICE_BANDS:
            band: dict[str, Any] = {"key": key}
            if low is not None:
                band["from"] = low
            if high is not None:
                band["to"] = high
            ranges.append(band)
        aggs["price"] = {"range": {"field": "price", "ranges": ranges}}
    if Facet.AMENITIES in facets:
        aggs["amenities"] = {"terms": {"field": "amenities", "size": _AMENITY_BUCKETS}}
    return aggs


def locality_name(bucket: dict[str, Any]) -> str:
    known = CANONICAL_NAME.get(bucket["key"])
    if known:
        return known
    spellings = bucket.get("spelling", {}).get("buckets", [])
    return str(spellings[0]["key"]) if spellings else str(bucket["key"])


def render_facets(aggregations: dict[str, Any]) -> dict[str, Any]:
    facets: dict[str, Any] = {}
    if "location" in aggregations:
        facets["location"] = [
            {"value": locality_name(b), "count": b["doc_count"]} for b in aggregations["location"]["buckets"]
        ]
    for name in ("propertyType", "bedrooms", "bathrooms", "amenities"):
        if name in aggregations:
            facets[name] = [{"value": b["key"], "count": b["doc_count"]} for b in aggregations[name]["buckets"]]
    if "price" in aggregations:
        labels = {key: (label, low, high) for key, label, low, high in PRICE_BANDS}
        facets["price"] = [
            {
                "key": b["key"],
                "label": labels[b["key"]][0],
                # Inclusive bounds, ready for minPrice/maxPrice: the band's count is what that filter finds.
                "min": labels[b["key"]][1] or 0,
                "max": labels[b["key"]][2] - 1 if labels[b["key"]][2] is not None else None,
                "count": b["doc_count"],
            }
            for b in aggregations["price"]["buckets"]
        ]
    return facets


def render_listing(hit: dict[str, Any], with_score: bool) -> dict[str, Any]:
    source = hit["_source"]
    geo = source.pop("geo", None)
    item = {
        **source,
        "latitude": geo["lat"] if geo else None,
        "longitude": geo["lon"] if geo else None,
    }
    if with_score:
        item["score"] = hit.get("_score")
    return item


def search_fingerprint(criteria: SearchCriteria) -> str:
    """Ties a cursor to the search that issued it."""
    return hashlib.sha256(orjson.dumps(criteria.to_wire(), option=orjson.OPT_SORT_KEYS)).hexdigest()[:16]


def _after(cursor: dict[str, Any] | None, sort: Sort, fingerprint: str) -> list[Any] | None:
    if cursor is None:
        return None
    after = cursor.get("a")
    if cursor.get("s") != sort.value or cursor.get("f") != fingerprint or not isinstance(after, list) or not after:
        raise ApiError(
            400,
            "Invalid cursor",
            [field_error("cursor", "belongs to another search or sort; use nextCursor of this search's last page")],
        )
    return after


async def search_listings(
    search: AsyncOpenSearch,
    settings: Settings,
    criteria: SearchCriteria,
    sort: Sort | None,
    limit: int,
    cursor: dict[str, Any] | None,
    facets: set[Facet],
) -> dict[str, Any]:
    """A page of listings matching `criteria`, the total, and the facets asked for (over every match)."""
    sort = sort or (Sort.RELEVANCE if criteria.q else Sort.NEWEST)
    fingerprint = search_fingerprint(criteria)
    after = _after(cursor, sort, fingerprint)
    body: dict[str, Any] = {
        "query": search_query(criteria),
        "size": limit + 1,
        "sort": sort_clause(sort),
        "track_total_hits": True,
    }
    if after is not None:
        body["search_after"] = after
    if facets and after is None:
        body["aggs"] = facet_aggregations(facets)
    try:
        found = await _search(search, settings, body)
    except TransportError as exc:
        if exc.status_code == 400 and after is not None:
            raise ApiError(400, "Invalid cursor", [field_error("cursor", "not a cursor of this search")]) from None
        raise
    hits = found.get("hits", {}).get("hits", [])
    more = len(hits) > limit
    hits = hits[:limit]
    with_score = sort == Sort.RELEVANCE
    next_cursor = encode_cursor({"s": sort.value, "a": hits[-1]["sort"], "f": fingerprint}) if more and hits else None
    data = page([render_listing(hit, with_score) for hit in hits], next_cursor)
    data["total"] = found.get("hits", {}).get("total", {}).get("value", 0)
    data["sort"] = sort.value
    if facets and after is None:
        data["facets"] = render_facets(found.get("aggregations", {}))
    return data


async def filter_values(search: AsyncOpenSearch, settings: Settings) -> dict[str, Any]:
    """What a search form offers, with how many live listings each value finds."""
    body = {
        "size": 0,
        "track_total_hits": True,
        "aggs": {
            **facet_aggregations(set(Facet)),
            "priceStats": {"stats": {"field": "price"}},
            "areaStats": {"stats": {"field": "areaSqft"}},
        },
    }
    found = await _search(search, settings, body, filter_path="hits.total,aggregations")
    aggregations = found.get("aggregations", {})
    facets = render_facets(aggregations)

    def bounds(stats: dict[str, Any]) -> dict[str, int | None]:
        low, high = stats.get("min"), stats.get("max")
        return {"min": int(low) if low is not None else None, "max": int(high) if high is not None else None}

    return {
        "total": found.get("hits", {}).get("total", {}).get("value", 0),
        "localities": [{"name": f["value"], "count": f["count"]} for f in facets["location"]],
        "propertyTypes": facets["propertyType"],
        "priceRanges": facets["price"],
        "bedrooms": facets["bedrooms"],
        "bathrooms": facets["bathrooms"],
        "amenities": facets["amenities"],
        "price": bounds(aggregations.get("priceStats", {})),
        "areaSqft": bounds(aggregations.get("areaStats", {})),
    }


def _localities_starting(prefix: str) -> list[str]:
    """Known localities any of whose names has a word starting with `prefix` ("hitech" -> HITEC City)."""
    prefix = prefix.lower()
    found: dict[str, None] = {}
    for spelling, name in CANONICAL_NAME.items():
        if spelling.startswith(prefix) or any(word.startswith(prefix) for word in spelling.split()):
            found[name] = None
    return list(found)


def _prefix_rank(name: str, typed: str) -> int:
    """Names that start as typed first, then names with a word that does, then those found by a synonym."""
    name, typed = name.lower(), typed.lower()
    if name.startswith(typed):
        return 0
    return 1 if any(word.startswith(typed) for word in name.split()) else 2


async def suggestions(search: AsyncOpenSearch, settings: Settings, q: str, limit: int) -> list[dict[str, Any]]:
    """Localities (with listing counts) whose name, or a word of it, starts as typed; then listing titles.
    Both in one round trip (`_msearch`): localities as an aggregation, titles as collapsed hits."""
    known = _localities_starting(q)
    typed = {"match": {"location.suggest": {"query": q, "operator": "and"}}}
    localities = {
        "size": 0,
        "track_total_hits": False,
        "query": {"bool": {"should": [typed, *([{"terms": {"location": known}}] if known else [])]}},
        "aggs": {
            "names": {
                "terms": {"field": "location", "size": limit + len(known)},
                "aggs": {"spelling": {"terms": {"field": "location.raw", "size": 1}}},
            }
        },
    }
    titles = {
        "size": limit,
        "track_total_hits": False,
        "query": {"match": {"title.suggest": {"query": q, "operator": "and"}}},
        # One hit per distinct title: a thousand "3BHK Apartment in Gachibowli" suggest one line.
        "collapse": {"field": "title.raw"},
        "_source": ["id", "title"],
        "sort": ["_score", {"createdAt": "desc"}],
    }
    header = {"index": settings.opensearch_properties_alias}
    try:
        # No filter_path here: it drops a response left empty (no hits), and the two would not pair up.
        found = await search.msearch(body=[header, localities, header, titles])
    except NotFoundError:
        raise DependencyUnavailable("opensearch", "the listings index is missing; run `make prepare`") from None
    by_locality, by_title = found["responses"]
    for answer in (by_locality, by_title):
        if "error" in answer:
            log.warning("suggestions for %r failed: %s", q, answer["error"])
            raise DependencyUnavailable("opensearch", "could not suggest")
    buckets = by_locality.get("aggregations", {}).get("names", {}).get("buckets", [])
    named = [(locality_name(b), b["doc_count"]) for b in buckets]
    named.sort(key=lambda found: (_prefix_rank(found[0], q), -found[1]))
    items: list[dict[str, Any]] = [{"kind": "locality", "text": name, "count": count} for name, count in named]
    for hit in by_title.get("hits", {}).get("hits", []):
        items.append({"kind": "title", "text": hit["_source"]["title"], "propertyId": hit["_source"]["id"]})
    return items[:limit]


# ---- Postgres ----


async def _fetch(pool: Reader, sql: str, params: tuple[Any, ...]) -> list[dict[str, Any]]:
    async with pool.connection() as conn:
        cursor = await conn.cursor(row_factory=dict_row).execute(sql, params)  # type: ignore[arg-type]
        return await cursor.fetchall()


async def user_is_known(pool: Reader, user_id: str) -> bool:
    """Whether the users read model holds this account, not deleted (for admins asking about others)."""
    rows = await _fetch(pool, "SELECT deleted FROM users WHERE id = %s", (user_id,))
    return bool(rows) and not rows[0]["deleted"]


def _keyset(paging: PageParams) -> tuple[datetime | None, str]:
    if paging.cursor is None:
        return None, ""
    try:
        return datetime.fromisoformat(paging.cursor["t"]), str(paging.cursor["id"])
    except (KeyError, TypeError, ValueError):
        raise ApiError(400, "Invalid cursor", [field_error("cursor", "not a cursor of this list")]) from None


def _page(rows: list[dict[str, Any]], limit: int, time_key: str, id_key: str, render: Any) -> dict[str, Any]:
    more = len(rows) > limit
    rows = rows[:limit]
    cursor = encode_cursor({"t": rows[-1][time_key].isoformat(), "id": rows[-1][id_key]}) if more and rows else None
    return page([render(row) for row in rows], cursor)


def _history_item(row: dict[str, Any]) -> dict[str, Any]:
    return {
        "id": row["event_id"],
        "query": row["query"],
        "filters": row["filters"],
        "resultCount": row["result_count"],
        "searchedAt": format_time(row["searched_at"]),
    }


async def history(pool: Reader, user_id: str, paging: PageParams) -> dict[str, Any]:
    after_time, after_id = _keyset(paging)
    keyset = " AND (searched_at, event_id) < (%s, %s)" if after_time else ""
    rows = await _fetch(
        pool,
        "SELECT event_id, query, filters, result_count, searched_at FROM search_history"  # noqa: S608
        f" WHERE user_id = %s{keyset} ORDER BY searched_at DESC, event_id DESC LIMIT %s",
        (user_id, *((after_time, after_id) if after_time else ()), paging.limit + 1),
    )
    return _page(rows, paging.limit, "searched_at", "event_id", _history_item)


def saved_item(row: dict[str, Any]) -> dict[str, Any]:
    return {
        "id": row["id"],
        "ownerId": row["owner_id"],
        "name": row["name"],
        "criteria": row["criteria"] or {},
        "createdAt": format_time(row["created_at"]) if row["created_at"] else None,
    }


async def saved_searches(pool: Reader, owner_id: str, paging: PageParams) -> dict[str, Any]:
    after_time, after_id = _keyset(paging)
    keyset = " AND (created_at, id) < (%s, %s)" if after_time else ""
    rows = await _fetch(
        pool,
        "SELECT id, owner_id, name, criteria, created_at FROM saved_searches"  # noqa: S608
        f" WHERE owner_id = %s AND NOT deleted{keyset} ORDER BY created_at DESC, id DESC LIMIT %s",
        (owner_id, *((after_time, after_id) if after_time else ()), paging.limit + 1),
    )
    return _page(rows, paging.limit, "created_at", "id", saved_item)


async def saved_search(pool: Reader, saved_search_id: str) -> dict[str, Any] | None:
    """The live saved search, or None (never saved, deleted or erased)."""
    rows = await _fetch(
        pool,
        "SELECT id, owner_id, name, criteria, created_at FROM saved_searches WHERE id = %s AND NOT deleted",
        (saved_search_id,),
    )
    return rows[0] if rows else None


async def saved_search_count(pool: Reader, owner_id: str) -> int:
    rows = await _fetch(
        pool, "SELECT count(*) AS n FROM saved_searches WHERE owner_id = %s AND NOT deleted", (owner_id,)
    )
    return int(rows[0]["n"])
