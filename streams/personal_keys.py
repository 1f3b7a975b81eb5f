"""The people's keys (Postgres `user_keys`, `schemas/personal.py`) as the projections read them, to open
what those people's events carry sealed. A user without a row has none: closed, or never given one."""

from collections.abc import Collection
from typing import Any

from psycopg import AsyncConnection

_KEYS = "SELECT user_id, key FROM user_keys WHERE user_id = ANY(%s)"


async def personal_keys(conn: AsyncConnection[Any], user_ids: Collection[str]) -> dict[str, bytes]:
    if not user_ids:
        return {}
    cursor = await conn.execute(_KEYS, (sorted(user_ids),))
    return {user_id: bytes(key) for user_id, key in await cursor.fetchall()}
