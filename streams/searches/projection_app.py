"""The search projection: `python -m streams.searches.projection_worker worker -l info`.

Its own consumer group (`settings.search_projection_group`, default `search-projection`) on the lean
runner (`streams/runner.py`), reading `searches` and `users`: plan (pure) -> Postgres (saved
searches, history, erasures + checkpoint `searches-postgres`, one transaction, returns the current rows
of the saved searches touched) -> the percolator index (alias `saved-searches`, external versions, refresh) ->
checkpoint `saved-searches-opensearch` (`…@<alias>` for another alias). Stores that are down are
waited for; poison goes to `dead-letters` (`dlq.consumer=search-projection`), and the later events of
its key are parked until it is redriven or skipped (`streams/parking.py`).
"""

import logging
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager

import httpx
from psycopg_pool import AsyncConnectionPool

from config import Settings
from schemas.read_models import SAVED_SEARCHES_OPENSEARCH_CHECKPOINT
from schemas.topics import SEARCHES, USERS
from streams.batches import until_done
from streams.checkpoints import PostgresCheckpoints
from streams.dead_letters import DeadLetter
from streams.parking import KeyOrder
from streams.positions import RawRecord
from streams.runner import Context, Lane, Projection
from streams.searches.projection import PROJECTION_CONSUMER, plan_searches
from streams.searches.sinks import OpenSearchSavedSearchSink, PostgresSearchSink

log = logging.getLogger("streams.searches.projection")


class SearchProjector:
    """Moves one batch through Postgres, then the percolator; both idempotent, so a crash anywhere is
    repaired by the redelivery."""

    def __init__(
        self,
        postgres: PostgresSearchSink,
        percolator: OpenSearchSavedSearchSink,
        checkpoints: PostgresCheckpoints,
        order: KeyOrder,
        checkpoint: str = SAVED_SEARCHES_OPENSEARCH_CHECKPOINT,
    ) -> None:
        self._postgres = postgres
        self._checkpoint = checkpoint
        self._percolator = percolator
        self._checkpoints = checkpoints
        self._order = order
        self._dead_letters = order.dead_letters

    async def project(self, records: Sequence[RawRecord]) -> None:
        plan = self._order.plan(records, plan_searches)
        await self._dead_letters(plan.dead_letters)
        rows = await until_done("postgres", lambda: self._postgres.apply(plan.changes, plan.positions))
        refused = await until_done("opensearch", lambda: self._percolator.write(rows))
        if refused:
            await self._dead_letters(
                [
                    DeadLetter(r.key, r.value, refused[key], r.position, PROJECTION_CONSUMER)
                    for r in records
                    if r.key and (key := r.key.decode(errors="replace")) in refused
                ]
            )
        await until_done("checkpoint", lambda: self._checkpoints.record(self._checkpoint, plan.positions))


def projection(settings: Settings) -> Projection:
    return Projection(
        "search-projection",
        settings.search_projection_group,
        (SEARCHES.name, USERS.name),
        batch_size=500,
        batch_seconds=settings.search_projection_batch_seconds,
        open=_open,
    )


@asynccontextmanager
async def _open(context: Context) -> AsyncIterator[Lane]:
    settings = context.settings
    pool = AsyncConnectionPool(settings.postgres_dsn, min_size=1, max_size=2, open=False)
    search = httpx.AsyncClient(base_url=settings.opensearch_url, timeout=30)
    await pool.open(wait=False)
    order = context.key_order(pool, PROJECTION_CONSUMER)
    projector = SearchProjector(
        PostgresSearchSink(pool),
        OpenSearchSavedSearchSink(search, settings.opensearch_saved_searches_alias),
        PostgresCheckpoints(pool),
        order,
        # One checkpoint per alias: a projection into a test's alias vouches only for that one.
        checkpoint=settings.saved_searches_checkpoint,
    )
    try:
        yield context.in_key_order(order, projector.project)
    finally:
        await search.aclose()
        await pool.close()
