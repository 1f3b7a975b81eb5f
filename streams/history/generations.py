"""History generations: one Postgres schema each, a pointer naming the live one, and the swap.

A generation's tables (`user_history_<ns>_g<N>`):
- `activities`: one row per activity, keyed by event id; every column comes from the event and its
  Kafka position, so replaying an event writes the same row again (never a second one).
- `property_owners`: property id -> owner, for "views received on own listings".
- `erased_users`: closed accounts; rows of theirs arriving later (other topics, a replay) are dropped.
Positions applied are in `projection_checkpoints` under the generation's own names.

Secondary indexes are created with the tables for a generation that starts live, and after the bulk
load for a rebuilt one (building an index once over loaded rows is several times cheaper than keeping
it up to date row by row).

The pointer (`user_history_live`) is read FOR SHARE by every live batch and updated by a swap, so a
batch is written wholly to the old or wholly to the new generation. Readers (the API) read it at the
start of each query; a reader that still named a generation dropped meanwhile retries (see
api/user_history/queries.py), so queries never fail across a swap.
"""

import logging
from dataclasses import dataclass
from typing import Any

from psycopg import AsyncConnection, sql
from psycopg_pool import AsyncConnectionPool
from redis.asyncio import Redis

from schemas.history import (
    generation_schema,
    postgres_checkpoint,
    redis_checkpoint,
    redis_prefix,
)

log = logging.getLogger("streams.history.generations")

_TABLES = (
    # Ties in time are broken by event id, in byte order as Redis orders equal scores, whatever the
    # database's default collation.
    """CREATE TABLE {s}.activities (
        event_id         text        COLLATE "C" PRIMARY KEY,
        user_id          text,
        activity_type    text        NOT NULL,
        category         text        NOT NULL,
        event_type       text        NOT NULL,
        subject          text        NOT NULL,
        property_id      text,
        occurred_at      timestamptz NOT NULL,
        summary          text        NOT NULL,
        details          jsonb       NOT NULL,
        source_topic     text        NOT NULL,
        source_partition integer     NOT NULL,
        source_offset    bigint      NOT NULL
    )""",
    """CREATE TABLE {s}.property_owners (
        property_id      text        PRIMARY KEY,
        owner_id         text        NOT NULL,
        source_topic     text        NOT NULL,
        source_partition integer     NOT NULL,
        source_offset    bigint      NOT NULL
    )""",
    """CREATE TABLE {s}.erased_users (
        user_id          text        PRIMARY KEY,
        event_id         text        NOT NULL,
        erased_at        timestamptz NOT NULL,
        source_topic     text        NOT NULL,
        source_partition integer     NOT NULL,
        source_offset    bigint      NOT NULL
    )""",
)

# Newest first with keyset paging, per user (also serves /properties and /searches: a user's rows in time
# order, filtered by category, stop at the page's end); per user and type (the `type` filter, stats);
# views per property (views received); listings per owner. Every index costs each live insert and the
# rebuild's build time, so a category index, which the time index covers well enough, is left out.
_INDEXES = (
    "CREATE INDEX IF NOT EXISTS activities_user_time_idx ON {s}.activities (user_id, occurred_at DESC, event_id DESC)"
    " WHERE user_id IS NOT NULL",
    "CREATE INDEX IF NOT EXISTS activities_user_type_idx ON {s}.activities"
    " (user_id, activity_type, occurred_at DESC, event_id DESC) WHERE user_id IS NOT NULL",
    "CREATE INDEX IF NOT EXISTS activities_views_idx ON {s}.activities (property_id)"
    " WHERE activity_type = 'property.viewed'",
    "CREATE INDEX IF NOT EXISTS property_owners_owner_idx ON {s}.property_owners (owner_id)",
)


@dataclass(frozen=True)
class Generation:
    namespace: str
    number: int
    kind: str
    state: str
    job_id: str | None = None
    scope_user_id: str | None = None

    @property
    def schema(self) -> str:
        return generation_schema(self.namespace, self.number)

    @property
    def postgres_checkpoint(self) -> str:
        return postgres_checkpoint(self.namespace, self.number)

    @property
    def redis_checkpoint(self) -> str:
        return redis_checkpoint(self.namespace, self.number)

    @property
    def redis_prefix(self) -> str:
        return redis_prefix(self.namespace, self.number)

    def table(self, name: str) -> sql.Identifier:
        return sql.Identifier(self.schema, name)


_COLUMNS = "g.namespace, g.generation, g.kind, g.state, g.job_id, g.scope_user_id"


def _generation(row: tuple[Any, ...]) -> Generation:
    return Generation(*row)


def _lock_namespace_sql() -> str:
    return "SELECT pg_advisory_xact_lock(hashtext('user_history:' || %s))"


async def live_generation(conn: AsyncConnection[Any], namespace: str, lock: str = "") -> Generation | None:
    """The live generation; `lock` 'FOR SHARE' (a live batch) or 'FOR UPDATE' (a swap) locks the pointer."""
    assert lock in ("", "FOR SHARE", "FOR UPDATE")
    query = (
        f"SELECT {_COLUMNS} FROM user_history_live l"  # noqa: S608  (no input is formatted in)
        " JOIN user_history_generations g USING (namespace, generation) WHERE l.namespace = %s "
    )
    cursor = await conn.execute(query + (f"{lock} OF l" if lock else ""), (namespace,))  # type: ignore[arg-type]
    row = await cursor.fetchone()
    return _generation(row) if row else None


async def by_job(conn: AsyncConnection[Any], job_id: str) -> Generation | None:
    cursor = await conn.execute(
        f"SELECT {_COLUMNS} FROM user_history_generations g WHERE g.job_id = %s AND g.state <> 'dropped'"  # noqa: S608
        " ORDER BY g.generation DESC LIMIT 1",
        (job_id,),
    )
    row = await cursor.fetchone()
    return _generation(row) if row else None


async def ready_snapshots(conn: AsyncConnection[Any], namespace: str) -> list[Generation]:
    cursor = await conn.execute(
        f"SELECT {_COLUMNS} FROM user_history_generations g"  # noqa: S608
        " WHERE g.namespace = %s AND g.kind = 'snapshot' AND g.state = 'ready' ORDER BY g.generation",
        (namespace,),
    )
    return [_generation(row) for row in await cursor.fetchall()]


async def _create_schema(conn: AsyncConnection[Any], generation: Generation, with_indexes: bool) -> None:
    schema = sql.Identifier(generation.schema)
    await conn.execute(sql.SQL("CREATE SCHEMA {s}").format(s=schema))
    for statement in _TABLES + (_INDEXES if with_indexes else ()):
        await conn.execute(sql.SQL(statement).format(s=schema))  # type: ignore[arg-type]


async def create_generation(
    pool: AsyncConnectionPool,
    namespace: str,
    kind: str,
    *,
    job_id: str | None = None,
    scope_user_id: str | None = None,
    with_indexes: bool = False,
) -> Generation:
    """A fresh, empty generation in state `building`, numbered after every one the namespace had."""
    async with pool.connection() as conn, conn.transaction():
        await conn.execute(_lock_namespace_sql(), (namespace,))
        cursor = await conn.execute(
            "SELECT coalesce(max(generation), 0) + 1 FROM user_history_generations WHERE namespace = %s", (namespace,)
        )
        row = await cursor.fetchone()
        assert row is not None
        generation = Generation(namespace, row[0], kind, "building", job_id, scope_user_id)
        await conn.execute(
            "INSERT INTO user_history_generations (namespace, generation, schema_name, kind, state, job_id,"
            " scope_user_id) VALUES (%s, %s, %s, %s, 'building', %s, %s)",
            (namespace, generation.number, generation.schema, kind, job_id, scope_user_id),
        )
        await _create_schema(conn, generation, with_indexes)
    return generation


async def ensure_live(pool: AsyncConnectionPool, namespace: str) -> Generation:
    """The live generation, creating the first one (empty, indexed) when the namespace has none yet."""
    async with pool.connection() as conn:
        found = await live_generation(conn, namespace)
    if found is not None:
        return found
    async with pool.connection() as conn, conn.transaction():
        await conn.execute(_lock_namespace_sql(), (namespace,))
        found = await live_generation(conn, namespace)
        if found is not None:
            return found
        cursor = await conn.execute(
            "SELECT coalesce(max(generation), 0) + 1 FROM user_history_generations WHERE namespace = %s", (namespace,)
        )
        row = await cursor.fetchone()
        assert row is not None
        generation = Generation(namespace, row[0], "live", "live")
        await conn.execute(
            "INSERT INTO user_history_generations (namespace, generation, schema_name, kind, state, activated_at)"
            " VALUES (%s, %s, %s, 'live', 'live', now())",
            (namespace, generation.number, generation.schema),
        )
        await _create_schema(conn, generation, with_indexes=True)
        await conn.execute(
            "INSERT INTO user_history_live (namespace, generation) VALUES (%s, %s)", (namespace, generation.number)
        )
        log.info("history namespace %s: first generation %d created", namespace, generation.number)
        return generation


async def build_indexes(pool: AsyncConnectionPool, generation: Generation) -> None:
    async with pool.connection() as conn:
        await conn.execute("SET maintenance_work_mem = '256MB'")
        for statement in _INDEXES:
            await conn.execute(sql.SQL(statement).format(s=sql.Identifier(generation.schema)))  # type: ignore[arg-type]
        await conn.execute(sql.SQL("ANALYZE {t}").format(t=generation.table("activities")))
        await conn.execute(sql.SQL("ANALYZE {t}").format(t=generation.table("property_owners")))
        await conn.execute("RESET maintenance_work_mem")


async def set_state(conn: AsyncConnection[Any], generation: Generation, state: str) -> None:
    await conn.execute(
        "UPDATE user_history_generations SET state = %s,"
        " activated_at = CASE WHEN %s IN ('live', 'ready') THEN now() ELSE activated_at END,"
        " dropped_at = CASE WHEN %s = 'dropped' THEN now() ELSE dropped_at END"
        " WHERE namespace = %s AND generation = %s",
        (state, state, state, generation.namespace, generation.number),
    )


async def point_to(conn: AsyncConnection[Any], generation: Generation) -> None:
    """The swap itself; the caller holds the pointer FOR UPDATE in the same transaction."""
    await conn.execute(
        "UPDATE user_history_live SET generation = %s, swapped_at = now() WHERE namespace = %s",
        (generation.number, generation.namespace),
    )
    await set_state(conn, generation, "live")


async def drop_generation(pool: AsyncConnectionPool, redis: Redis | None, generation: Generation) -> None:
    """Drops the schema (waiting for queries still reading it), its checkpoints and its Redis keys."""
    async with pool.connection() as conn, conn.transaction():
        # DROP waits for readers of the old tables to finish; queries starting afterwards read the pointer,
        # which no longer names this generation.
        await conn.execute("SET LOCAL lock_timeout = '30s'")
        await conn.execute(sql.SQL("DROP SCHEMA IF EXISTS {s} CASCADE").format(s=sql.Identifier(generation.schema)))
        await conn.execute(
            "DELETE FROM projection_checkpoints WHERE projection = ANY(%s)",
            ([generation.postgres_checkpoint, generation.redis_checkpoint],),
        )
        await set_state(conn, generation, "dropped")
    if redis is not None:
        await delete_redis_keys(redis, generation.redis_prefix)
    log.info("history generation %s dropped", generation.schema)


async def delete_redis_keys(redis: Redis, prefix: str) -> int:
    deleted = 0
    batch: list[bytes] = []
    async for key in redis.scan_iter(match=prefix + "*", count=1000):
        batch.append(key)
        if len(batch) >= 1000:
            deleted += await redis.unlink(*batch)
            batch.clear()
    if batch:
        deleted += await redis.unlink(*batch)
    return deleted


async def checkpoints(conn: AsyncConnection[Any], projection: str) -> dict[tuple[str, int], int]:
    cursor = await conn.execute(
        'SELECT topic, partition, "offset" FROM projection_checkpoints WHERE projection = %s', (projection,)
    )
    return {(topic, partition): offset for topic, partition, offset in await cursor.fetchall()}
