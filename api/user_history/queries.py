"""The user-history service's query side: reads what the history workers write.

- The live generation of the service's namespace (`user_history_live` -> schema `user_history_<ns>_g<N>`),
  or a ready point-in-time snapshot when `?snapshot=<jobId>` asks for one.
- Redis `history:<ns>:g<N>:recent:<user>` for `/recent` (Postgres when the list is not there).
- Postgres `event_store` for `/events` (the archive's table).
Stats are aggregates over the activity rows, computed here: absolute by construction.

A rebuild swaps the pointer and then drops the old generation. A query reads the pointer, then the
tables it names; one that read the pointer just before a swap and reaches the tables after their drop
gets "no such table": it reads the pointer again and answers from the new generation. A query never
fails or answers empty because of a rebuild.
"""

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import date, datetime
from typing import Any, TypeVar

import orjson
import psycopg.errors
from fastapi import Request
from psycopg import AsyncConnection, sql
from psycopg.rows import dict_row
from psycopg_pool import AsyncConnectionPool
from redis.asyncio import Redis

from api.common.consistency import Reader, wait_for_positions
from api.common.errors import ApiError, field_error
from api.common.pagination import PageParams, encode_cursor, page
from api.common.personal_keys import personal_key
from api.common.reads import query_pool
from api.common.responses import require_day
from api.common.status import ReadModel
from api.user_history.timeline import bucket_by_day, day_bounds, last_days_start, zone
from config.settings import Settings
from schemas.envelope import format_time
from schemas.history import (
    SEARCH_PERFORMED,
    SEARCH_SAVED,
    activity_document,
    generation_schema,
    opened_activity,
    postgres_checkpoint,
    recent_keys,
    redis_checkpoint,
    replayer_checkpoint,
)
from schemas.personal import UnreadablePersonalData, unseal
from schemas.read_models import ARCHIVE_CHECKPOINT
from schemas.topics import FILES, PROPERTIES, PROPERTY_VIEWS, SEARCHES, USER_HISTORY_REPLAYS, USERS

T = TypeVar("T")

HISTORY_TOPICS = frozenset({USERS.name, PROPERTIES.name, PROPERTY_VIEWS.name, SEARCHES.name, FILES.name})
_GONE = (psycopg.errors.UndefinedTable, psycopg.errors.InvalidSchemaName)
_ATTEMPTS = 3

_ACTIVITY_COLUMNS = sql.SQL(
    "event_id, activity_type, category, event_type, subject, property_id, occurred_at, summary, details"
)


@dataclass(frozen=True)
class Target:
    """The generation a query reads: the live one, or a snapshot."""

    namespace: str
    number: int
    snapshot: bool = False
    scope_user_id: str | None = None

    def table(self, name: str) -> sql.Identifier:
        return sql.Identifier(generation_schema(self.namespace, self.number), name)


def freshness_headers(fresh: bool) -> dict[str, str]:
    return {} if fresh else {"X-Consistency": "stale"}


async def _target(conn: AsyncConnection[Any], ns: str, snapshot: str | None, user_id: str) -> Target | None:
    if snapshot is None:
        cursor = await conn.execute(
            "SELECT g.generation FROM user_history_live l JOIN user_history_generations g USING (namespace, generation)"
            " WHERE l.namespace = %s",
            (ns,),
        )
        row = await cursor.fetchone()
        return Target(ns, row[0]) if row else None
    cursor = await conn.execute(
        "SELECT generation, scope_user_id FROM user_history_generations"
        " WHERE namespace = %s AND job_id = %s AND kind = 'snapshot' AND state = 'ready'",
        (ns, snapshot),
    )
    row = await cursor.fetchone()
    if row is None or (row[1] is not None and row[1] != user_id):
        raise ApiError(
            404, f"Snapshot {snapshot} not found", [field_error("snapshot", "not a finished point-in-time rebuild")]
        )
    return Target(ns, row[0], snapshot=True, scope_user_id=row[1])


async def in_generation(
    pool: Reader,
    ns: str,
    user_id: str,
    snapshot: str | None,
    read: Callable[[AsyncConnection[Any], Target], Awaitable[T]],
    empty: Callable[[], T],
) -> T:
    """Runs `read` against the generation the query should see; see the module's note on swaps."""
    for attempt in range(1, _ATTEMPTS + 1):
        async with pool.connection() as conn:
            target = await _target(conn, ns, snapshot, user_id)
            if target is None:
                return empty()  # nothing projected in this namespace yet
            try:
                return await read(conn, target)
            except _GONE:
                if attempt == _ATTEMPTS:
                    raise
    raise AssertionError("unreachable")


async def caught_up(pool: Reader, settings: Settings, store: str, token: str | None) -> bool:
    """Waits (bounded) until the live generation's store has applied the token's positions."""
    if not token:
        return True
    ns = settings.history_namespace
    # Nothing live yet: the wait still validates the token and gives up after its bound.
    generation = await _live_generation(pool, ns) or 0
    projection = redis_checkpoint(ns, generation) if store == "redis" else postgres_checkpoint(ns, generation)
    return await wait_for_positions(pool, projection, HISTORY_TOPICS, token, settings.consistency_wait_seconds)


async def _live_generation(pool: Reader, ns: str) -> int | None:
    async with pool.connection() as conn:
        cursor = await conn.execute("SELECT generation FROM user_history_live WHERE namespace = %s", (ns,))
        row = await cursor.fetchone()
    return None if row is None else int(row[0])


async def read_models(request: Request) -> list[ReadModel]:
    """What `/status` reports on: the live generation's Postgres and Redis stores, the event archive the raw
    events are read from, and the rebuild jobs' table."""
    settings: Settings = request.app.state.settings
    ns = settings.history_namespace
    # The topics the history workers read (HI_HISTORY_TOPICS narrows them, for benchmarks and tests).
    topics = frozenset(settings.history_topic_override) or HISTORY_TOPICS
    models = [ReadModel(ARCHIVE_CHECKPOINT, topics)]
    generation = await _live_generation(query_pool(request), ns)
    if generation is not None:
        models += [
            ReadModel(postgres_checkpoint(ns, generation), topics),
            ReadModel(redis_checkpoint(ns, generation), topics),
        ]
    models.append(ReadModel(replayer_checkpoint(ns), frozenset({USER_HISTORY_REPLAYS.name})))
    return models


async def archive_caught_up(pool: Reader, settings: Settings, token: str | None) -> bool:
    return await wait_for_positions(pool, ARCHIVE_CHECKPOINT, HISTORY_TOPICS, token, settings.consistency_wait_seconds)


# ---- activities ----


async def _opener(primary: AsyncConnectionPool, user_id: str) -> Callable[[str, str], str | None]:
    """Opens the user's sealed words (searches, saved-search names) with their key; None once it is gone."""
    key = await personal_key(primary, user_id)

    def open_text(field: str, value: str) -> str | None:
        if key is None:
            return None
        try:
            return unseal(key, user_id, field, value)
        except UnreadablePersonalData:
            return None

    return open_text


async def _opened(primary: AsyncConnectionPool, user_id: str, documents: list[dict[str, Any]]) -> list[dict[str, Any]]:
    open_text = await _opener(primary, user_id)
    return [opened_activity(document, open_text) for document in documents]


def activity(row: dict[str, Any]) -> dict[str, Any]:
    return activity_document(
        event_id=row["event_id"],
        activity_type=row["activity_type"],
        category=row["category"],
        event_type=row["event_type"],
        subject=row["subject"],
        property_id=row["property_id"],
        occurred_at=row["occurred_at"],
        summary=row["summary"],
        details=row["details"],
    )


def _keyset(paging: PageParams) -> tuple[datetime, str] | None:
    if paging.cursor is None:
        return None
    try:
        return datetime.fromisoformat(paging.cursor["t"]), str(paging.cursor["id"])
    except (KeyError, TypeError, ValueError):
        raise ApiError(400, "Invalid cursor", [field_error("cursor", "not a cursor of this list")]) from None


@dataclass(frozen=True)
class ActivityFilter:
    category: str | None = None
    types: tuple[str, ...] = ()
    since: datetime | None = None
    before: datetime | None = None


async def activities(
    pool: Reader,
    primary: AsyncConnectionPool,
    settings: Settings,
    user_id: str,
    where: ActivityFilter,
    paging: PageParams,
    snapshot: str | None,
) -> dict[str, Any]:
    after = _keyset(paging)

    async def read(conn: AsyncConnection[Any], target: Target) -> dict[str, Any]:
        conditions = [sql.SQL("user_id = %s")]
        params: list[Any] = [user_id]
        if where.category:
            conditions.append(sql.SQL("category = %s"))
            params.append(where.category)
        if where.types:
            conditions.append(sql.SQL("activity_type = ANY(%s)"))
            params.append(list(where.types))
        if where.since:
            conditions.append(sql.SQL("occurred_at >= %s"))
            params.append(where.since)
        if where.before:
            conditions.append(sql.SQL("occurred_at < %s"))
            params.append(where.before)
        if after:
            conditions.append(sql.SQL("(occurred_at, event_id) < (%s, %s)"))
            params += list(after)
        query = sql.SQL(
            "SELECT {columns} FROM {activities} WHERE {where} ORDER BY occurred_at DESC, event_id DESC LIMIT %s"
        ).format(
            columns=_ACTIVITY_COLUMNS,
            activities=target.table("activities"),
            where=sql.SQL(" AND ").join(conditions),
        )
        cursor = await conn.cursor(row_factory=dict_row).execute(query, (*params, paging.limit + 1))
        rows = await cursor.fetchall()
        more = len(rows) > paging.limit
        rows = rows[: paging.limit]
        last = rows[-1] if more else None
        next_cursor = encode_cursor({"t": last["occurred_at"].isoformat(), "id": last["event_id"]}) if last else None
        return page([activity(row) for row in rows], next_cursor)

    found = await in_generation(pool, settings.history_namespace, user_id, snapshot, read, lambda: page([], None))
    return {**found, "items": await _opened(primary, user_id, found["items"])}


async def recent(
    pool: Reader, primary: AsyncConnectionPool, redis: Redis, settings: Settings, user_id: str, limit: int
) -> list[dict[str, Any]]:
    """The newest activities from Redis; from Postgres when Redis has no list for the user (never
    written there yet, Redis emptied, or the generation swapped between the two reads)."""

    async def read(conn: AsyncConnection[Any], target: Target) -> list[dict[str, Any]]:
        zset, docs = recent_keys(target.namespace, target.number, user_id)
        async with redis.pipeline(transaction=True) as pipe:
            pipe.zrevrange(zset, 0, limit - 1)
            pipe.hgetall(docs)
            ids, documents = await pipe.execute()
        if ids and all(event_id in documents for event_id in ids):
            return [orjson.loads(documents[event_id]) for event_id in ids]
        cursor = await conn.cursor(row_factory=dict_row).execute(
            sql.SQL(
                "SELECT {columns} FROM {activities} WHERE user_id = %s"
                " ORDER BY occurred_at DESC, event_id DESC LIMIT %s"
            ).format(columns=_ACTIVITY_COLUMNS, activities=target.table("activities")),
            (user_id, limit),
        )
        return [activity(row) for row in await cursor.fetchall()]

    found = await in_generation(pool, settings.history_namespace, user_id, None, read, list)
    return await _opened(primary, user_id, found)


# ---- raw events ----


def cloud_event(row: dict[str, Any]) -> dict[str, Any]:
    """An `event_store` row as the CloudEvent it was on the topic (attributes it did not carry left out)."""
    event: dict[str, Any] = {
        "specversion": "1.0",
        "id": row["event_id"],
        "type": row["event_type"],
        "source": row["source"],
        "subject": row["subject"],
        "time": format_time(row["occurred_at"]),
        "datacontenttype": "application/json",
    }
    for attribute, column in (
        ("userid", "user_id"),
        ("sessionid", "session_id"),
        ("correlationid", "correlation_id"),
        ("causationid", "causation_id"),
        ("sequence", "sequence"),
    ):
        if row[column] is not None:
            event[attribute] = row[column]
    event["data"] = row["data"]
    return event


async def raw_events(pool: Reader, user_id: str, event_type: str | None, paging: PageParams) -> dict[str, Any]:
    """Events the user did (`userid`) or that are about them (`subject`), newest first."""
    after = _keyset(paging)
    conditions = [sql.SQL("(user_id = %s OR subject = %s)")]
    params: list[Any] = [user_id, user_id]
    if event_type:
        if "." in event_type and event_type.rsplit(".", 1)[1].startswith("v"):
            conditions.append(sql.SQL("event_type = %s"))
        else:
            conditions.append(sql.SQL(r"regexp_replace(event_type, '\.v[0-9]+$', '') = %s"))
        params.append(event_type)
    if after:
        conditions.append(sql.SQL("(occurred_at, event_id) < (%s, %s)"))
        params += list(after)
    query = sql.SQL(
        "SELECT event_id, event_type, source, subject, occurred_at, user_id, session_id, correlation_id, causation_id,"
        " sequence, data FROM event_store WHERE {where} ORDER BY occurred_at DESC, event_id DESC LIMIT %s"
    ).format(where=sql.SQL(" AND ").join(conditions))
    async with pool.connection() as conn:
        cursor = await conn.cursor(row_factory=dict_row).execute(query, (*params, paging.limit + 1))
        rows = await cursor.fetchall()
    more = len(rows) > paging.limit
    rows = rows[: paging.limit]
    last = rows[-1] if more else None
    next_cursor = encode_cursor({"t": last["occurred_at"].isoformat(), "id": last["event_id"]}) if last else None
    return page([cloud_event(row) for row in rows], next_cursor)


# ---- timeline ----


def _day_cursor(paging: PageParams) -> date | None:
    if paging.cursor is None:
        return None
    try:
        # In range, or its day's bounds overflow: the cursor is the client's to send back, and to change.
        return require_day(date.fromisoformat(paging.cursor["day"]))
    except (KeyError, TypeError, ValueError):
        raise ApiError(400, "Invalid cursor", [field_error("cursor", "not a cursor of the timeline")]) from None


async def timeline(
    pool: Reader,
    primary: AsyncConnectionPool,
    settings: Settings,
    user_id: str,
    tz_name: str,
    where: ActivityFilter,
    per_day: int,
    paging: PageParams,
    snapshot: str | None,
) -> dict[str, Any]:
    """Days newest first (`limit` days a page), each with its total, its totals per type and its newest
    `perDay` activities."""
    tz = zone(tz_name)
    before_day = _day_cursor(paging)
    before = where.before
    if before_day is not None:
        day_start = day_bounds(before_day, tz)[0]
        before = min(before, day_start) if before else day_start

    async def read(conn: AsyncConnection[Any], target: Target) -> dict[str, Any]:
        conditions = [sql.SQL("user_id = %s")]
        params: list[Any] = [user_id]
        if where.category:
            conditions.append(sql.SQL("category = %s"))
            params.append(where.category)
        if where.types:
            conditions.append(sql.SQL("activity_type = ANY(%s)"))
            params.append(list(where.types))
        if where.since:
            conditions.append(sql.SQL("occurred_at >= %s"))
            params.append(where.since)
        if before:
            conditions.append(sql.SQL("occurred_at < %s"))
            params.append(before)
        condition = sql.SQL(" AND ").join(conditions)
        activities_table = target.table("activities")
        counts = await conn.execute(
            sql.SQL(
                "WITH days AS (SELECT DISTINCT (occurred_at AT TIME ZONE %s)::date AS day FROM {t} WHERE {c}"
                " ORDER BY day DESC LIMIT %s)"
                " SELECT (occurred_at AT TIME ZONE %s)::date AS day, activity_type, count(*) FROM {t}"
                " WHERE {c} AND (occurred_at AT TIME ZONE %s)::date IN (SELECT day FROM days)"
                " GROUP BY 1, 2"
            ).format(t=activities_table, c=condition),
            (tz_name, *params, paging.limit + 1, tz_name, *params, tz_name),
        )
        per_type: dict[date, dict[str, int]] = {}
        for day, activity_type, count in await counts.fetchall():
            per_type.setdefault(day, {})[activity_type] = count
        days = sorted(per_type, reverse=True)
        more = len(days) > paging.limit
        days = days[: paging.limit]
        if not days:
            return {"items": [], "nextCursor": None, "timeZone": tz_name}
        window_start, window_end = day_bounds(days[-1], tz)[0], day_bounds(days[0], tz)[1]
        newest = await conn.cursor(row_factory=dict_row).execute(
            sql.SQL(
                "SELECT * FROM (SELECT {columns}, row_number() OVER (PARTITION BY (occurred_at AT TIME ZONE %s)::date"
                " ORDER BY occurred_at DESC, event_id DESC) AS n FROM {t}"
                " WHERE {c} AND occurred_at >= %s AND occurred_at < %s) ranked"
                " WHERE n <= %s ORDER BY occurred_at DESC, event_id DESC"
            ).format(columns=_ACTIVITY_COLUMNS, t=activities_table, c=condition),
            (tz_name, *params, window_start, window_end, per_day),
        )
        bucketed = bucket_by_day(await newest.fetchall(), tz)
        items = [
            {
                "date": day.isoformat(),
                "count": sum(per_type[day].values()),
                "byType": dict(sorted(per_type[day].items())),
                "activities": [activity(dict(row)) for row in bucketed.get(day, [])],
            }
            for day in days
        ]
        next_cursor = encode_cursor({"day": days[-1].isoformat()}) if more else None
        return {"items": items, "nextCursor": next_cursor, "timeZone": tz_name}

    found = await in_generation(
        pool,
        settings.history_namespace,
        user_id,
        snapshot,
        read,
        lambda: {"items": [], "nextCursor": None, "timeZone": tz_name},
    )
    open_text = await _opener(primary, user_id)
    for day in found["items"]:
        day["activities"] = [opened_activity(document, open_text) for document in day["activities"]]
    return found


# ---- stats ----


def empty_stats(user_id: str, tz_name: str) -> dict[str, Any]:
    return {
        "userId": user_id,
        "totalActivities": 0,
        "byType": {},
        "byCategory": {},
        "listingsCreated": 0,
        "viewsReceived": 0,
        "searches": 0,
        "savedSearches": 0,
        "firstActiveAt": None,
        "lastActiveAt": None,
        "activeDaysLast30": 0,
        "timeZone": tz_name,
        "accountClosed": False,
    }


async def stats(
    pool: Reader, settings: Settings, user_id: str, tz_name: str, now: datetime, snapshot: str | None
) -> dict[str, Any]:
    """Totals per activity type and category; listings created (properties the user listed, from the
    owners table); views received on those listings (by anyone, signed in or not, as the listing's view
    count does); searches performed and saved; first and last activity; the local days with any activity
    among the last 30 (today included, counted back from now, also when reading a snapshot)."""
    tz = zone(tz_name)
    month_start = last_days_start(now, tz, 30)

    async def read(conn: AsyncConnection[Any], target: Target) -> dict[str, Any]:
        tables = {
            "a": target.table("activities"),
            "o": target.table("property_owners"),
            "e": target.table("erased_users"),
        }
        cursor = await conn.execute(
            sql.SQL(
                "SELECT activity_type, category, count(*), min(occurred_at), max(occurred_at) FROM {a}"
                " WHERE user_id = %s GROUP BY 1, 2"
            ).format(**tables),
            (user_id,),
        )
        result = empty_stats(user_id, tz_name)
        for activity_type, category, count, first, last in await cursor.fetchall():
            result["byType"][activity_type] = count
            result["byCategory"][category] = result["byCategory"].get(category, 0) + count
            result["totalActivities"] += count
            if result["firstActiveAt"] is None or first < result["firstActiveAt"]:
                result["firstActiveAt"] = first
            if result["lastActiveAt"] is None or last > result["lastActiveAt"]:
                result["lastActiveAt"] = last
        result["byType"] = dict(sorted(result["byType"].items()))
        result["byCategory"] = dict(sorted(result["byCategory"].items()))
        result["searches"] = result["byType"].get(SEARCH_PERFORMED, 0)
        result["savedSearches"] = result["byType"].get(SEARCH_SAVED, 0)
        cursor = await conn.execute(
            sql.SQL(
                "SELECT (SELECT count(*) FROM {o} WHERE owner_id = %s),"
                " (SELECT count(*) FROM {a} v JOIN {o} o ON o.property_id = v.property_id"
                "   WHERE o.owner_id = %s AND v.activity_type = 'property.viewed'),"
                " (SELECT count(DISTINCT (occurred_at AT TIME ZONE %s)::date) FROM {a}"
                "   WHERE user_id = %s AND occurred_at >= %s),"
                " EXISTS (SELECT 1 FROM {e} WHERE user_id = %s)"
            ).format(**tables),
            (user_id, user_id, tz_name, user_id, month_start, user_id),
        )
        row = await cursor.fetchone()
        assert row is not None
        result["listingsCreated"], result["viewsReceived"], result["activeDaysLast30"], closed = row
        result["accountClosed"] = bool(closed)
        for moment in ("firstActiveAt", "lastActiveAt"):
            if result[moment] is not None:
                result[moment] = format_time(result[moment])
        return result

    return await in_generation(
        pool, settings.history_namespace, user_id, snapshot, read, lambda: empty_stats(user_id, tz_name)
    )
