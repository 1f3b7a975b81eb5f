"""Sinks of the notification projection: Postgres (notifications, channel states, preferences, unread
counts; checkpoint `notifications-postgres` in the same transaction) and Redis (unread counts, Lua
version guard; checkpoint `notifications-redis` after the pipeline returns).

Order and idempotency: a notification's events share a partition and every column only moves one way
(into the inbox, read, deleted), so a redelivered event changes nothing; channel states and preferences
carry the offset that produced them and apply only when newer. Unread counts are recounted (absolute)
under a per-user advisory lock and get a version that only grows; Redis keeps the newest.
"""

from collections.abc import Sequence
from typing import Any

import orjson
from psycopg import AsyncCursor
from psycopg.types.json import Jsonb
from psycopg_pool import AsyncConnectionPool
from redis.asyncio import Redis

from schemas.notifications import in_app, open_message, open_search_name
from schemas.personal import UnreadablePersonalData
from schemas.read_models import NOTIFICATIONS_POSTGRES_CHECKPOINT, unread_notifications_key
from streams.checkpoints import raise_checkpoints
from streams.notifications.projection import (
    BlockSet,
    Change,
    ChannelState,
    EnteredInbox,
    Erased,
    MarkedRead,
    PreferencesSet,
    Recorded,
    Removed,
    touched_users,
)
from streams.positions import SourcePosition
from streams.redis_documents import WRITE_IF_NEWER

_NOT_ERASED = "NOT EXISTS (SELECT 1 FROM notification_erased_users e WHERE e.user_id = %(user_id)s)"

_RECORD = f"""
INSERT INTO notifications (id, user_id, requested_by, kind, channel, title, body, data, created_at, updated_at)
SELECT %(id)s, %(user_id)s, %(requested_by)s, %(kind)s, %(channel)s, %(title)s, %(body)s, %(data)s, %(at)s, %(at)s
WHERE {_NOT_ERASED}
ON CONFLICT (id) DO NOTHING
"""

_INBOX = """
UPDATE notifications SET in_app = true, delivered_at = COALESCE(delivered_at, %(at)s), updated_at = %(at)s
WHERE id = %(id)s AND NOT in_app
"""

# A final state (sent, failed, suppressed) is never replaced by a passing one (deferred).
_CHANNEL_STATE = f"""
INSERT INTO notification_channel_states (notification_id, channel, state, attempts, detail, until_at, event_offset,
    updated_at)
SELECT %(id)s, %(channel)s, %(state)s, %(attempts)s, %(detail)s, %(until)s, %(offset)s, %(at)s
WHERE {_NOT_ERASED}
ON CONFLICT (notification_id, channel) DO UPDATE SET
    state = EXCLUDED.state, attempts = EXCLUDED.attempts, detail = EXCLUDED.detail, until_at = EXCLUDED.until_at,
    event_offset = EXCLUDED.event_offset, updated_at = EXCLUDED.updated_at
WHERE notification_channel_states.event_offset < EXCLUDED.event_offset
    AND NOT (notification_channel_states.state IN ('sent', 'failed', 'suppressed') AND EXCLUDED.state = 'deferred')
"""

_READ = """
UPDATE notifications SET read_at = %(at)s, updated_at = %(at)s
WHERE id = %(id)s AND user_id = %(user_id)s AND read_at IS NULL
"""

_REMOVE = """
UPDATE notifications SET deleted_at = %(at)s, updated_at = %(at)s
WHERE id = %(id)s AND user_id = %(user_id)s AND deleted_at IS NULL
"""

_PREFERENCES = f"""
INSERT INTO notification_preferences (user_id, preferences, version, updated_at)
SELECT %(user_id)s, %(preferences)s, %(version)s, %(at)s
WHERE {_NOT_ERASED}
ON CONFLICT (user_id) DO UPDATE SET
    preferences = EXCLUDED.preferences, version = EXCLUDED.version, updated_at = EXCLUDED.updated_at
WHERE notification_preferences.version < EXCLUDED.version
"""

_BLOCK = f"""
INSERT INTO notification_blocks (user_id, sender_id, blocked, version, updated_at)
SELECT %(user_id)s, %(sender_id)s, %(blocked)s, %(version)s, %(at)s
WHERE {_NOT_ERASED}
ON CONFLICT (user_id, sender_id) DO UPDATE SET
    blocked = EXCLUDED.blocked, version = EXCLUDED.version, updated_at = EXCLUDED.updated_at
WHERE notification_blocks.version < EXCLUDED.version
"""

# What a message says, in the inbox of someone whose correspondent closed their account.
UNREADABLE_MESSAGE = "A message that can no longer be read: its sender or recipient closed their account"

_ERASE = (
    """INSERT INTO notification_erased_users (user_id, erased_at) VALUES (%(user_id)s, %(at)s)
    ON CONFLICT (user_id) DO NOTHING""",
    """DELETE FROM notification_channel_states
    WHERE notification_id IN (SELECT id FROM notifications WHERE user_id = %(user_id)s)""",
    "DELETE FROM notifications WHERE user_id = %(user_id)s",
    "DELETE FROM notification_preferences WHERE user_id = %(user_id)s",
    "DELETE FROM notification_blocks WHERE user_id = %(user_id)s OR sender_id = %(user_id)s",
    # The messages they wrote stay in their recipients' inboxes, but no longer say anything.
    """UPDATE notifications SET title = %(unreadable)s, body = '', updated_at = %(at)s
    WHERE requested_by = %(user_id)s AND kind = 'message' AND title <> %(unreadable)s""",
)

# The keys that open a message or an alert's saved-search name: none for a user already erased here,
# even if the user projection has not deleted their key yet (the inbox must not be written in the clear
# after the erasure).
_MESSAGE_KEYS = """
SELECT k.user_id, k.key FROM user_keys k
WHERE k.user_id = ANY(%s) AND NOT EXISTS (SELECT 1 FROM notification_erased_users e WHERE e.user_id = k.user_id)
"""

_LOCK_USERS = "SELECT pg_advisory_xact_lock(hashtext('notification_unread:' || u)) FROM unnest(%s::text[]) u"

_RECOUNT = """
INSERT INTO notification_unread_counts (user_id, unread, version)
SELECT u.user_id, count(n.id), 1
FROM unnest(%s::text[]) AS u(user_id)
LEFT JOIN notifications n ON n.user_id = u.user_id AND n.in_app AND n.deleted_at IS NULL AND n.read_at IS NULL
GROUP BY u.user_id
ON CONFLICT (user_id) DO UPDATE SET unread = EXCLUDED.unread, version = notification_unread_counts.version + 1
RETURNING user_id, unread, version
"""


async def _keys(cursor: AsyncCursor[Any], user_ids: list[str]) -> dict[str, bytes]:
    await cursor.execute(_MESSAGE_KEYS, (user_ids,))
    return {user_id: bytes(key) for user_id, key in await cursor.fetchall()}


async def _alert_text(cursor: AsyncCursor[Any], change: Recorded) -> tuple[str, str]:
    """A listing alert's (title, body), its saved search named only while the recipient's key opens it."""
    assert change.alert is not None
    keys = await _keys(cursor, [change.user_id]) if change.user_id else {}
    return in_app(open_search_name(change.alert, change.user_id, keys.get(change.user_id or "")))


async def _opened(cursor: AsyncCursor[Any], change: Recorded) -> tuple[str, str]:
    """A message's (title, body) opened with both people's keys, or the unreadable placeholder."""
    assert change.message is not None and change.requested_by is not None and change.user_id is not None
    keys = await _keys(cursor, [change.requested_by, change.user_id])
    sender, recipient = keys.get(change.requested_by), keys.get(change.user_id)
    if sender is None or recipient is None:
        return UNREADABLE_MESSAGE, ""
    try:
        opened = open_message(change.message, (change.requested_by, sender), (change.user_id, recipient))
    except UnreadablePersonalData:
        return UNREADABLE_MESSAGE, ""
    return in_app(opened)


async def _apply(cursor: AsyncCursor[Any], change: Change) -> None:
    if isinstance(change, Recorded):
        if change.message is not None:
            title, body = await _opened(cursor, change)
        elif change.alert is not None:
            title, body = await _alert_text(cursor, change)
        else:
            title, body = change.title, change.body
        await cursor.execute(
            _RECORD,
            {
                "id": change.notification_id,
                "user_id": change.user_id,
                "requested_by": change.requested_by,
                "kind": change.kind,
                "channel": change.channel,
                "title": title,
                "body": body,
                "data": Jsonb(change.data),
                "at": change.at,
            },
        )
    elif isinstance(change, EnteredInbox):
        await cursor.execute(_INBOX, {"id": change.notification_id, "at": change.at})
    elif isinstance(change, ChannelState):
        await cursor.execute(
            _CHANNEL_STATE,
            {
                "id": change.notification_id,
                "user_id": change.user_id,
                "channel": change.channel,
                "state": change.state,
                "attempts": change.attempts,
                "detail": change.detail,
                "until": change.until,
                "offset": change.offset,
                "at": change.at,
            },
        )
    elif isinstance(change, MarkedRead):
        await cursor.execute(_READ, {"id": change.notification_id, "user_id": change.user_id, "at": change.at})
    elif isinstance(change, Removed):
        await cursor.execute(_REMOVE, {"id": change.notification_id, "user_id": change.user_id, "at": change.at})
    elif isinstance(change, PreferencesSet):
        await cursor.execute(
            _PREFERENCES,
            {
                "user_id": change.user_id,
                "preferences": Jsonb(change.preferences),
                "version": change.version,
                "at": change.at,
            },
        )
    elif isinstance(change, BlockSet):
        await cursor.execute(
            _BLOCK,
            {
                "user_id": change.user_id,
                "sender_id": change.sender_id,
                "blocked": change.blocked,
                "version": change.version,
                "at": change.at,
            },
        )
    elif isinstance(change, Erased):
        for statement in _ERASE:
            await cursor.execute(
                statement, {"user_id": change.user_id, "at": change.at, "unreadable": UNREADABLE_MESSAGE}
            )


UnreadCounts = dict[str, tuple[int, int]]  # user id -> (unread, version)


class PostgresNotificationSink:
    def __init__(self, pool: AsyncConnectionPool, projection: str = NOTIFICATIONS_POSTGRES_CHECKPOINT) -> None:
        self._pool = pool
        self._projection = projection

    async def apply(self, changes: Sequence[Change], positions: Sequence[SourcePosition]) -> UnreadCounts:
        """Apply in order, recount the touched users' unread notifications, raise the checkpoint: one
        transaction. Returns the new counts with their versions, for Redis."""
        users = touched_users(changes)
        counts: UnreadCounts = {}
        async with self._pool.connection() as conn, conn.transaction():
            async with conn.cursor() as cursor:
                for change in changes:
                    await _apply(cursor, change)
                if users:
                    await cursor.execute(_LOCK_USERS, (users,))
                    await cursor.execute(_RECOUNT, (users,))
                    counts = {user: (unread, version) for user, unread, version in await cursor.fetchall()}
            await raise_checkpoints(conn, self._projection, positions)
        return counts


# KEYS: notifications:unread:{id}; ARGV: version, document. Writes only when the stored version is older.
_WRITE_COUNT = WRITE_IF_NEWER


class RedisUnreadSink:
    def __init__(self, redis: Redis) -> None:
        self._write = redis.register_script(_WRITE_COUNT)
        self._redis = redis

    async def write(self, counts: UnreadCounts) -> None:
        if not counts:
            return
        async with self._redis.pipeline(transaction=False) as pipe:
            for user_id, (unread, version) in sorted(counts.items()):
                document = orjson.dumps({"unread": unread, "version": version})
                await self._write(keys=[unread_notifications_key(user_id)], args=[version, document], client=pipe)
            await pipe.execute()
