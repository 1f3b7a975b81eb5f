"""User-history endpoints (8084). Queries read the history workers' stores; the one command (replay)
goes to the history replay worker through Kafka and answers 202 with the job's id."""

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Path, Query, Request
from fastapi.responses import JSONResponse
from psycopg import sql
from psycopg.rows import dict_row
from psycopg_pool import AsyncConnectionPool

from api.common.auth import AccessClaims
from api.common.consistency import Reader, wait_for_positions
from api.common.contract import CONSISTENCY_TOKEN, LOCATION, STALE, errors, success_headers
from api.common.deps import (
    AppSettings,
    ConsistencyToken,
    Context,
    CurrentUser,
    IdempotencyKey,
    PgPool,
    Producer,
    QueryReads,
    RedisClient,
    SignedInQueryCall,
    UserId,
)
from api.common.errors import ApiError, field_error
from api.common.idempotency import derived_id, fingerprint, idempotent
from api.common.kafka import CONSISTENCY_HEADER, consistency_token
from api.common.pagination import Page, PageParams, PageQuery, encode_cursor, page
from api.common.responses import OrjsonResponse, Success, ok, require_utc
from api.user_history import queries
from api.user_history.models import (
    ActivityOut,
    RawEventOut,
    ReplayIn,
    ReplayJobOut,
    ReplayRequestedOut,
    StatsOut,
    TimelineOut,
)
from api.user_history.queries import ActivityFilter
from api.user_history.timeline import DEFAULT_TIME_ZONE, UnknownTimeZone
from config.settings import Settings
from schemas.envelope import format_time, new_event
from schemas.history import (
    ACTIVITY_CATEGORIES,
    ACTIVITY_TYPES,
    REBUILD_HISTORY,
    Category,
    RebuildHistory,
    activity_type_of,
    replayer_checkpoint,
)
from schemas.ids import new_id
from schemas.topics import USER_HISTORY_REPLAYS
from schemas.users import Role

router = APIRouter(prefix="/api/user-history", tags=["user history"])

JobId = Annotated[str, Path(pattern=r"^job-[A-Za-z0-9]{1,64}$", description="A replay job id, `job-…`")]
TypeFilter = Annotated[
    str | None,
    Query(
        alias="type",
        max_length=500,
        description="Activity types, comma-separated (`property.created,property.viewed`; a `.v1` suffix is ignored)",
    ),
]
FromFilter = Annotated[datetime | None, Query(alias="from", description="Activities at or after this time")]
ToFilter = Annotated[datetime | None, Query(alias="to", description="Activities before this time (exclusive)")]
TimeZone = Annotated[
    str, Query(alias="tz", min_length=1, max_length=64, description="IANA time zone of the days and 'last 30 days'")
]
Snapshot = Annotated[
    str | None,
    Query(
        pattern=r"^job-[A-Za-z0-9]{1,64}$",
        description="Read a point-in-time copy (the id of a finished replay job run with `until`) instead of now",
    ),
]


@dataclass(frozen=True)
class Window:
    """What every list of activities can be narrowed to: types, a time range, a point-in-time copy."""

    types: str | None
    since: datetime | None
    before: datetime | None
    snapshot: str | None


def _window(
    types: TypeFilter = None, since: FromFilter = None, before: ToFilter = None, snapshot: Snapshot = None
) -> Window:
    return Window(types, since, before, snapshot)


ActivityWindow = Annotated[Window, Depends(_window)]


def _may_read(user: AccessClaims, user_id: str) -> None:
    if user.subject != user_id and user.role != Role.ADMIN:
        raise ApiError(403, "You can only read your own history", [field_error("userId", "not yours")])


def _require_admin(user: AccessClaims) -> None:
    if user.role != Role.ADMIN:
        raise ApiError(403, "Only an admin can rebuild history", [field_error("role", "ADMIN required")])


def _aware(value: datetime | None, name: str) -> datetime | None:
    if value is None:
        return None
    try:
        return require_utc(value)
    except ValueError as exc:
        raise ApiError(422, f"Invalid {name}", [field_error(name, str(exc))]) from None


def _filter(window: Window, category: Category | None = None) -> ActivityFilter:
    wanted: list[str] = []
    for part in (window.types or "").split(","):
        name = activity_type_of(part.strip())
        if not name:
            continue
        if name not in ACTIVITY_TYPES or (category is not None and ACTIVITY_CATEGORIES[name] != category):
            allowed = sorted(t for t in ACTIVITY_TYPES if category is None or ACTIVITY_CATEGORIES[t] == category)
            raise ApiError(422, "Invalid type", [field_error("type", f"{part.strip()!r} is not one of {allowed}")])
        wanted.append(name)
    since, before = _aware(window.since, "from"), _aware(window.before, "to")
    if since and before and before <= since:
        raise ApiError(422, "Invalid time range", [field_error("to", "must be after from")])
    return ActivityFilter(category.value if category else None, tuple(sorted(set(wanted))), since, before)


def _zone(tz: str) -> str:
    try:
        queries.zone(tz)
    except UnknownTimeZone as exc:
        raise ApiError(422, "Invalid tz", [field_error("tz", str(exc))]) from None
    return tz


# ---- replay (before `/{user_id}`: `replay` is not a user id) ----

# What a query's success may carry: that the store had not caught up in time.
_READ = {"headers": STALE}


@router.post(
    "/replay",
    status_code=202,
    summary="Admin: rebuild history (all users or one; from earliest or a time)",
    response_model=Success[ReplayRequestedOut],
    responses={202: {"headers": success_headers(LOCATION, CONSISTENCY_TOKEN)}, **errors(403)},
)
async def start_replay(
    body: ReplayIn,
    user: CurrentUser,
    ctx: Context,
    request: Request,
    settings: AppSettings,
    redis: RedisClient,
    producer: Producer,
    idempotency_key: IdempotencyKey = None,
) -> JSONResponse:
    """A blue/green rebuild run by the history replay worker: a fresh generation is filled from Kafka while
    the current one keeps answering, then swapped in. With `until`, a separate read-only copy of history
    as it was then (read it with `?snapshot=<jobId>`; kept 30 days by default, see `snapshotExpiresAt`).
    Answers 202 with the job's id; follow it at the `Location` (send the `X-Consistency-Token` along to
    see the job at once)."""
    _require_admin(user)
    if body.until is not None and body.from_time is not None and body.until <= body.from_time:
        raise ApiError(422, "Invalid time range", [field_error("until", "must be after from")])
    job_id = derived_id("job", "history.replay", user.subject, idempotency_key) if idempotency_key else new_id("job")

    async def answer() -> JSONResponse:
        command = RebuildHistory(
            job_id=job_id,
            namespace=settings.history_namespace,
            user_id=body.user_id,
            from_time=body.from_time,
            until=body.until,
            requested_by=user.subject,
        )
        envelope = new_event(
            type=REBUILD_HISTORY,
            subject=job_id,
            data=command.to_wire(),
            service="user-history",
            userid=user.subject,
            sessionid=ctx.session_id,
            correlationid=ctx.correlation_id,
        )
        position = await producer.publish(USER_HISTORY_REPLAYS.name, envelope)
        location = f"/api/user-history/replay/{job_id}"
        data = {
            "jobId": job_id,
            "state": "queued",
            "userId": body.user_id,
            "from": format_time(body.from_time) if body.from_time else "earliest",
            "until": format_time(body.until) if body.until else None,
        }
        return OrjsonResponse(
            {"success": True, "message": "Rebuild requested", "data": data},
            status_code=202,
            headers={"Location": location, CONSISTENCY_HEADER: consistency_token([position])},
        )

    return await idempotent(
        redis,
        scope="history.replay",
        user_id=user.subject,
        key=idempotency_key,
        request_fingerprint=fingerprint(request.method, request.url.path, body.model_dump(mode="json", by_alias=True)),
        answer=answer,
    )


def _job(row: dict[str, Any], retention_seconds: float) -> dict[str, Any]:
    total, processed = row["events_total"], row["events_processed"]
    copy_made = row["until_time"] is not None and row["state"] == "completed"
    snapshot = row["job_id"] if copy_made and row["snapshot_dropped_at"] is None else None
    expires = row["finished_at"] + timedelta(seconds=retention_seconds) if copy_made and retention_seconds else None
    return {
        "jobId": row["job_id"],
        "state": row["state"],
        "phase": row["phase"],
        "userId": row["scope_user_id"],
        "from": format_time(row["from_time"]) if row["from_time"] else "earliest",
        "until": format_time(row["until_time"]) if row["until_time"] else None,
        "requestedBy": row["requested_by"],
        "requestedAt": format_time(row["requested_at"]),
        "generation": row["generation"],
        "consumerGroup": row["consumer_group"],
        "eventsProcessed": processed,
        "eventsTotal": total,
        "percent": round(100 * processed / total, 1) if total else (100.0 if row["state"] == "completed" else 0.0),
        "eventsPerSecond": row["events_per_second"],
        "etaSeconds": row["eta_seconds"],
        "startedAt": format_time(row["started_at"]) if row["started_at"] else None,
        "finishedAt": format_time(row["finished_at"]) if row["finished_at"] else None,
        "error": row["error"],
        "snapshot": snapshot,
        # A point-in-time copy is dropped by the replay worker once past the retention.
        "snapshotExpiresAt": format_time(expires) if snapshot and expires else None,
        "snapshotDroppedAt": format_time(row["snapshot_dropped_at"]) if row["snapshot_dropped_at"] else None,
    }


async def _replayer_caught_up(pool: Reader, settings: Settings, token: str | None) -> bool:
    return await wait_for_positions(
        pool,
        replayer_checkpoint(settings.history_namespace),
        frozenset({USER_HISTORY_REPLAYS.name}),
        token,
        settings.consistency_wait_seconds,
    )


@router.get(
    "/replay",
    summary="Admin: rebuild jobs, newest first",
    response_model=Success[Page[ReplayJobOut]],
    responses={200: _READ, **errors(403)},
)
async def list_replays(
    user: CurrentUser, pool: QueryReads, settings: AppSettings, paging: PageQuery, consistency: ConsistencyToken = None
) -> JSONResponse:
    _require_admin(user)
    fresh = await _replayer_caught_up(pool, settings, consistency)
    after = None
    if paging.cursor is not None:
        try:
            after = (datetime.fromisoformat(paging.cursor["t"]), str(paging.cursor["id"]))
        except (KeyError, TypeError, ValueError):
            raise ApiError(400, "Invalid cursor", [field_error("cursor", "not a cursor of this list")]) from None
    keyset = " AND (requested_at, job_id) < (%s, %s)" if after else ""
    async with pool.connection() as conn:
        cursor = await conn.cursor(row_factory=dict_row).execute(
            sql.SQL(
                "SELECT * FROM user_history_replay_jobs WHERE namespace = %s{keyset}"
                " ORDER BY requested_at DESC, job_id DESC LIMIT %s"
            ).format(keyset=sql.SQL(keyset)),
            (settings.history_namespace, *(after or ()), paging.limit + 1),
        )
        rows = await cursor.fetchall()
    more = len(rows) > paging.limit
    rows = rows[: paging.limit]
    last = rows[-1] if more else None
    next_cursor = encode_cursor({"t": last["requested_at"].isoformat(), "id": last["job_id"]}) if last else None
    retention = settings.history_snapshot_retention_seconds
    return ok(
        page([_job(row, retention) for row in rows], next_cursor), "Rebuild jobs", queries.freshness_headers(fresh)
    )


@router.get(
    "/replay/{job_id}",
    summary="Admin: a rebuild job's state, events processed and total, rate, ETA",
    response_model=Success[ReplayJobOut],
    responses={200: _READ, **errors(403, 404)},
)
async def replay_job(
    job_id: JobId, user: CurrentUser, pool: QueryReads, settings: AppSettings, consistency: ConsistencyToken = None
) -> JSONResponse:
    _require_admin(user)
    fresh = await _replayer_caught_up(pool, settings, consistency)
    async with pool.connection() as conn:
        cursor = await conn.cursor(row_factory=dict_row).execute(
            "SELECT * FROM user_history_replay_jobs WHERE job_id = %s AND namespace = %s",
            (job_id, settings.history_namespace),
        )
        row = await cursor.fetchone()
    if row is None:
        raise ApiError(404, f"Replay job {job_id} not found", headers=queries.freshness_headers(fresh))
    return ok(_job(row, settings.history_snapshot_retention_seconds), "Rebuild job", queries.freshness_headers(fresh))


# ---- a user's history ----


async def _activities(
    reads: Reader,
    primary: AsyncConnectionPool,
    settings: Settings,
    user: AccessClaims,
    user_id: str,
    paging: PageParams,
    window: Window,
    consistency: str | None,
    category: Category | None,
    message: str,
) -> JSONResponse:
    _may_read(user, user_id)
    where = _filter(window, category)
    fresh = await queries.caught_up(reads, settings, "postgres", consistency)
    data = await queries.activities(reads, primary, settings, user_id, where, paging, window.snapshot)
    return ok(data, message, queries.freshness_headers(fresh))


# A snapshot that is not (or no longer) a finished point-in-time copy: 404.
_ACTIVITIES = {"response_model": Success[Page[ActivityOut]], "responses": {200: _READ, **errors(403, 404)}}


@router.get("/{user_id}", summary="All activities, newest first; filter by type and time; cursor paging", **_ACTIVITIES)
async def history(
    user_id: UserId,
    user: CurrentUser,
    reads: QueryReads,
    primary: PgPool,
    settings: AppSettings,
    paging: PageQuery,
    window: ActivityWindow,
    consistency: ConsistencyToken = None,
) -> JSONResponse:
    return await _activities(reads, primary, settings, user, user_id, paging, window, consistency, None, "User history")


@router.get(
    "/{user_id}/recent",
    summary="The last N (≤ 50) activities, from Redis",
    response_model=Success[Page[ActivityOut]],
    responses={200: _READ, **errors(403)},
)
async def recent(
    user_id: UserId,
    query: SignedInQueryCall,
    limit: Annotated[int, Query(ge=1, le=50, description="How many activities")] = 20,
) -> JSONResponse:
    _may_read(query.user, user_id)
    fresh = await queries.caught_up(query.reads, query.settings, "redis", query.consistency)
    items = await queries.recent(query.reads, query.primary, query.redis, query.settings, user_id, limit)
    return ok(page(items, None), "Recent activity", queries.freshness_headers(fresh))


@router.get(
    "/{user_id}/properties",
    summary="Property activity: created, updated, viewed, delisted, images added",
    **_ACTIVITIES,
)
async def property_history(
    user_id: UserId,
    user: CurrentUser,
    reads: QueryReads,
    primary: PgPool,
    settings: AppSettings,
    paging: PageQuery,
    window: ActivityWindow,
    consistency: ConsistencyToken = None,
) -> JSONResponse:
    return await _activities(
        reads, primary, settings, user, user_id, paging, window, consistency, Category.PROPERTY, "Property activity"
    )


@router.get("/{user_id}/searches", summary="Searches performed and saved", **_ACTIVITIES)
async def search_history(
    user_id: UserId,
    user: CurrentUser,
    reads: QueryReads,
    primary: PgPool,
    settings: AppSettings,
    paging: PageQuery,
    window: ActivityWindow,
    consistency: ConsistencyToken = None,
) -> JSONResponse:
    return await _activities(
        reads, primary, settings, user, user_id, paging, window, consistency, Category.SEARCH, "Search activity"
    )


@router.get(
    "/{user_id}/events",
    summary="The raw CloudEvents of the user, from the event store",
    response_model=Success[Page[RawEventOut]],
    responses={200: _READ, **errors(403)},
)
async def raw_events(
    user_id: UserId,
    user: CurrentUser,
    reads: QueryReads,
    settings: AppSettings,
    paging: PageQuery,
    event_type: Annotated[
        str | None,
        Query(
            alias="type",
            pattern=r"^[a-z][a-z0-9_]*(\.[a-z][a-z0-9_]*)+$",
            max_length=200,
            description="An event type, with (`property.created.v1`) or without its version",
        ),
    ] = None,
    consistency: ConsistencyToken = None,
) -> JSONResponse:
    """Events the user did (`userid`) or that are about their account (`subject`), newest first, exactly
    as archived. Personal fields of `users` events are sealed with the user's key (crypto-shredding)."""
    _may_read(user, user_id)
    fresh = await queries.archive_caught_up(reads, settings, consistency)
    data = await queries.raw_events(reads, user_id, event_type, paging)
    return ok(data, "Raw events", queries.freshness_headers(fresh))


@router.get(
    "/{user_id}/timeline",
    summary="Activities grouped by day in the user's time zone, with counts",
    response_model=Success[TimelineOut],
    responses={200: _READ, **errors(403, 404)},
)
async def timeline(
    user_id: UserId,
    user: CurrentUser,
    reads: QueryReads,
    primary: PgPool,
    settings: AppSettings,
    paging: PageQuery,
    window: ActivityWindow,
    tz: TimeZone = DEFAULT_TIME_ZONE,
    per_day: Annotated[int, Query(alias="perDay", ge=1, le=100, description="Activities listed per day")] = 20,
    consistency: ConsistencyToken = None,
) -> JSONResponse:
    """`limit` days a page, newest first. Each day: its local `date`, `count` (all its activities),
    `byType`, and its newest `perDay` activities."""
    _may_read(user, user_id)
    where = _filter(window)
    tz = _zone(tz)
    fresh = await queries.caught_up(reads, settings, "postgres", consistency)
    data = await queries.timeline(reads, primary, settings, user_id, tz, where, per_day, paging, window.snapshot)
    return ok(data, "Timeline", queries.freshness_headers(fresh))


@router.get(
    "/{user_id}/stats",
    summary="Totals per activity type, listings, views received, searches, activity",
    response_model=Success[StatsOut],
    responses={200: _READ, **errors(403, 404)},
)
async def user_stats(
    user_id: UserId,
    user: CurrentUser,
    reads: QueryReads,
    settings: AppSettings,
    tz: TimeZone = DEFAULT_TIME_ZONE,
    snapshot: Snapshot = None,
    consistency: ConsistencyToken = None,
) -> JSONResponse:
    _may_read(user, user_id)
    tz = _zone(tz)
    fresh = await queries.caught_up(reads, settings, "postgres", consistency)
    data = await queries.stats(reads, settings, user_id, tz, datetime.now(UTC), snapshot)
    return ok(data, "User statistics", queries.freshness_headers(fresh))
