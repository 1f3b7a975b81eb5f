"""The property search projection: `python -m streams.properties.search_worker worker -l info`.

Its own consumer group (`settings.property_search_projection_group`, default
`property-search-projection`) on the lean runner (`streams/runner.py`), reading `properties` only. For
each batch: plan (pure, for the property ids and versions it names) -> wait until the Postgres read
model (the `property-projection` group) holds every property at least at the batch's version -> index
those rows (`_bulk`, external versions) -> `_refresh` -> checkpoint `properties-opensearch`.

Why rows and not the events: an update carries no images and an images event no listing, so a document
built from one event is partial; the row is the whole property at a version at least as new as the
batch's, and external versioning makes any mix of replays, redeliveries and two groups converge on the
newest row. Postgres is another group, so it may lag: the batch waits for it (polling, the partition
stays put) rather than indexing an older row under a newer checkpoint.
"""

import asyncio
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from contextlib import asynccontextmanager

import httpx
from psycopg_pool import AsyncConnectionPool

from config import Settings
from schemas.listings import PropertyRow
from schemas.read_models import PROPERTIES_OPENSEARCH_CHECKPOINT, PROPERTIES_POSTGRES_CHECKPOINT
from schemas.topics import PROPERTIES
from streams.batches import until_done
from streams.checkpoints import PostgresCheckpoints, highest_offsets
from streams.dead_letters import DeadLetter
from streams.positions import RawRecord
from streams.properties.projection import (
    SEARCH_CONSUMER,
    PropertyPlan,
    behind,
    newest_versions,
    passed,
    plan_properties,
)
from streams.properties.sinks import OpenSearchPropertySink, PostgresPropertyRows
from streams.runner import Context, Lane, Projection

log = logging.getLogger("streams.properties.search")

# Polling Postgres for the other group: 5 ms at first (it is usually a few ms behind), doubling to 0.5 s.
_FIRST_POLL_SECONDS = 0.005
_MAX_POLL_SECONDS = 0.5


class SearchProjector:
    """Moves one batch into OpenSearch; idempotent, so a crash anywhere is repaired by the redelivery."""

    def __init__(
        self,
        rows: PostgresPropertyRows,
        search: OpenSearchPropertySink,
        checkpoints: PostgresCheckpoints,
        dead_letters: Callable[[Sequence[DeadLetter]], Awaitable[None]],
        patience_seconds: float = 2.0,
        checkpoint: str = PROPERTIES_OPENSEARCH_CHECKPOINT,
    ) -> None:
        self._rows = rows
        self._checkpoint = checkpoint
        self._search = search
        self._checkpoints = checkpoints
        self._dead_letters = dead_letters
        self._patience = patience_seconds

    async def project(self, records: Sequence[RawRecord]) -> None:
        plan = plan_properties(records, SEARCH_CONSUMER)
        await self._dead_letters(plan.dead_letters)
        rows = await self._rows_as_new_as(plan)
        # A row that has not seen its creation (only in a partial replay) has nothing to show yet.
        rows = [row for row in rows if row.complete]
        refused = await until_done("opensearch", lambda: self._search.write(rows))
        by_property: dict[str, list[RawRecord]] = {}
        for planned in plan.changes:
            by_property.setdefault(planned.change.property_id, []).append(planned.record)
        await self._dead_letters(
            [
                DeadLetter(record.key, record.value, error, record.position, SEARCH_CONSUMER)
                for property_id, error in refused.items()
                for record in by_property.get(property_id, [])
            ]
        )
        await until_done("checkpoint", lambda: self._checkpoints.record(self._checkpoint, plan.positions))

    async def _rows_as_new_as(self, plan: PropertyPlan) -> list[PropertyRow]:
        """The batch's properties as Postgres holds them, once every row is at least at the version the
        batch carries for it. Postgres never reaches that version only when it refused the event (it is
        on `dead-letters` then, and the `properties-postgres` checkpoint has passed it): after
        `patience` such a row is indexed as it is. The checkpoint is read before the rows, so rows read
        after it include everything it covers."""
        wanted = newest_versions(plan.changes)
        if not wanted:
            return []
        needed = highest_offsets([planned.record.position for planned in plan.changes])
        started = time.monotonic()
        poll = _FIRST_POLL_SECONDS
        warned = False
        while True:
            applied = await until_done(
                "postgres", lambda: self._rows.checkpoints(PROPERTIES_POSTGRES_CHECKPOINT, needed)
            )
            rows = await until_done("postgres", lambda: self._rows.current(list(wanted)))
            lagging = behind(rows, wanted)
            if not lagging:
                return rows
            waited = time.monotonic() - started
            if waited >= self._patience:
                if passed(applied, needed):
                    log.warning(
                        "postgres passed %d properties without their version (refused); indexing as is", len(lagging)
                    )
                    return rows
                if not warned:
                    log.warning("postgres projection %.1fs behind for %d properties; waiting", waited, len(lagging))
                    warned = True
            await asyncio.sleep(poll)
            poll = min(poll * 2, _MAX_POLL_SECONDS)


def projection(settings: Settings) -> Projection:
    return Projection(
        "property-search-projection",
        settings.property_search_projection_group,
        (PROPERTIES.name,),
        batch_size=settings.property_projection_batch_size,
        batch_seconds=settings.property_search_projection_batch_seconds,
        open=_open,
    )


@asynccontextmanager
async def _open(context: Context) -> AsyncIterator[Lane]:
    settings = context.settings
    # Clients opened as the group starts (never at import) and closed when it stops.
    pool = AsyncConnectionPool(settings.postgres_dsn, min_size=1, max_size=2, open=False)
    search = httpx.AsyncClient(base_url=settings.opensearch_url, timeout=30)
    # wait=False: a worker started while Postgres is down still starts, and its reads wait instead.
    await pool.open(wait=False)
    projector = SearchProjector(
        PostgresPropertyRows(pool),
        OpenSearchPropertySink(search, settings.opensearch_properties_alias),
        PostgresCheckpoints(pool),
        context.publish,
        # One checkpoint per alias: a projection into a test's or a benchmark's alias vouches only for it.
        checkpoint=settings.properties_search_checkpoint,
    )
    try:
        yield context.or_dead_letter(SEARCH_CONSUMER, projector.project)
    finally:
        await search.aclose()
        await pool.close()
