"""The delivery reactor's Postgres: its durable schedule (`notification_deliveries`) and what it reads at
the moment of sending (the users read model for addresses, `notification_preferences`).

The schedule is the reactor's memory across crashes: a request is stored before its Kafka offset is
committed, a claimed row carries a lease (a crashed worker's rows are taken over when it expires), and
an outcome is stored before its event is produced (`report`), so no outcome goes unreported.
"""

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from psycopg.rows import class_row
from psycopg_pool import AsyncConnectionPool

from schemas.notifications import DEFAULT_PREFERENCES, Preferences
from streams.notifications.policy import Intake, Recipient

_INTAKE = """
INSERT INTO notification_deliveries (dispatcher, notification_id, channel, user_id, kind, due_at, request_key, request,
    source_topic, source_partition, source_offset, requested_at)
VALUES (%s, %s, %s, %s, %s, now(), %s, %s, %s, %s, %s, %s)
ON CONFLICT (dispatcher, notification_id, channel) DO NOTHING
"""

# Due rows, and rows whose lease ran out (their worker died mid-send), oldest first.
_CLAIM = """
WITH due AS (
    SELECT notification_id, channel FROM notification_deliveries
    WHERE dispatcher = %(dispatcher)s AND (
        (state = 'pending' AND due_at <= now()) OR (state = 'sending' AND lease_until < now()))
    ORDER BY due_at
    LIMIT %(limit)s
    FOR UPDATE SKIP LOCKED
)
UPDATE notification_deliveries d
SET state = 'sending', lease_until = now() + make_interval(secs => %(lease)s), updated_at = now()
FROM due
WHERE d.dispatcher = %(dispatcher)s AND d.notification_id = due.notification_id AND d.channel = due.channel
RETURNING d.notification_id, d.channel, d.user_id, d.kind, d.attempts, d.deferred_until, d.request_key, d.request,
    d.source_topic, d.source_partition, d.source_offset
"""

# Seconds until this dispatcher has something to do: a pending delivery due, or a lease running out.
_NEXT_DUE = """
SELECT extract(epoch FROM least(
    (SELECT min(due_at) FROM notification_deliveries WHERE dispatcher = %(dispatcher)s AND state = 'pending'),
    (SELECT min(lease_until) FROM notification_deliveries WHERE dispatcher = %(dispatcher)s AND state = 'sending')
) - now())
"""

_FINISH = """
UPDATE notification_deliveries
SET state = %(state)s, attempts = %(attempts)s, due_at = COALESCE(%(due_at)s, due_at), lease_until = NULL,
    deferred_until = COALESCE(%(deferred_until)s, deferred_until), last_error = %(error)s,
    permanent = %(permanent)s, provider_id = %(provider_id)s, report = %(report)s, updated_at = now()
WHERE dispatcher = %(dispatcher)s AND notification_id = %(notification_id)s AND channel = %(channel)s
    AND state = 'sending'
"""

# Outcomes stored but not reported: the worker stopped between the two. Left a few seconds to the
# worker that stored them, which reports them at once.
_UNREPORTED = """
SELECT notification_id, channel, user_id, kind, attempts, deferred_until, request_key, request, source_topic,
    source_partition, source_offset, report, last_error, permanent, provider_id, state
FROM notification_deliveries
WHERE dispatcher = %s AND report IS NOT NULL AND state <> 'sending' AND updated_at < now() - interval '5 seconds'
LIMIT %s
"""

_REPORTED = """
UPDATE notification_deliveries SET report = NULL
WHERE dispatcher = %s AND notification_id = %s AND channel = %s AND report = %s
"""

_RECIPIENTS = "SELECT id, email_normalised, phone, name, deleted FROM users WHERE id = ANY(%s)"
_PREFERENCES = "SELECT user_id, preferences FROM notification_preferences WHERE user_id = ANY(%s)"
_ERASE = "DELETE FROM notification_deliveries WHERE user_id = ANY(%s)"
# The keys that open messages (schemas.notifications.open_message), and who blocked whom (the projection's).
_KEYS = "SELECT user_id, key FROM user_keys WHERE user_id = ANY(%s)"
_BLOCKED = """
SELECT b.user_id, b.sender_id FROM notification_blocks b
JOIN unnest(%s::text[], %s::text[]) AS p(user_id, sender_id) ON b.user_id = p.user_id AND b.sender_id = p.sender_id
WHERE b.blocked
"""


@dataclass(frozen=True)
class Claimed:
    notification_id: str
    channel: str
    user_id: str | None
    kind: str
    attempts: int
    deferred_until: datetime | None
    request_key: bytes | None
    request: bytes
    source_topic: str
    source_partition: int
    source_offset: int


@dataclass(frozen=True)
class Unreported:
    notification_id: str
    channel: str
    user_id: str | None
    kind: str
    attempts: int
    deferred_until: datetime | None
    request_key: bytes | None
    request: bytes
    source_topic: str
    source_partition: int
    source_offset: int
    report: str
    last_error: str | None
    permanent: bool
    provider_id: str | None
    state: str


@dataclass(frozen=True)
class Finished:
    """A claimed row's new state; `report` names the event to produce for it (or None)."""

    notification_id: str
    channel: str
    state: str  # pending (retry or deferred), sent, failed, suppressed
    attempts: int
    report: str | None
    due_at: datetime | None = None
    deferred_until: datetime | None = None
    error: str | None = None
    permanent: bool = False
    provider_id: str | None = None


class DeliveryStore:
    def __init__(self, pool: AsyncConnectionPool, dispatcher: str) -> None:
        self._pool = pool
        self.dispatcher = dispatcher

    async def intake(self, deliveries: Sequence[Intake]) -> None:
        if not deliveries:
            return
        rows = [
            (
                self.dispatcher,
                d.notification_id,
                d.channel.value,
                d.user_id,
                d.kind.value,
                d.record.key,
                d.record.value or b"",
                d.record.position.topic,
                d.record.position.partition,
                d.record.position.offset,
                d.requested_at,
            )
            for d in deliveries
        ]
        async with self._pool.connection() as conn, conn.transaction(), conn.cursor() as cursor:
            await cursor.executemany(_INTAKE, rows)

    async def claim(self, limit: int, lease_seconds: float) -> list[Claimed]:
        async with self._pool.connection() as conn, conn.transaction():
            async with conn.cursor(row_factory=class_row(Claimed)) as cursor:
                await cursor.execute(_CLAIM, {"dispatcher": self.dispatcher, "limit": limit, "lease": lease_seconds})
                claimed = await cursor.fetchall()
        for row in claimed:
            object.__setattr__(row, "request_key", bytes(row.request_key) if row.request_key is not None else None)
            object.__setattr__(row, "request", bytes(row.request))
        return claimed

    async def next_due(self) -> float | None:
        """Seconds until a delivery falls due or a lease runs out (<= 0: now); None when none waits."""
        async with self._pool.connection() as conn:
            row = await (await conn.execute(_NEXT_DUE, {"dispatcher": self.dispatcher})).fetchone()
        return None if row is None or row[0] is None else float(row[0])

    async def finish(self, outcomes: Sequence[Finished]) -> None:
        if not outcomes:
            return
        params: list[dict[str, Any]] = [
            {
                "dispatcher": self.dispatcher,
                "notification_id": o.notification_id,
                "channel": o.channel,
                "state": o.state,
                "attempts": o.attempts,
                "due_at": o.due_at,
                "deferred_until": o.deferred_until,
                "error": o.error,
                "permanent": o.permanent,
                "provider_id": o.provider_id,
                "report": o.report,
            }
            for o in outcomes
        ]
        async with self._pool.connection() as conn, conn.transaction(), conn.cursor() as cursor:
            await cursor.executemany(_FINISH, params)

    async def unreported(self, limit: int) -> list[Unreported]:
        async with self._pool.connection() as conn, conn.cursor(row_factory=class_row(Unreported)) as cursor:
            await cursor.execute(_UNREPORTED, (self.dispatcher, limit))
            rows = await cursor.fetchall()
        for row in rows:
            object.__setattr__(row, "request_key", bytes(row.request_key) if row.request_key is not None else None)
            object.__setattr__(row, "request", bytes(row.request))
        return rows

    async def reported(self, done: Sequence[tuple[str, str, str]]) -> None:
        """(notification id, channel, report) whose event the broker has acknowledged."""
        if not done:
            return
        async with self._pool.connection() as conn, conn.transaction(), conn.cursor() as cursor:
            await cursor.executemany(_REPORTED, [(self.dispatcher, n, c, r) for n, c, r in done])

    async def recipients(self, user_ids: Sequence[str]) -> dict[str, Recipient]:
        if not user_ids:
            return {}
        async with self._pool.connection() as conn:
            cursor = await conn.execute(_RECIPIENTS, (list(user_ids),))
            return {
                row[0]: Recipient(user_id=row[0], email=row[1], phone=row[2], name=row[3], deleted=row[4])
                for row in await cursor.fetchall()
            }

    async def preferences(self, user_ids: Sequence[str]) -> dict[str, Preferences]:
        if not user_ids:
            return {}
        async with self._pool.connection() as conn:
            cursor = await conn.execute(_PREFERENCES, (list(user_ids),))
            found = {row[0]: Preferences.model_validate(row[1]) for row in await cursor.fetchall()}
        return {user_id: found.get(user_id, DEFAULT_PREFERENCES) for user_id in user_ids}

    async def erase_users(self, user_ids: Sequence[str]) -> None:
        """A closed account's pending (and past) deliveries go: nothing about them is sent any more."""
        if not user_ids:
            return
        async with self._pool.connection() as conn, conn.transaction():
            await conn.execute(_ERASE, (list(user_ids),))

    async def keys(self, user_ids: Sequence[str]) -> dict[str, bytes]:
        """The personal keys of those still with an account (a closed account's key is gone)."""
        if not user_ids:
            return {}
        async with self._pool.connection() as conn:
            cursor = await conn.execute(_KEYS, (list(user_ids),))
            return {row[0]: bytes(row[1]) for row in await cursor.fetchall()}

    async def blocked(self, pairs: Sequence[tuple[str, str]]) -> set[tuple[str, str]]:
        """Of these (recipient, sender) pairs, those where the recipient blocked the sender."""
        if not pairs:
            return set()
        async with self._pool.connection() as conn:
            cursor = await conn.execute(_BLOCKED, ([p[0] for p in pairs], [p[1] for p in pairs]))
            return {(row[0], row[1]) for row in await cursor.fetchall()}
