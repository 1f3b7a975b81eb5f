"""How far each store of a projection has got: `projection_checkpoints`, one row per (store, topic,
partition) holding the highest offset applied. Every projection writes its Postgres rows and their
checkpoint in one transaction (`raise_checkpoints`, inside the sink's own), and records a store other
than Postgres (Redis, OpenSearch) once its write is visible (`PostgresCheckpoints`). Queries wait on
these rows for read-your-writes; `/status` reads them for staleness. A checkpoint only ever rises, so
a redelivered batch leaves it where it was."""

from collections.abc import Iterable, Sequence
from typing import Any

from psycopg import AsyncConnection
from psycopg_pool import AsyncConnectionPool

from streams.positions import SourcePosition

_RAISE_CHECKPOINTS = """
INSERT INTO projection_checkpoints (projection, topic, partition, "offset")
SELECT %s, * FROM unnest(%s::text[], %s::integer[], %s::bigint[])
ON CONFLICT (projection, topic, partition)
DO UPDATE SET "offset" = GREATEST(projection_checkpoints."offset", EXCLUDED."offset"), updated_at = now()
"""


def highest_offsets(positions: Sequence[SourcePosition]) -> dict[tuple[str, int], int]:
    highest: dict[tuple[str, int], int] = {}
    for position in positions:
        where = (position.topic, position.partition)
        highest[where] = max(highest.get(where, -1), position.offset)
    return highest


async def raise_checkpoints(conn: AsyncConnection[Any], projection: str, positions: Iterable[SourcePosition]) -> None:
    """Within the caller's transaction: the checkpoint commits with the rows it counts."""
    highest = highest_offsets(list(positions))
    if not highest:
        return
    await conn.execute(
        _RAISE_CHECKPOINTS,
        (projection, [t for t, _ in highest], [p for _, p in highest], list(highest.values())),
    )


class PostgresCheckpoints:
    """Records how far a store other than Postgres has got, once its write is visible."""

    def __init__(self, pool: AsyncConnectionPool) -> None:
        self._pool = pool

    async def record(self, projection: str, positions: Sequence[SourcePosition]) -> None:
        async with self._pool.connection() as conn, conn.transaction():
            await raise_checkpoints(conn, projection, positions)
