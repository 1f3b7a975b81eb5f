"""Sinks of the users projection: Postgres `users` (version-guarded, checkpoint in the same
transaction) and Redis `user:{id}` (Lua version guard, checkpoint after the pipeline returns)."""

from collections.abc import Sequence
from typing import Any

from psycopg.rows import class_row
from psycopg_pool import AsyncConnectionPool
from redis.asyncio import Redis

from schemas.read_models import USERS_POSTGRES_CHECKPOINT, idempotency_slots_of, user_key
from streams.checkpoints import raise_checkpoints
from streams.personal_keys import personal_keys
from streams.positions import SourcePosition
from streams.redis_documents import WRITE_IF_NEWER
from streams.users.projection import UserChange, UserRow, opened, redis_document

_REGISTERED = """
INSERT INTO users (id, email_normalised, password_hash, name, phone, role, version, last_event_id, created_at,
    updated_at)
VALUES (%(id)s, %(email)s, %(password_hash)s, %(name)s, %(phone)s, %(role)s, %(version)s, %(event_id)s, %(at)s,
    %(at)s)
ON CONFLICT (id) DO UPDATE SET
    email_normalised = EXCLUDED.email_normalised, password_hash = EXCLUDED.password_hash, name = EXCLUDED.name,
    phone = EXCLUDED.phone, role = EXCLUDED.role, version = EXCLUDED.version,
    last_event_id = EXCLUDED.last_event_id, created_at = EXCLUDED.created_at, updated_at = EXCLUDED.updated_at
WHERE users.version < EXCLUDED.version
"""

# An address is registered again only after its previous account was closed (the registry frees it then),
# but that closing may be projected after the new registration (another partition): take the address
# from the closed account's row first, or the unique index would refuse the new one.
_TAKE_OVER_EMAIL = "UPDATE users SET email_normalised = NULL WHERE email_normalised = %(email)s AND id <> %(id)s"

_PROFILE = """
INSERT INTO users (id, name, phone, version, last_event_id, updated_at)
VALUES (%(id)s, %(name)s, %(phone)s, %(version)s, %(event_id)s, %(at)s)
ON CONFLICT (id) DO UPDATE SET
    name = EXCLUDED.name, phone = EXCLUDED.phone, version = EXCLUDED.version,
    last_event_id = EXCLUDED.last_event_id, updated_at = EXCLUDED.updated_at
WHERE users.version < EXCLUDED.version AND NOT users.deleted
"""

_ERASED = """
INSERT INTO users (id, deleted, deleted_at, version, last_event_id, updated_at)
VALUES (%(id)s, true, %(at)s, %(version)s, %(event_id)s, %(at)s)
ON CONFLICT (id) DO UPDATE SET
    email_normalised = NULL, password_hash = NULL, name = NULL, phone = NULL, deleted = true,
    deleted_at = EXCLUDED.deleted_at, version = EXCLUDED.version, last_event_id = EXCLUDED.last_event_id,
    updated_at = EXCLUDED.updated_at
WHERE users.version < EXCLUDED.version
"""

_TOUCHED = """
INSERT INTO users (id, version, last_event_id, updated_at)
VALUES (%(id)s, %(version)s, %(event_id)s, %(at)s)
ON CONFLICT (id) DO UPDATE SET version = EXCLUDED.version, last_event_id = EXCLUDED.last_event_id
WHERE users.version < EXCLUDED.version
"""

_STATEMENTS = {"registered": _REGISTERED, "profile": _PROFILE, "erased": _ERASED, "touched": _TOUCHED}

_FORGET_KEY = "DELETE FROM user_keys WHERE user_id = %s"

_CURRENT_ROWS = """
SELECT id, email_normalised, name, phone, role, deleted, deleted_at, version, created_at, updated_at
FROM users WHERE id = ANY(%s) ORDER BY id
"""


def _parameters(change: UserChange) -> dict[str, Any]:
    return {
        "id": change.user_id,
        "version": change.version,
        "event_id": change.event_id,
        "at": change.at,
        "email": change.email,
        "password_hash": change.password_hash,
        "name": change.name,
        "phone": change.phone,
        "role": change.role,
    }


class PostgresUserSink:
    def __init__(self, pool: AsyncConnectionPool, projection: str = USERS_POSTGRES_CHECKPOINT) -> None:
        self._pool = pool
        self._projection = projection

    async def apply(self, changes: Sequence[UserChange], positions: Sequence[SourcePosition]) -> list[UserRow]:
        """Apply in order and raise the checkpoint in one transaction; return every touched user's row.
        Personal fields are opened with the users' keys, read in the same transaction; an erasure
        deletes its user's key there too (crypto-shredding: every sealed copy becomes unreadable)."""
        ids = sorted({c.user_id for c in changes})
        async with self._pool.connection() as conn, conn.transaction():
            keys = await personal_keys(conn, ids)
            async with conn.cursor() as cursor:
                for change in changes:
                    await cursor.execute(
                        _STATEMENTS[change.kind], _parameters(opened(change, keys.get(change.user_id)))
                    )
                    if change.kind == "erased":
                        await cursor.execute(_FORGET_KEY, (change.user_id,))
                        keys.pop(change.user_id, None)
            rows: list[UserRow] = []
            if ids:
                async with conn.cursor(row_factory=class_row(UserRow)) as cursor:
                    await cursor.execute(_CURRENT_ROWS, (ids,))
                    rows = await cursor.fetchall()
            await raise_checkpoints(conn, self._projection, positions)
        return rows


# KEYS: user:{id}; ARGV: version, document. Writes only when the stored version is older.
_WRITE_USER = WRITE_IF_NEWER


class RedisUserSink:
    def __init__(self, redis: Redis) -> None:
        self._write_user = redis.register_script(_WRITE_USER)
        self._redis = redis

    async def write(self, rows: Sequence[UserRow]) -> dict[str, str]:
        async with self._redis.pipeline(transaction=False) as pipe:
            for row in rows:
                await self._write_user(keys=[user_key(row.id)], args=[row.version, redis_document(row)], client=pipe)
            results = await pipe.execute(raise_on_error=False)
        for row, result in zip(rows, results, strict=True):
            if row.deleted and result == 1:  # the tombstone just landed: a replay finds it there, sweeps nothing
                await self._forget_answers(row.id)
        return {row.id: str(result) for row, result in zip(rows, results, strict=True) if isinstance(result, Exception)}

    async def _forget_answers(self, user_id: str) -> None:
        """Idempotency records keep a request's answer for a day, and an answer can hold a file's name or
        a listing's title: a closed account's go with it (api/common/idempotency.py names them by user)."""
        stale = [key async for key in self._redis.scan_iter(match=idempotency_slots_of(user_id), count=1000)]
        if stale:
            await self._redis.unlink(*stale)
