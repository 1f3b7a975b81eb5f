"""Sinks of user history: Postgres (a generation's tables) and Redis (each user's recent list).

Postgres, in the caller's transaction (the live projection holds the generation pointer FOR SHARE in
it, a rebuild writes its own generation):
- activities are COPYed into a per-connection staging table and moved with one
  `INSERT … ON CONFLICT (event_id) DO UPDATE … WHERE IS DISTINCT FROM`: a replayed event overwrites its
  own row with the same values, so a replay or a redelivery changes nothing and counts nothing twice;
- property owners and erasures are inserted once (`ON CONFLICT DO NOTHING`);
- the generation's checkpoint is raised (GREATEST) with the batch's highest offsets.
Stats are not a table of counters: they are aggregates over these event-keyed rows, computed when read
(api/user_history/queries.py), so they are absolute by construction.

What a closed account leaves in history (`user.deleted.v1`): its activities are deleted, except its
views of listings, which stay as anonymous views (no user) because they are part of other people's
"views received". The erasure is remembered in `erased_users`, so the same account's events read later
(from another topic, in a replay or a rebuild, in any order) are dropped or anonymised on the way in,
and the result is the same whichever came first. Redis: the recent list is deleted and a tombstone key
stops any late write from bringing it back. Activities never held email, phone or name to begin with.
"""

from collections.abc import Iterable, Sequence
from typing import Any

import orjson
from psycopg import AsyncConnection, sql
from redis.asyncio import Redis

from schemas.history import RECENT_SIZE, VIEWED, activity_document, recent_keys
from streams.checkpoints import raise_checkpoints
from streams.history.generations import Generation
from streams.history.projection import Activity, Erasure, HistoryPlan, OwnerFact

_STAGING = """
CREATE TEMP TABLE IF NOT EXISTS history_incoming (
    event_id text, user_id text, activity_type text, category text, event_type text, subject text,
    property_id text, occurred_at timestamptz, summary text, details jsonb,
    source_topic text, source_partition integer, source_offset bigint
) ON COMMIT DELETE ROWS
"""

_COPY = """COPY history_incoming (event_id, user_id, activity_type, category, event_type, subject, property_id,
    occurred_at, summary, details, source_topic, source_partition, source_offset) FROM STDIN"""

ACTIVITY_COLUMNS = (
    "user_id",
    "activity_type",
    "category",
    "event_type",
    "subject",
    "property_id",
    "occurred_at",
    "summary",
    "details",
    "source_topic",
    "source_partition",
    "source_offset",
)

# An erased user's rows coming in: views arrive anonymous, everything else not at all.
_MOVE = sql.SQL(
    """
INSERT INTO {activities} AS a (event_id, {columns})
SELECT i.event_id, CASE WHEN e.user_id IS NULL THEN i.user_id END, {rest}
FROM history_incoming i LEFT JOIN {erased} e ON e.user_id = i.user_id
WHERE e.user_id IS NULL OR i.activity_type = 'property.viewed'
ON CONFLICT (event_id) DO UPDATE SET {updates}
WHERE ({current}) IS DISTINCT FROM ({excluded})
"""
)

_INSERT_OWNERS = sql.SQL(
    """
INSERT INTO {owners} (property_id, owner_id, source_topic, source_partition, source_offset)
SELECT * FROM unnest(%s::text[], %s::text[], %s::text[], %s::integer[], %s::bigint[])
ON CONFLICT (property_id) DO NOTHING
"""
)

_INSERT_ERASURES = sql.SQL(
    """
INSERT INTO {erased} (user_id, event_id, erased_at, source_topic, source_partition, source_offset)
SELECT * FROM unnest(%s::text[], %s::text[], %s::timestamptz[], %s::text[], %s::integer[], %s::bigint[])
ON CONFLICT (user_id) DO NOTHING
"""
)

_FORGET = sql.SQL("DELETE FROM {activities} WHERE user_id = ANY(%s) AND activity_type <> 'property.viewed'")
_ANONYMISE = sql.SQL("UPDATE {activities} SET user_id = NULL WHERE user_id = ANY(%s) AND activity_type = %s")
_FORGET_ALL = sql.SQL(
    "DELETE FROM {activities} a USING {erased} e WHERE a.user_id = e.user_id AND a.activity_type <> 'property.viewed'"
)
_ANONYMISE_ALL = sql.SQL(
    "UPDATE {activities} a SET user_id = NULL FROM {erased} e WHERE a.user_id = e.user_id AND a.activity_type = %s"
)


def _move_statement(generation: Generation) -> sql.Composed:
    return _MOVE.format(
        activities=generation.table("activities"),
        erased=generation.table("erased_users"),
        columns=sql.SQL(", ").join(sql.Identifier(c) for c in ACTIVITY_COLUMNS),
        rest=sql.SQL(", ").join(sql.SQL("i.") + sql.Identifier(c) for c in ACTIVITY_COLUMNS[1:]),
        updates=sql.SQL(", ").join(sql.SQL("{c} = EXCLUDED.{c}").format(c=sql.Identifier(c)) for c in ACTIVITY_COLUMNS),
        current=sql.SQL(", ").join(sql.SQL("a.") + sql.Identifier(c) for c in ACTIVITY_COLUMNS),
        excluded=sql.SQL(", ").join(sql.SQL("EXCLUDED.") + sql.Identifier(c) for c in ACTIVITY_COLUMNS),
    )


def _copy_row(activity: Activity) -> tuple[Any, ...]:
    position = activity.position
    return (
        activity.event_id,
        activity.user_id,
        activity.activity_type,
        activity.category,
        activity.event_type,
        activity.subject,
        activity.property_id,
        activity.occurred_at,
        activity.summary,
        orjson.dumps(activity.details).decode(),
        position.topic,
        position.partition,
        position.offset,
    )


def unique_by_event(activities: Iterable[Activity]) -> list[Activity]:
    """One row per event id (a re-decided command's events come again with the same ids): the last wins,
    as it would row by row."""
    return list({a.event_id: a for a in activities}.values())


class PostgresHistorySink:
    """Writes plans into a generation, in the caller's transaction."""

    async def write(
        self, conn: AsyncConnection[Any], generation: Generation, plan: HistoryPlan, *, defer_erasures: bool = False
    ) -> set[str]:
        """Returns the erased users among the batch's, whose activities must not reach Redis.
        `defer_erasures`: a bulk load leaves removing rows that were in before their erasure to
        `apply_erasures` once at the end (without indexes yet, each would be a scan of the table)."""
        await self.record_erasures(conn, generation, plan.erasures)
        await self.record_owners(conn, generation, plan.owners)
        activities = unique_by_event(plan.activities)
        if activities:
            await conn.execute(_STAGING)
            async with conn.cursor() as cursor:
                async with cursor.copy(_COPY) as copy:
                    for activity in activities:
                        await copy.write_row(_copy_row(activity))
                await cursor.execute(_move_statement(generation))
        if plan.erasures and not defer_erasures:
            await self.forget(conn, generation, sorted({e.user_id for e in plan.erasures}))
        await raise_checkpoints(conn, generation.postgres_checkpoint, plan.positions)
        users = sorted({a.user_id for a in activities if a.user_id is not None} | {e.user_id for e in plan.erasures})
        if not users:
            return set()
        cursor = await conn.execute(
            sql.SQL("SELECT user_id FROM {erased} WHERE user_id = ANY(%s)").format(
                erased=generation.table("erased_users")
            ),
            (users,),
        )
        return {row[0] for row in await cursor.fetchall()}

    async def record_erasures(
        self, conn: AsyncConnection[Any], generation: Generation, erasures: Sequence[Erasure]
    ) -> None:
        if not erasures:
            return
        await conn.execute(
            _INSERT_ERASURES.format(erased=generation.table("erased_users")),
            (
                [e.user_id for e in erasures],
                [e.event_id for e in erasures],
                [e.at for e in erasures],
                [e.position.topic for e in erasures],
                [e.position.partition for e in erasures],
                [e.position.offset for e in erasures],
            ),
        )

    async def record_owners(
        self, conn: AsyncConnection[Any], generation: Generation, owners: Sequence[OwnerFact]
    ) -> None:
        if not owners:
            return
        await conn.execute(
            _INSERT_OWNERS.format(owners=generation.table("property_owners")),
            (
                [o.property_id for o in owners],
                [o.owner_id for o in owners],
                [o.position.topic for o in owners],
                [o.position.partition for o in owners],
                [o.position.offset for o in owners],
            ),
        )

    async def forget(self, conn: AsyncConnection[Any], generation: Generation, user_ids: list[str]) -> None:
        """Apply erasures to rows already in: delete the users' activities, anonymise their views."""
        activities = generation.table("activities")
        await conn.execute(_FORGET.format(activities=activities), (user_ids,))
        await conn.execute(_ANONYMISE.format(activities=activities), (user_ids, VIEWED))

    async def erase_in(self, conn: AsyncConnection[Any], generation: Generation, erasures: Sequence[Erasure]) -> None:
        """Erasures reach snapshots too: a point-in-time copy keeps history as it was, minus closed accounts."""
        if erasures:
            await self.record_erasures(conn, generation, erasures)
            await self.forget(conn, generation, sorted({e.user_id for e in erasures}))

    async def apply_erasures(self, conn: AsyncConnection[Any], generation: Generation) -> None:
        """Every recorded erasure applied to every row at once (the end of a bulk load)."""
        tables = {"activities": generation.table("activities"), "erased": generation.table("erased_users")}
        await conn.execute(_FORGET_ALL.format(**tables))
        await conn.execute(_ANONYMISE_ALL.format(**tables), (VIEWED,))


# ---- Redis: each user's most recent activities ----

# KEYS: the sorted set (event ids scored by event time in ms), the hash (event id -> activity JSON), the
# user's erasure tombstone. ARGV: how many to keep, then (id, score, document) triples. Trimming keeps the
# newest `keep` whatever order activities arrive in (ties: the larger event id is newer, as in Postgres),
# so a replay, a redelivery or a rebuild all converge on the same list.
_ADD_RECENT = """
if redis.call('EXISTS', KEYS[3]) == 1 then return 0 end
local keep = tonumber(ARGV[1])
for i = 2, #ARGV, 3 do
  redis.call('ZADD', KEYS[1], ARGV[i + 1], ARGV[i])
  redis.call('HSET', KEYS[2], ARGV[i], ARGV[i + 2])
end
local extra = redis.call('ZCARD', KEYS[1]) - keep
if extra > 0 then
  local gone = redis.call('ZRANGE', KEYS[1], 0, extra - 1)
  redis.call('ZREMRANGEBYRANK', KEYS[1], 0, extra - 1)
  for i = 1, #gone, 1000 do
    redis.call('HDEL', KEYS[2], unpack(gone, i, math.min(i + 999, #gone)))
  end
end
return 1
"""

# One user's list replaced as a whole (a one-user rebuild): built under a scratch key, renamed over.
_REPLACE_RECENT = """
redis.call('DEL', KEYS[4], KEYS[5])
for i = 1, #ARGV, 3 do
  redis.call('ZADD', KEYS[4], ARGV[i + 1], ARGV[i])
  redis.call('HSET', KEYS[5], ARGV[i], ARGV[i + 2])
end
if redis.call('EXISTS', KEYS[3]) == 1 or #ARGV == 0 then
  redis.call('DEL', KEYS[1], KEYS[2], KEYS[4], KEYS[5])
  return 0
end
redis.call('RENAME', KEYS[4], KEYS[1])
redis.call('RENAME', KEYS[5], KEYS[2])
return 1
"""


def _score(activity: Activity) -> int:
    return int(activity.occurred_at.timestamp() * 1000)


def tombstone_key(generation: Generation, user_id: str) -> str:
    return f"{generation.redis_prefix}erased:{user_id}"


class RedisRecentSink:
    def __init__(self, redis: Redis, keep: int = RECENT_SIZE) -> None:
        self._redis = redis
        self._keep = keep
        self._add = redis.register_script(_ADD_RECENT)
        self._replace = redis.register_script(_REPLACE_RECENT)

    async def write(
        self, generation: Generation, activities: Iterable[Activity], erased: set[str], erasures: Iterable[Erasure] = ()
    ) -> None:
        by_user: dict[str, list[Activity]] = {}
        for activity in activities:
            if activity.user_id is not None and activity.user_id not in erased:
                by_user.setdefault(activity.user_id, []).append(activity)
        async with self._redis.pipeline(transaction=False) as pipe:
            for user_id in sorted({e.user_id for e in erasures}):
                zset, docs = recent_keys(generation.namespace, generation.number, user_id)
                pipe.set(tombstone_key(generation, user_id), b"1")
                pipe.delete(zset, docs)
            for user_id, mine in by_user.items():
                await self._queue_add(pipe, generation, user_id, mine)
            await pipe.execute()

    async def _queue_add(self, pipe: Any, generation: Generation, user_id: str, activities: Sequence[Activity]) -> None:
        # Only the newest `keep` of a batch can survive the trim; sending more is wasted work.
        newest = sorted(activities, key=lambda a: (_score(a), a.event_id))[-self._keep :]
        zset, docs = recent_keys(generation.namespace, generation.number, user_id)
        args: list[Any] = [self._keep]
        for activity in newest:
            args += [activity.event_id, _score(activity), orjson.dumps(activity.document())]
        await self._add(keys=[zset, docs, tombstone_key(generation, user_id)], args=args, client=pipe)

    async def load(self, generation: Generation, newest: dict[str, list[tuple[str, int, bytes]]]) -> None:
        """Fill a fresh generation's lists from Postgres (after a bulk load): `newest` holds each user's
        newest (event id, score, document). Nothing else writes this generation's keys yet and erased
        users have no rows, so plain commands do (one ZADD and one HSET per user, not a script)."""
        users = list(newest)
        for start in range(0, len(users), 500):
            async with self._redis.pipeline(transaction=False) as pipe:
                for user_id in users[start : start + 500]:
                    zset, docs = recent_keys(generation.namespace, generation.number, user_id)
                    pipe.zadd(zset, {event_id: score for event_id, score, _ in newest[user_id]})
                    pipe.hset(docs, mapping={event_id: document for event_id, _, document in newest[user_id]})
                await pipe.execute()

    async def replace(self, generation: Generation, user_id: str, rows: Sequence[dict[str, Any]]) -> None:
        zset, docs = recent_keys(generation.namespace, generation.number, user_id)
        args: list[Any] = []
        for row in rows[: self._keep]:
            args += [row["event_id"], int(row["occurred_at"].timestamp() * 1000), row_document(row)]
        await self._replace(
            keys=[zset, docs, tombstone_key(generation, user_id), zset + ":rebuilding", docs + ":rebuilding"], args=args
        )

    async def erase(self, generation: Generation, user_ids: Iterable[str]) -> None:
        async with self._redis.pipeline(transaction=False) as pipe:
            for user_id in user_ids:
                zset, docs = recent_keys(generation.namespace, generation.number, user_id)
                pipe.set(tombstone_key(generation, user_id), b"1")
                pipe.delete(zset, docs)
            await pipe.execute()


def row_document(row: dict[str, Any]) -> bytes:
    """An `activities` row as the same JSON the projection writes to Redis."""
    return orjson.dumps(
        activity_document(
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
    )
