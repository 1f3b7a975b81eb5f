"""The notification service's query side: reads the `notification-projection` worker's stores (Postgres
`notifications`, `notification_channel_states`, `notification_preferences`; Redis unread counts) and
the users read model (does a recipient exist). A query sent with `X-Consistency-Token` first waits,
bounded, for the store it reads."""

from datetime import datetime
from typing import Any

import orjson
from psycopg.rows import dict_row
from redis.asyncio import Redis

from api.common.consistency import Reader, wait_for_positions
from api.common.errors import ApiError, field_error
from api.common.pagination import PageParams, encode_cursor, page
from api.common.status import ReadModel, fixed
from config.settings import Settings
from schemas.envelope import format_time
from schemas.notifications import DEFAULT_PREFERENCES, Kind, Preferences
from schemas.read_models import (
    NOTIFICATIONS_POSTGRES_CHECKPOINT,
    NOTIFICATIONS_REDIS_CHECKPOINT,
    unread_notifications_key,
)
from schemas.topics import NOTIFICATIONS, USERS

_TOPICS = frozenset({NOTIFICATIONS.name, USERS.name})
# What `/status` reports on: the inbox and preferences in Postgres, unread counts in Redis.
READ_MODELS = fixed(
    ReadModel(NOTIFICATIONS_POSTGRES_CHECKPOINT, _TOPICS), ReadModel(NOTIFICATIONS_REDIS_CHECKPOINT, _TOPICS)
)


async def caught_up(reads: Reader, settings: Settings, token: str | None, *, redis: bool = False) -> bool:
    fresh = await wait_for_positions(
        reads, NOTIFICATIONS_POSTGRES_CHECKPOINT, _TOPICS, token, settings.consistency_wait_seconds
    )
    if redis:
        fresh = fresh and await wait_for_positions(
            reads, NOTIFICATIONS_REDIS_CHECKPOINT, _TOPICS, token, settings.consistency_wait_seconds
        )
    return fresh


def freshness_headers(fresh: bool) -> dict[str, str]:
    return {} if fresh else {"X-Consistency": "stale"}


async def _fetch(reads: Reader, sql: str, params: tuple[Any, ...]) -> list[dict[str, Any]]:
    async with reads.connection() as conn:
        cursor = await conn.cursor(row_factory=dict_row).execute(sql, params)  # type: ignore[arg-type]
        return await cursor.fetchall()


async def user_exists(reads: Reader, user_id: str) -> bool:
    rows = await _fetch(reads, "SELECT 1 FROM users WHERE id = %s AND NOT deleted", (user_id,))
    return bool(rows)


async def user_by_address(reads: Reader, address: str, *, email: bool) -> str | None:
    column = "email_normalised" if email else "phone"
    rows = await _fetch(
        reads,
        f"SELECT id FROM users WHERE {column} = %s AND NOT deleted ORDER BY created_at LIMIT 1",  # noqa: S608
        (address,),
    )
    return rows[0]["id"] if rows else None


def _time(value: datetime | None) -> str | None:
    return format_time(value) if value is not None else None


def _item(row: dict[str, Any]) -> dict[str, Any]:
    return {
        "id": row["id"],
        "kind": row["kind"],
        # Who wrote a message (a user id: their profile is theirs to show); None for the platform's own.
        "senderId": row["requested_by"] if row["kind"] == Kind.MESSAGE else None,
        "title": row["title"],
        "body": row["body"],
        "data": row["data"],
        "read": row["read_at"] is not None,
        "readAt": _time(row["read_at"]),
        "createdAt": format_time(row["created_at"]),
        "deliveredAt": _time(row["delivered_at"]),
    }


def _cursor(paging: PageParams) -> tuple[datetime | None, str]:
    if paging.cursor is None:
        return None, ""
    try:
        return datetime.fromisoformat(paging.cursor["t"]), str(paging.cursor["id"])
    except (KeyError, TypeError, ValueError):
        raise ApiError(400, "Invalid cursor", [field_error("cursor", "not a cursor of this list")]) from None


async def inbox(reads: Reader, redis: Redis, user_id: str, unread_only: bool, paging: PageParams) -> dict[str, Any]:
    after_time, after_id = _cursor(paging)
    conditions = ["user_id = %s", "in_app", "deleted_at IS NULL"]
    params: list[Any] = [user_id]
    if unread_only:
        conditions.append("read_at IS NULL")
    if after_time is not None:
        conditions.append("(created_at, id) < (%s, %s)")
        params += [after_time, after_id]
    rows = await _fetch(
        reads,
        "SELECT id, kind, requested_by, title, body, data, read_at, created_at, delivered_at"  # noqa: S608
        " FROM notifications"
        f" WHERE {' AND '.join(conditions)} ORDER BY created_at DESC, id DESC LIMIT %s",
        (*params, paging.limit + 1),
    )
    more = len(rows) > paging.limit
    last = rows[paging.limit - 1] if more else None
    cursor = encode_cursor({"t": last["created_at"].isoformat(), "id": last["id"]}) if last else None
    result = page([_item(row) for row in rows[: paging.limit]], cursor)
    result["unreadCount"] = await unread_count(reads, redis, user_id)
    return result


async def unread_count(reads: Reader, redis: Redis, user_id: str) -> int:
    """Redis first (kept absolute and versioned by the projection); Postgres when Redis has none yet."""
    raw = await redis.get(unread_notifications_key(user_id))
    if raw is not None:
        return int(orjson.loads(raw)["unread"])
    rows = await _fetch(
        reads,
        "SELECT count(*) AS n FROM notifications WHERE user_id = %s AND in_app AND deleted_at IS NULL"
        " AND read_at IS NULL",
        (user_id,),
    )
    return int(rows[0]["n"])


async def inbox_entry(reads: Reader, notification_id: str) -> dict[str, Any] | None:
    """A notification as its recipient sees it in the inbox; None when it is not (or no longer) there."""
    rows = await _fetch(
        reads,
        "SELECT id, user_id, kind, requested_by, title, body, data, read_at, created_at, delivered_at"
        " FROM notifications WHERE id = %s AND in_app AND deleted_at IS NULL",
        (notification_id,),
    )
    return rows[0] if rows else None


async def delivery_state(reads: Reader, notification_id: str) -> dict[str, Any] | None:
    rows = await _fetch(
        reads,
        "SELECT id, user_id, requested_by, kind, channel, title, in_app, read_at, deleted_at, created_at"
        " FROM notifications WHERE id = %s",
        (notification_id,),
    )
    if not rows:
        return None
    row = rows[0]
    channels = await _fetch(
        reads,
        "SELECT channel, state, attempts, detail, until_at, updated_at FROM notification_channel_states"
        " WHERE notification_id = %s ORDER BY channel",
        (notification_id,),
    )
    return {
        "id": row["id"],
        "userId": row["user_id"],
        "requestedBy": row["requested_by"],
        "kind": row["kind"],
        "channel": row["channel"],
        "title": row["title"],
        "inInbox": row["in_app"] and row["deleted_at"] is None,
        "read": row["read_at"] is not None,
        "createdAt": format_time(row["created_at"]),
        "channels": [
            {
                "channel": c["channel"],
                "state": c["state"],
                "attempts": c["attempts"],
                "detail": c["detail"],
                "until": _time(c["until_at"]),
                "updatedAt": format_time(c["updated_at"]),
            }
            for c in channels
        ],
    }


async def preferences(reads: Reader, user_id: str) -> tuple[Preferences, datetime | None]:
    rows = await _fetch(
        reads, "SELECT preferences, updated_at FROM notification_preferences WHERE user_id = %s", (user_id,)
    )
    if not rows:
        return DEFAULT_PREFERENCES, None
    return Preferences.model_validate(rows[0]["preferences"]), rows[0]["updated_at"]


def preferences_document(user_id: str, prefs: Preferences, updated_at: datetime | None) -> dict[str, Any]:
    return {"userId": user_id, **prefs.wire(), "isDefault": updated_at is None, "updatedAt": _time(updated_at)}


async def blocks(reads: Reader, user_id: str, sender_id: str) -> bool:
    """Whether `user_id` blocked `sender_id` (the projection's `notification_blocks`)."""
    rows = await _fetch(
        reads,
        "SELECT 1 FROM notification_blocks WHERE user_id = %s AND sender_id = %s AND blocked",
        (user_id, sender_id),
    )
    return bool(rows)


async def blocked_senders(reads: Reader, user_id: str) -> list[str]:
    rows = await _fetch(
        reads,
        "SELECT sender_id FROM notification_blocks WHERE user_id = %s AND blocked ORDER BY sender_id",
        (user_id,),
    )
    return [row["sender_id"] for row in rows]
