"""Sinks of the property projection: Postgres (the read model and the view counts), Redis (hot reads)
and OpenSearch (search). Each is idempotent and order-safe on its own:

- Postgres: every write is guarded by the row's version (`WHERE properties.version < EXCLUDED.version`)
  and the checkpoint is raised in the same transaction. Views have no version, so the sink locks the
  view partition's checkpoint row, counts only views past it and raises it, in one transaction: a
  redelivered view is never counted twice, even by two workers during a rebalance.
- Redis: one Lua script per property, applied only when the stored version is older.
- OpenSearch: external versioning (`version_type=external`, version = the row's version), so Lucene
  itself refuses stale or repeated writes (409, which is success here).
Redis and OpenSearch record their checkpoint (`properties-redis`, `properties-opensearch` in
`projection_checkpoints`) only after their write is durable and visible. OpenSearch is fed by its own
consumer group, from the rows `PostgresPropertyRows` reads back once Postgres has the batch.
"""

import logging
from collections import defaultdict
from collections.abc import Iterable, Sequence
from datetime import date
from typing import Any

import httpx
import orjson
from psycopg import AsyncConnection
from psycopg.rows import class_row
from psycopg.types.json import Jsonb
from psycopg_pool import AsyncConnectionPool
from redis.asyncio import Redis

from schemas.listings import PropertyRow, search_document
from schemas.read_models import (
    FEATURED_PROPERTIES_KEY,
    PROPERTIES_POSTGRES_CHECKPOINT,
    RECENT_PROPERTIES_KEY,
    property_key,
    property_views_key,
)
from schemas.topics import PROPERTY_VIEWS
from streams.batches import StoreUnavailable
from streams.checkpoints import raise_checkpoints
from streams.positions import SourcePosition
from streams.properties.projection import (
    ImagesReplaced,
    ListingWritten,
    PropertyChange,
    ViewSeen,
    ViewTotals,
    epoch_ms,
    redis_document,
)
from streams.redis_documents import RETURN_IF_NOT_NEWER

log = logging.getLogger("streams.properties.sinks")

# ---- Postgres ----

_WRITE_LISTING = """
INSERT INTO properties (id, owner_id, title, location, price, property_type, bedrooms, bathrooms, description,
    area_sqft, amenities, latitude, longitude, attributes, featured, version, last_event_id, created_at, updated_at)
VALUES (%(id)s, %(owner_id)s, %(title)s, %(location)s, %(price)s, %(property_type)s, %(bedrooms)s, %(bathrooms)s,
    %(description)s, %(area_sqft)s, %(amenities)s, %(latitude)s, %(longitude)s, %(attributes)s, %(featured)s,
    %(version)s, %(event_id)s, %(created_at)s, %(at)s)
ON CONFLICT (id) DO UPDATE SET
    owner_id = COALESCE(properties.owner_id, EXCLUDED.owner_id),
    title = EXCLUDED.title, location = EXCLUDED.location, price = EXCLUDED.price,
    property_type = EXCLUDED.property_type, bedrooms = EXCLUDED.bedrooms, bathrooms = EXCLUDED.bathrooms,
    description = EXCLUDED.description, area_sqft = EXCLUDED.area_sqft, amenities = EXCLUDED.amenities,
    latitude = EXCLUDED.latitude, longitude = EXCLUDED.longitude, attributes = EXCLUDED.attributes,
    featured = EXCLUDED.featured,
    version = EXCLUDED.version, last_event_id = EXCLUDED.last_event_id,
    created_at = COALESCE(properties.created_at, EXCLUDED.created_at), updated_at = EXCLUDED.updated_at
WHERE properties.version < EXCLUDED.version
"""

_REPLACE_IMAGES = """
INSERT INTO properties (id, images, version, last_event_id, updated_at)
VALUES (%(id)s, %(images)s, %(version)s, %(event_id)s, %(at)s)
ON CONFLICT (id) DO UPDATE SET
    images = EXCLUDED.images, version = EXCLUDED.version, last_event_id = EXCLUDED.last_event_id,
    updated_at = EXCLUDED.updated_at
WHERE properties.version < EXCLUDED.version
"""

_REMOVE = """
INSERT INTO properties (id, owner_id, deleted, deleted_at, version, last_event_id, updated_at)
VALUES (%(id)s, %(owner_id)s, true, %(at)s, %(version)s, %(event_id)s, %(at)s)
ON CONFLICT (id) DO UPDATE SET
    owner_id = COALESCE(properties.owner_id, EXCLUDED.owner_id), deleted = true, deleted_at = EXCLUDED.deleted_at,
    version = EXCLUDED.version, last_event_id = EXCLUDED.last_event_id, updated_at = EXCLUDED.updated_at
WHERE properties.version < EXCLUDED.version
"""

# Owners are locked (sorted, so two transactions never wait on each other in a cycle) before their
# listings are counted: a concurrent transaction's new listing is then committed and seen, not missed.
_LOCK_OWNERS = "SELECT pg_advisory_xact_lock(hashtext('user_property_counts:' || o)) FROM unnest(%s::text[]) o"

_RECOUNT_OWNERS = """
INSERT INTO user_property_counts (user_id, property_count, updated_at)
SELECT o.user_id, count(p.id), now()
FROM unnest(%s::text[]) AS o(user_id)
LEFT JOIN properties p ON p.owner_id = o.user_id AND NOT p.deleted
GROUP BY o.user_id
ON CONFLICT (user_id) DO UPDATE SET property_count = EXCLUDED.property_count, updated_at = now()
"""

_CURRENT_ROWS = """
SELECT p.id, p.owner_id, p.title, p.location, p.price, p.property_type, p.bedrooms, p.bathrooms, p.description,
    p.area_sqft, p.amenities, p.latitude, p.longitude, p.attributes, p.featured, p.images, p.deleted, p.deleted_at,
    p.version, p.created_at, p.updated_at, COALESCE(v.view_count, 0) AS view_count
FROM properties p LEFT JOIN property_views v ON v.property_id = p.id
WHERE p.id = ANY(%s)
ORDER BY p.id
"""


def _parameters(change: PropertyChange) -> dict[str, Any]:
    common = {"id": change.property_id, "version": change.version, "event_id": change.event_id, "at": change.at}
    if isinstance(change, ListingWritten):
        listing = change.listing
        return {
            **common,
            "owner_id": change.owner_id,
            "title": listing.title,
            "location": listing.location,
            "price": listing.price,
            "property_type": listing.property_type.value,
            "bedrooms": listing.bedrooms,
            "bathrooms": listing.bathrooms,
            "description": listing.description,
            "area_sqft": listing.area_sqft,
            "amenities": list(listing.amenities),
            "latitude": listing.latitude,
            "longitude": listing.longitude,
            "attributes": Jsonb(listing.attributes),
            "featured": change.featured,
            "created_at": change.at if change.created else None,
        }
    if isinstance(change, ImagesReplaced):
        return {**common, "images": Jsonb(list(change.images))}
    return {**common, "owner_id": change.owner_id}


def _statement(change: PropertyChange) -> str:
    if isinstance(change, ListingWritten):
        return _WRITE_LISTING
    if isinstance(change, ImagesReplaced):
        return _REPLACE_IMAGES
    return _REMOVE


class PostgresPropertySink:
    def __init__(self, pool: AsyncConnectionPool, projection: str = PROPERTIES_POSTGRES_CHECKPOINT) -> None:
        self._pool = pool
        self._projection = projection

    async def apply(self, changes: Sequence[PropertyChange], positions: Sequence[SourcePosition]) -> list[PropertyRow]:
        """Apply the changes in order and raise the checkpoint, in one transaction; return the current row
        of every property touched (also when nothing changed: a redelivery must still reach Redis and
        OpenSearch if the crash came after Postgres committed and before they were written)."""
        ids = sorted({c.property_id for c in changes})
        async with self._pool.connection() as conn, conn.transaction():
            async with conn.cursor() as cursor:
                # Consecutive changes of one kind go as one executemany (pipelined); order is kept.
                run: list[PropertyChange] = []
                for change in [*changes, None]:
                    if run and (change is None or _statement(change) is not _statement(run[0])):
                        await cursor.executemany(_statement(run[0]), [_parameters(c) for c in run])
                        run = []
                    if change is not None:
                        run.append(change)
            rows: list[PropertyRow] = []
            if ids:
                async with conn.cursor(row_factory=class_row(PropertyRow)) as cursor:
                    await cursor.execute(_CURRENT_ROWS, (ids,))
                    rows = await cursor.fetchall()
            owners = sorted({r.owner_id for r in rows if r.owner_id is not None})
            if owners:
                await conn.execute(_LOCK_OWNERS, (owners,))
                await conn.execute(_RECOUNT_OWNERS, (owners,))
            await raise_checkpoints(conn, self._projection, positions)
        return rows


_CHECKPOINTS = """
SELECT topic, partition, "offset" FROM projection_checkpoints
WHERE projection = %s AND topic = ANY(%s) AND partition = ANY(%s)
"""


class PostgresPropertyRows:
    """Read side of the Postgres read model, for the search projection (another consumer group)."""

    def __init__(self, pool: AsyncConnectionPool) -> None:
        self._pool = pool

    async def current(self, ids: Sequence[str]) -> list[PropertyRow]:
        if not ids:
            return []
        async with self._pool.connection() as conn, conn.cursor(row_factory=class_row(PropertyRow)) as cursor:
            await cursor.execute(_CURRENT_ROWS, (sorted(ids),))
            return await cursor.fetchall()

    async def checkpoints(self, projection: str, where: Iterable[tuple[str, int]]) -> dict[tuple[str, int], int]:
        """How far `projection` has applied, per (topic, partition) asked about."""
        wanted = set(where)
        if not wanted:
            return {}
        async with self._pool.connection() as conn:
            cursor = await conn.execute(
                _CHECKPOINTS, (projection, sorted({t for t, _ in wanted}), sorted({p for _, p in wanted}))
            )
            return {(t, p): o for t, p, o in await cursor.fetchall() if (t, p) in wanted}


_OPEN_VIEW_CHECKPOINTS = """
INSERT INTO projection_checkpoints (projection, topic, partition, "offset")
SELECT %s, %s, p, -1 FROM unnest(%s::integer[]) p
ON CONFLICT (projection, topic, partition) DO NOTHING
"""

_LOCK_VIEW_CHECKPOINTS = """
SELECT partition, "offset" FROM projection_checkpoints
WHERE projection = %s AND topic = %s AND partition = ANY(%s)
ORDER BY partition
FOR UPDATE
"""

_ADD_VIEWS = """
INSERT INTO property_views (property_id, view_count, last_offset, last_viewed_at)
SELECT * FROM unnest(%s::text[], %s::bigint[], %s::bigint[], %s::timestamptz[])
ON CONFLICT (property_id) DO UPDATE SET
    view_count = property_views.view_count + EXCLUDED.view_count,
    last_offset = GREATEST(property_views.last_offset, EXCLUDED.last_offset),
    last_viewed_at = GREATEST(property_views.last_viewed_at, EXCLUDED.last_viewed_at)
"""

_ADD_DAILY_VIEWS = """
INSERT INTO property_views_daily (property_id, day, views)
SELECT * FROM unnest(%s::text[], %s::date[], %s::bigint[])
ON CONFLICT (property_id, day) DO UPDATE SET views = property_views_daily.views + EXCLUDED.views
"""

_VIEW_TOTALS = """
SELECT property_id, view_count, last_offset FROM property_views WHERE property_id = ANY(%s) ORDER BY property_id
"""


class PostgresViewSink:
    """Exact view counts: a view past its partition's checkpoint is counted, anything else was already."""

    def __init__(self, pool: AsyncConnectionPool, projection: str = PROPERTIES_POSTGRES_CHECKPOINT) -> None:
        self._pool = pool
        self._projection = projection

    async def apply(self, views: Sequence[ViewSeen], positions: Sequence[SourcePosition]) -> list[ViewTotals]:
        partitions = sorted({p.partition for p in positions if p.topic == PROPERTY_VIEWS.name})
        ids = sorted({v.property_id for v in views})
        async with self._pool.connection() as conn, conn.transaction():
            await conn.execute(_OPEN_VIEW_CHECKPOINTS, (self._projection, PROPERTY_VIEWS.name, partitions))
            cursor = await conn.execute(_LOCK_VIEW_CHECKPOINTS, (self._projection, PROPERTY_VIEWS.name, partitions))
            counted_up_to = {partition: offset for partition, offset in await cursor.fetchall()}
            fresh = [v for v in views if v.position.offset > counted_up_to.get(v.position.partition, -1)]
            if fresh:
                await self._count(conn, fresh)
            await raise_checkpoints(conn, self._projection, positions)
            totals: list[ViewTotals] = []
            if ids:
                cursor = await conn.execute(_VIEW_TOTALS, (ids,))
                totals = [ViewTotals(*row) for row in await cursor.fetchall()]
        return totals

    @staticmethod
    async def _count(conn: AsyncConnection[Any], views: Sequence[ViewSeen]) -> None:
        per_property: dict[str, list[ViewSeen]] = defaultdict(list)
        per_day: dict[tuple[str, date], int] = defaultdict(int)
        for view in views:
            per_property[view.property_id].append(view)
            per_day[(view.property_id, view.day)] += 1
        ids = sorted(per_property)
        await conn.execute(
            _ADD_VIEWS,
            (
                ids,
                [len(per_property[i]) for i in ids],
                [max(v.position.offset for v in per_property[i]) for i in ids],
                [max(v.at for v in per_property[i]) for i in ids],
            ),
        )
        keys = sorted(per_day)
        await conn.execute(_ADD_DAILY_VIEWS, ([k[0] for k in keys], [k[1] for k in keys], [per_day[k] for k in keys]))


# ---- Redis ----

# KEYS: property:{id}, property:{id}:views, properties:recent, properties:featured
# ARGV: version, document, id, createdAt epoch ms, featured 0/1, deleted 0/1, view count from Postgres
# View counts only grow, so the larger of Redis's and Postgres's is the right one, whichever wrote last.
_WRITE_PROPERTY = (
    RETURN_IF_NOT_NEWER
    + """
local document = ARGV[2]
if ARGV[6] == '0' then
  local views = tonumber(redis.call('HGET', KEYS[2], 'count') or '0')
  local count = math.max(views, tonumber(ARGV[7]))
  document = (string.gsub(document, '^{"viewCount":%d+', '{"viewCount":' .. string.format('%d', count), 1))
  redis.call('ZADD', KEYS[3], ARGV[4], ARGV[3])
  if ARGV[5] == '1' then
    redis.call('ZADD', KEYS[4], ARGV[4], ARGV[3])
  else
    redis.call('ZREM', KEYS[4], ARGV[3])
  end
else
  redis.call('ZREM', KEYS[3], ARGV[3])
  redis.call('ZREM', KEYS[4], ARGV[3])
end
redis.call('SET', KEYS[1], document)
return 1
"""
)

# KEYS: property:{id}:views, property:{id}
# ARGV: absolute count, offset of the last view counted
_WRITE_VIEWS = """
local stored = tonumber(redis.call('HGET', KEYS[1], 'count') or '-1')
local count = tonumber(ARGV[1])
if count > stored then
  redis.call('HSET', KEYS[1], 'count', ARGV[1], 'offset', ARGV[2])
else
  count = stored
end
local document = redis.call('GET', KEYS[2])
if document then
  local patched = (string.gsub(document, '^{"viewCount":%d+', '{"viewCount":' .. string.format('%d', count), 1))
  if patched ~= document then
    redis.call('SET', KEYS[2], patched)
  end
end
return count
"""


class RedisPropertySink:
    def __init__(self, redis: Redis) -> None:
        self._redis = redis
        self._write_property = redis.register_script(_WRITE_PROPERTY)
        self._write_views = redis.register_script(_WRITE_VIEWS)

    async def write_properties(self, rows: Sequence[PropertyRow]) -> dict[str, str]:
        """Returns {property id: error} for writes Redis refused (connection problems raise instead)."""
        async with self._redis.pipeline(transaction=False) as pipe:
            for row in rows:
                await self._write_property(
                    keys=[
                        property_key(row.id),
                        property_views_key(row.id),
                        RECENT_PROPERTIES_KEY,
                        FEATURED_PROPERTIES_KEY,
                    ],
                    args=[
                        row.version,
                        redis_document(row),
                        row.id,
                        epoch_ms(row.created_at) if row.created_at else 0,
                        int(row.featured),
                        int(row.deleted),
                        row.view_count,
                    ],
                    client=pipe,
                )
            results = await pipe.execute(raise_on_error=False)
        return {row.id: str(result) for row, result in zip(rows, results, strict=True) if isinstance(result, Exception)}

    async def write_views(self, totals: Sequence[ViewTotals]) -> dict[str, str]:
        async with self._redis.pipeline(transaction=False) as pipe:
            for total in totals:
                await self._write_views(
                    keys=[property_views_key(total.property_id), property_key(total.property_id)],
                    args=[total.view_count, total.last_offset],
                    client=pipe,
                )
            results = await pipe.execute(raise_on_error=False)
        return {
            total.property_id: str(result)
            for total, result in zip(totals, results, strict=True)
            if isinstance(result, Exception)
        }


# ---- OpenSearch ----


class SearchUnavailable(StoreUnavailable):
    """OpenSearch refused a whole request (429, 5xx, missing alias): try again later, no event is to blame."""


_FINE = {200, 201, 409}  # 409: the index already holds this version or a newer one


class OpenSearchPropertySink:
    def __init__(self, client: httpx.AsyncClient, alias: str) -> None:
        self._client = client
        self._alias = alias

    async def write(self, rows: Sequence[PropertyRow]) -> dict[str, str]:
        """Bulk-index (or delete) the rows, visible to search when this returns; {id: error} for refusals."""
        return await write_versioned(self._client, self._alias, [(r.id, r.version, search_document(r)) for r in rows])


async def write_versioned(
    client: httpx.AsyncClient, alias: str, documents: Sequence[tuple[str, int, dict[str, Any] | None]]
) -> dict[str, str]:
    """Index each (id, version, document) with external versioning, or delete it when the document is
    None; searchable when this returns. Answers {id: error} for documents OpenSearch refuses for good;
    raises SearchUnavailable when it refuses the request as a whole."""
    if not documents:
        return {}
    lines: list[bytes] = []
    for id_, version, document in documents:
        meta = {"_index": alias, "_id": id_, "version": version, "version_type": "external"}
        if document is None:
            lines.append(orjson.dumps({"delete": meta}))
        else:
            lines.append(orjson.dumps({"index": meta}))
            lines.append(orjson.dumps(document))
    # `refresh=true`: the shards the batch touched are refreshed before the answer, in the same round trip
    # (not `wait_for`, which waits for the next periodic refresh, up to 1 s): the checkpoint recorded
    # after this returns promises the batch is searchable.
    response = await client.post(
        "/_bulk",
        params={"refresh": "true"},
        content=b"\n".join(lines) + b"\n",
        headers={"Content-Type": "application/x-ndjson"},
    )
    # Refused as a whole (overloaded, down, or the alias missing until `ops.search_index` runs): no
    # single event is to blame, so wait and retry rather than dead-letter the batch.
    if response.status_code != 200:
        raise SearchUnavailable(f"bulk answered {response.status_code}: {response.text[:500]}")
    refused: dict[str, str] = {}
    for (id_, _, _), item in zip(documents, response.json()["items"], strict=True):
        [(action, outcome)] = item.items()
        status = outcome.get("status", 0)
        if status in _FINE or (action == "delete" and status == 404):
            continue
        if status == 429 or status >= 500:
            raise SearchUnavailable(f"{id_}: {status} {outcome.get('error')}")
        refused[id_] = f"opensearch refused {id_}: {status} {orjson.dumps(outcome.get('error')).decode()}"
    return refused
