"""The user service's query side: reads the stores the `user-projection` worker writes (Postgres
`users`, Redis `user:{id}`) and the property projection's `properties` and `user_property_counts`.
A query sent with `X-Consistency-Token` first waits (bounded) for the checkpoint of the store it reads.
"""

from dataclasses import dataclass
from datetime import datetime
from typing import Any

import orjson
from psycopg.rows import dict_row
from redis.asyncio import Redis

from api.common.auth import AccessClaims
from api.common.consistency import Reader, wait_for_positions
from api.common.errors import ApiError, field_error
from api.common.pagination import PageParams, encode_cursor, page
from api.common.status import ReadModel, fixed
from config.settings import Settings
from schemas.envelope import format_time
from schemas.read_models import (
    PROPERTIES_POSTGRES_CHECKPOINT,
    USERS_POSTGRES_CHECKPOINT,
    USERS_REDIS_CHECKPOINT,
    user_key,
)
from schemas.topics import PROPERTIES, USERS
from schemas.users import Role

POSTGRES_CHECKPOINT = USERS_POSTGRES_CHECKPOINT
PROPERTIES_CHECKPOINT = PROPERTIES_POSTGRES_CHECKPOINT
# What `/status` reports on: the stores this service reads.
READ_MODELS = fixed(
    ReadModel(POSTGRES_CHECKPOINT, frozenset({USERS.name})),
    ReadModel(USERS_REDIS_CHECKPOINT, frozenset({USERS.name})),
    ReadModel(PROPERTIES_CHECKPOINT, frozenset({PROPERTIES.name})),
)


def freshness_headers(fresh: bool) -> dict[str, str]:
    return {} if fresh else {"X-Consistency": "stale"}


async def caught_up(
    reads: Reader, settings: Settings, checkpoint: str, token: str | None, topic: str = USERS.name
) -> bool:
    return await wait_for_positions(reads, checkpoint, frozenset({topic}), token, settings.consistency_wait_seconds)


async def fetch(reads: Reader, sql: str, params: tuple[Any, ...]) -> list[dict[str, Any]]:
    async with reads.connection() as conn:
        cursor = await conn.cursor(row_factory=dict_row).execute(sql, params)  # type: ignore[arg-type]
        return await cursor.fetchall()


@dataclass(frozen=True)
class Credentials:
    user_id: str
    password_hash: str
    role: str


async def credentials(reads: Reader, email: str) -> Credentials | None:
    rows = await fetch(
        reads,
        "SELECT id, password_hash, role FROM users WHERE email_normalised = %s AND NOT deleted"
        " AND password_hash IS NOT NULL",
        (email,),
    )
    return Credentials(rows[0]["id"], rows[0]["password_hash"], rows[0]["role"]) if rows else None


async def live_role(reads: Reader, user_id: str) -> str | None:
    rows = await fetch(reads, "SELECT role FROM users WHERE id = %s AND NOT deleted", (user_id,))
    return rows[0]["role"] if rows else None


def can_see_everything(viewer: AccessClaims | None, user_id: str) -> bool:
    return viewer is not None and (viewer.subject == user_id or viewer.role == Role.ADMIN)


def public_profile(profile: dict[str, Any], property_count: int) -> dict[str, Any]:
    return {
        "id": profile["id"],
        "name": profile["name"],
        "propertyCount": property_count,
        "memberSince": profile["createdAt"],
    }


def full_profile(profile: dict[str, Any], property_count: int) -> dict[str, Any]:
    return {
        **public_profile(profile, property_count),
        "email": profile["email"],
        "phone": profile["phone"],
        "role": profile["role"],
        "version": profile["version"],
        "createdAt": profile["createdAt"],
        "updatedAt": profile["updatedAt"],
    }


async def _profile_from_postgres(reads: Reader, user_id: str) -> dict[str, Any] | None:
    rows = await fetch(
        reads,
        "SELECT id, email_normalised, name, phone, role, version, created_at, updated_at FROM users"
        " WHERE id = %s AND NOT deleted AND name IS NOT NULL AND created_at IS NOT NULL",
        (user_id,),
    )
    if not rows:
        return None
    row = rows[0]
    return {
        "id": row["id"],
        "email": row["email_normalised"],
        "name": row["name"],
        "phone": row["phone"],
        "role": row["role"],
        "version": row["version"],
        "createdAt": format_time(row["created_at"]),
        "updatedAt": format_time(row["updated_at"]),
    }


async def property_count(reads: Reader, user_id: str) -> int:
    rows = await fetch(reads, "SELECT property_count FROM user_property_counts WHERE user_id = %s", (user_id,))
    return int(rows[0]["property_count"]) if rows else 0


async def profile(
    reads: Reader, redis: Redis, settings: Settings, user_id: str, token: str | None
) -> tuple[dict[str, Any], bool]:
    """The whole profile (Redis, falling back to Postgres); 404 when unknown or erased."""
    fresh = await caught_up(reads, settings, USERS_REDIS_CHECKPOINT, token)
    raw = await redis.get(user_key(user_id))
    document: dict[str, Any] | None
    if raw is not None:
        document = orjson.loads(raw)
        if document is not None and document.get("deleted"):
            document = None
    else:
        document = await _profile_from_postgres(reads, user_id)
    if document is None:
        raise ApiError(404, f"User {user_id} not found")
    return document, fresh


async def require_user(reads: Reader, user_id: str) -> None:
    rows = await fetch(reads, "SELECT 1 FROM users WHERE id = %s AND NOT deleted", (user_id,))
    if not rows:
        raise ApiError(404, f"User {user_id} not found")


def _time_cursor(paging: PageParams) -> tuple[datetime | None, str]:
    if paging.cursor is None:
        return None, ""
    try:
        return datetime.fromisoformat(paging.cursor["t"]), str(paging.cursor["id"])
    except (KeyError, TypeError, ValueError):
        raise ApiError(400, "Invalid cursor", [field_error("cursor", "not a cursor of this list")]) from None


def _page(rows: list[dict[str, Any]], limit: int, item: Any) -> dict[str, Any]:
    more = len(rows) > limit
    last = rows[limit - 1] if more else None
    cursor = encode_cursor({"t": last["created_at"].isoformat(), "id": last["id"]}) if last else None
    return page([item(row) for row in rows[:limit]], cursor)


def _listing(row: dict[str, Any]) -> dict[str, Any]:
    return {
        "id": row["id"],
        "ownerId": row["owner_id"],
        "title": row["title"],
        "location": row["location"],
        "price": row["price"],
        "propertyType": row["property_type"],
        "bedrooms": row["bedrooms"],
        "bathrooms": row["bathrooms"],
        "featured": row["featured"],
        "delisted": row["deleted"],
        "version": row["version"],
        "createdAt": format_time(row["created_at"]),
        "updatedAt": format_time(row["updated_at"]),
    }


async def listings(
    reads: Reader,
    settings: Settings,
    user_id: str,
    include_delisted: bool,
    paging: PageParams,
    token: str | None,
) -> tuple[dict[str, Any], bool]:
    fresh = await caught_up(reads, settings, PROPERTIES_CHECKPOINT, token, PROPERTIES.name)
    after_time, after_id = _time_cursor(paging)
    conditions = ["owner_id = %s", "title IS NOT NULL", "created_at IS NOT NULL"]
    params: list[Any] = [user_id]
    if not include_delisted:
        conditions.append("NOT deleted")
    if after_time:
        conditions.append("(created_at, id) < (%s, %s)")
        params += [after_time, after_id]
    sql = (
        "SELECT id, owner_id, title, location, price, property_type, bedrooms, bathrooms, featured, deleted,"  # noqa: S608
        f" version, created_at, updated_at FROM properties WHERE {' AND '.join(conditions)}"
        " ORDER BY created_at DESC, id DESC LIMIT %s"
    )  # only fixed fragments are formatted in; every value is a parameter
    rows = await fetch(reads, sql, (*params, paging.limit + 1))
    return _page(rows, paging.limit, _listing), fresh


async def live_listing_ids(reads: Reader, user_id: str) -> list[str]:
    rows = await fetch(reads, "SELECT id FROM properties WHERE owner_id = %s AND NOT deleted ORDER BY id", (user_id,))
    return [row["id"] for row in rows]


async def count_live_listings(reads: Reader, user_id: str) -> int:
    rows = await fetch(
        reads,
        "SELECT count(*) AS n FROM properties WHERE owner_id = %s AND NOT deleted AND title IS NOT NULL",
        (user_id,),
    )
    return int(rows[0]["n"])


def _like_prefix(text: str) -> str:
    return text.lower().replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"


async def search(
    reads: Reader,
    settings: Settings,
    viewer: AccessClaims | None,
    q: str | None,
    role: Role | None,
    paging: PageParams,
    token: str | None,
) -> tuple[dict[str, Any], bool]:
    fresh = await caught_up(reads, settings, POSTGRES_CHECKPOINT, token)
    is_admin = viewer is not None and viewer.role == Role.ADMIN
    conditions = ["NOT u.deleted", "u.name IS NOT NULL", "u.created_at IS NOT NULL"]
    params: list[Any] = []
    if q:
        if is_admin:
            conditions.append("(lower(u.name) LIKE %s OR u.email_normalised LIKE %s)")
            params += [_like_prefix(q), _like_prefix(q)]
        else:
            conditions.append("lower(u.name) LIKE %s")
            params.append(_like_prefix(q))
    if role:
        conditions.append("u.role = %s")
        params.append(role.value)
    after_time, after_id = _time_cursor(paging)
    if after_time:
        conditions.append("(u.created_at, u.id) < (%s, %s)")
        params += [after_time, after_id]
    sql = (
        "SELECT u.id, u.email_normalised, u.name, u.phone, u.role, u.version, u.created_at, u.updated_at,"  # noqa: S608
        " coalesce(c.property_count, 0) AS property_count"
        " FROM users u LEFT JOIN user_property_counts c ON c.user_id = u.id"
        f" WHERE {' AND '.join(conditions)}"
        " ORDER BY u.created_at DESC, u.id DESC LIMIT %s"
    )  # only fixed fragments are formatted in; every value is a parameter
    rows = await fetch(reads, sql, (*params, paging.limit + 1))

    def item(row: dict[str, Any]) -> dict[str, Any]:
        found = {
            "id": row["id"],
            "name": row["name"],
            "propertyCount": row["property_count"],
            "memberSince": format_time(row["created_at"]),
        }
        if is_admin:
            found |= {"role": row["role"], "email": row["email_normalised"], "phone": row["phone"]}
        return found

    return _page(rows, paging.limit, item), fresh
