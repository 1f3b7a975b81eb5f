"""The property service's query side: reads the stores the `property-projection` worker writes.

- Redis `property:{id}`: the details document (a tombstone `{"deleted": true}` once delisted).
- Postgres `properties` (+ `property_views`, `property_views_daily`): lists, paging, featured.
- OpenSearch alias `properties`: similar listings.
A query sent with `X-Consistency-Token` first waits (bounded) for the checkpoint of the store it reads.
"""

from collections.abc import Awaitable, Callable
from datetime import datetime
from typing import Any

import orjson
from opensearchpy import AsyncOpenSearch
from psycopg.rows import dict_row
from redis.asyncio import Redis

from api.common.consistency import Reader, wait_for_positions
from api.common.errors import ApiError, field_error
from api.common.pagination import PageParams, encode_cursor, page
from api.common.status import ReadModel, fixed
from config.settings import Settings
from schemas.listings import PropertyRow, listing_document
from schemas.properties import PropertyType
from schemas.read_models import (
    PROPERTIES_ALIAS,
    PROPERTIES_OPENSEARCH_CHECKPOINT,
    PROPERTIES_POSTGRES_CHECKPOINT,
    PROPERTIES_REDIS_CHECKPOINT,
    property_key,
)
from schemas.topics import PROPERTIES, PROPERTY_VIEWS

_EVENT_TOPICS = frozenset({PROPERTIES.name})
# What `/status` reports on: details and lists (with view counts) from Postgres and Redis, similar listings
# from OpenSearch.
READ_MODELS = fixed(
    ReadModel(PROPERTIES_POSTGRES_CHECKPOINT, frozenset({PROPERTIES.name, PROPERTY_VIEWS.name})),
    ReadModel(PROPERTIES_REDIS_CHECKPOINT, frozenset({PROPERTIES.name, PROPERTY_VIEWS.name})),
    ReadModel(PROPERTIES_OPENSEARCH_CHECKPOINT, _EVENT_TOPICS),
)

_LISTING_COLUMNS = """
    p.id, p.owner_id, p.title, p.description, p.location, p.price, p.property_type, p.bedrooms, p.bathrooms,
    p.area_sqft, p.amenities, p.latitude, p.longitude, p.attributes, p.featured, p.images, p.deleted, p.deleted_at,
    p.version, p.created_at, p.updated_at, coalesce(v.view_count, 0) AS view_count
"""


def freshness_headers(fresh: bool) -> dict[str, str]:
    """Tells a client that sent a consistency token the store had not caught up within the wait."""
    return {} if fresh else {"X-Consistency": "stale"}


async def _caught_up(pool: Reader, settings: Settings, checkpoint: str, token: str | None) -> bool:
    return await wait_for_positions(pool, checkpoint, _EVENT_TOPICS, token, settings.consistency_wait_seconds)


def _listing(row: dict[str, Any]) -> dict[str, Any]:
    """A `properties` row as the API shows it: the document the projection keeps in Redis."""
    return listing_document(PropertyRow.of(row))


async def _fetch(pool: Reader, sql: str, params: tuple[Any, ...]) -> list[dict[str, Any]]:
    async with pool.connection() as conn:
        cursor = await conn.cursor(row_factory=dict_row).execute(sql, params)  # type: ignore[arg-type]
        return await cursor.fetchall()


async def _from_postgres(pool: Reader, property_id: str) -> dict[str, Any] | None:
    rows = await _fetch(
        pool,
        f"SELECT {_LISTING_COLUMNS} FROM properties p LEFT JOIN property_views v ON v.property_id = p.id"  # noqa: S608
        " WHERE p.id = %s AND NOT p.deleted AND p.title IS NOT NULL",
        (property_id,),
    )
    return _listing(rows[0]) if rows else None


def _shown(raw: bytes, property_id: str) -> dict[str, Any]:
    document: dict[str, Any] = orjson.loads(raw)
    if document.get("deleted"):
        raise ApiError(404, f"Property {property_id} not found")
    document.pop("deleted", None)
    return document


async def cached_details(
    redis_get: Callable[[str], Awaitable[bytes | None]], property_id: str
) -> dict[str, Any] | None:
    """The details as Redis has them, for a read that waits for nothing; None when Redis has no live
    listing by that id (not projected there yet, or deleted): `details` has the full answer then."""
    raw = await redis_get(property_key(property_id))
    if raw is None:
        return None
    try:
        return _shown(raw, property_id)
    except ApiError:
        return None


async def details(
    pool: Reader, redis: Redis, settings: Settings, property_id: str, token: str | None
) -> tuple[dict[str, Any], bool]:
    fresh = await _caught_up(pool, settings, PROPERTIES_REDIS_CHECKPOINT, token)
    raw = await redis.get(property_key(property_id))
    if raw is not None:
        return _shown(raw, property_id), fresh
    # Not in Redis (never projected there yet, or Redis was emptied): Postgres is the fallback.
    listing = await _from_postgres(pool, property_id)
    if listing is None:
        raise ApiError(404, f"Property {property_id} not found")
    return listing, fresh


async def require_listed(pool: Reader, redis: Redis, settings: Settings, property_id: str, token: str | None) -> None:
    await details(pool, redis, settings, property_id, token)


async def listed_owner(
    pool: Reader, redis: Redis, settings: Settings, property_id: str, token: str | None
) -> str | None:
    """The owner of a live listing as the read model has it; None when it lists no such listing (not
    yet projected, or gone): the decider has the last word then."""
    try:
        listing, _ = await details(pool, redis, settings, property_id, token)
    except ApiError as exc:
        if exc.status == 404:
            return None
        raise
    owner: str = listing["ownerId"]
    return owner


async def image_of(
    pool: Reader, redis: Redis, settings: Settings, property_id: str, sha256: str, token: str | None
) -> dict[str, Any]:
    """One of a live listing's images: an image of another listing, a file's bytes, a deleted
    listing's photos are not served here, whatever the blob store still holds."""
    listing, _ = await details(pool, redis, settings, property_id, token)
    for image in listing["images"]:
        if image["sha256"] == sha256:
            found: dict[str, Any] = image
            return found
    raise ApiError(404, "Image not found")


def _time_cursor(paging: PageParams) -> tuple[datetime | None, str]:
    if paging.cursor is None:
        return None, ""
    try:
        return datetime.fromisoformat(paging.cursor["t"]), str(paging.cursor["id"])
    except (KeyError, TypeError, ValueError):
        raise ApiError(400, "Invalid cursor", [field_error("cursor", "not a cursor of this list")]) from None


def _newest_first_page(rows: list[dict[str, Any]], limit: int) -> dict[str, Any]:
    items = [_listing(row) for row in rows[:limit]]
    more = len(rows) > limit
    last = rows[limit - 1] if more else None
    cursor = encode_cursor({"t": last["created_at"].isoformat(), "id": last["id"]}) if last else None
    return page(items, cursor)


async def _newest_first(pool: Reader, where: str, params: tuple[Any, ...], paging: PageParams) -> dict[str, Any]:
    after_time, after_id = _time_cursor(paging)
    keyset = " AND (p.created_at, p.id) < (%s, %s)" if after_time else ""
    rows = await _fetch(
        pool,
        f"SELECT {_LISTING_COLUMNS} FROM properties p LEFT JOIN property_views v ON v.property_id = p.id"  # noqa: S608
        f" WHERE NOT p.deleted AND p.title IS NOT NULL AND {where}{keyset}"
        " ORDER BY p.created_at DESC, p.id DESC LIMIT %s",
        (*params, *((after_time, after_id) if after_time else ()), paging.limit + 1),
    )
    return _newest_first_page(rows, paging.limit)


async def by_owner(
    pool: Reader, settings: Settings, owner_id: str, paging: PageParams, token: str | None
) -> tuple[dict[str, Any], bool]:
    fresh = await _caught_up(pool, settings, PROPERTIES_POSTGRES_CHECKPOINT, token)
    return await _newest_first(pool, "p.owner_id = %s", (owner_id,), paging), fresh


async def recent(
    pool: Reader,
    settings: Settings,
    paging: PageParams,
    location: str | None,
    property_type: PropertyType | None,
    token: str | None,
) -> tuple[dict[str, Any], bool]:
    fresh = await _caught_up(pool, settings, PROPERTIES_POSTGRES_CHECKPOINT, token)
    conditions, params = ["true"], []
    if location:
        conditions.append("lower(p.location) = lower(%s)")
        params.append(location)
    if property_type:
        conditions.append("p.property_type = %s")
        params.append(property_type.value)
    return await _newest_first(pool, " AND ".join(conditions), tuple(params), paging), fresh


async def featured(pool: Reader, settings: Settings, limit: int, token: str | None) -> tuple[dict[str, Any], bool]:
    """Admin-featured first (newest first), then the most viewed over the last 7 days (UTC)."""
    fresh = await _caught_up(pool, settings, PROPERTIES_POSTGRES_CHECKPOINT, token)
    rows = await _fetch(
        pool,
        f"""
        WITH week AS (
            SELECT property_id, sum(views) AS views FROM property_views_daily
            WHERE day > current_date - 7 GROUP BY property_id
        )
        SELECT {_LISTING_COLUMNS}, coalesce(w.views, 0) AS views_this_week
        FROM properties p
        LEFT JOIN property_views v ON v.property_id = p.id
        LEFT JOIN week w ON w.property_id = p.id
        WHERE NOT p.deleted AND p.title IS NOT NULL AND (p.featured OR w.views > 0)
        ORDER BY p.featured DESC, views_this_week DESC, p.created_at DESC
        LIMIT %s
        """,  # noqa: S608  (only our own column list is formatted in)
        (limit,),
    )
    items = [{**_listing(row), "viewsThisWeek": row["views_this_week"]} for row in rows]
    return page(items, None), fresh


async def similar(
    pool: Reader,
    redis: Redis,
    search: AsyncOpenSearch,
    settings: Settings,
    property_id: str,
    limit: int,
    token: str | None,
) -> tuple[list[dict[str, Any]], bool]:
    fresh = await _caught_up(pool, settings, PROPERTIES_OPENSEARCH_CHECKPOINT, token)
    # The listing itself from its document (Redis, else Postgres; 404 when gone): one OpenSearch query per
    # request instead of two. The wait above already covers the token: the search projection indexes a
    # listing only once Postgres has it.
    this, _ = await details(pool, redis, settings, property_id, None)
    price = this.get("price") or 0
    should: list[dict[str, Any]] = [
        {"term": {"location": {"value": this.get("location"), "boost": 3}}},
        {"term": {"propertyType": {"value": this.get("propertyType"), "boost": 2}}},
        {"range": {"price": {"gte": int(price * 0.75), "lte": int(price * 1.25), "boost": 2}}},
        {"range": {"bedrooms": {"gte": (this.get("bedrooms") or 0) - 1, "lte": (this.get("bedrooms") or 0) + 1}}},
    ]
    if this.get("latitude") is not None and this.get("longitude") is not None:
        near = {"lat": this["latitude"], "lon": this["longitude"]}
        should.append({"geo_distance": {"distance": "5km", "geo": near, "_name": "near"}})
    query = {
        "bool": {
            "should": should,
            "minimum_should_match": 2,
            "must_not": [{"ids": {"values": [property_id]}}],
        }
    }
    result = await search.search(index=PROPERTIES_ALIAS, body={"query": query, "size": limit})
    items = [{**hit["_source"], "score": hit["_score"]} for hit in result["hits"]["hits"]]
    return items, fresh
