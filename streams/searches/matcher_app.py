"""The saved-search matcher: `python -m streams.searches.matcher_worker worker -l info`.

Its own consumer group (`settings.saved_search_matcher_group`, default `saved-search-matcher`) on the
lean runner (`streams/runner.py`, the host's producer for its events), reading `properties`. For each
batch: the newest created/changed listing of each property (pure) -> percolate them against the saved
searches (alias `saved-searches`) -> for each (saved search, listing) pair where the listing event is
newer than the saved search and that was not alerted on before: seal the saved search's name with its
owner's key (`user_keys`), remember the pair in `saved_search_matches` and produce
`search.saved_match.v1` to `searches` (keyed by the saved search id, event id derived from the pair), in
one Postgres transaction that commits only once Kafka has the events -> checkpoint
`saved-search-matches` (`…@<group>` for another group). At most one alert per pair, also across updates,
redeliveries and replays.
"""

import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Collection, Sequence
from contextlib import asynccontextmanager

import httpx
from aiokafka import AIOKafkaProducer
from aiokafka.errors import KafkaError
from psycopg_pool import AsyncConnectionPool

from config import Settings
from schemas.codec import encode
from schemas.read_models import SAVED_SEARCH_MATCHES_CHECKPOINT
from schemas.topics import PROPERTIES, SEARCHES
from streams.batches import StoreUnavailable, until_done
from streams.checkpoints import PostgresCheckpoints
from streams.dead_letters import DeadLetter
from streams.personal_keys import personal_keys
from streams.positions import RawRecord
from streams.runner import Context, Lane, Projection
from streams.searches.matching import (
    MATCHER_CONSUMER,
    ListedProperty,
    SavedSearchHit,
    alerts_due,
    match_event,
    matches_checkpoint,
    percolation_document,
    plan_matches,
    with_sealed_names,
)
from streams.searches.sinks import OpenSearchPercolator, PostgresMatchLedger

log = logging.getLogger("streams.searches.matcher")

Produce = Callable[[list[tuple[SavedSearchHit, ListedProperty]]], Awaitable[None]]


class SavedSearchMatcher:
    def __init__(
        self,
        percolator: OpenSearchPercolator,
        ledger: PostgresMatchLedger,
        checkpoints: PostgresCheckpoints,
        produce: Produce,
        dead_letters: Callable[[Sequence[DeadLetter]], Awaitable[None]],
        keys: Callable[[Collection[str]], Awaitable[dict[str, bytes]]],
        checkpoint: str = SAVED_SEARCH_MATCHES_CHECKPOINT,
    ) -> None:
        self._keys = keys
        self._percolator = percolator
        self._checkpoint = checkpoint
        self._ledger = ledger
        self._checkpoints = checkpoints
        self._produce = produce
        self._dead_letters = dead_letters

    async def react(self, records: Sequence[RawRecord]) -> None:
        plan = plan_matches(records)
        await self._dead_letters(plan.dead_letters)
        documents = [percolation_document(listed) for listed in plan.listings]
        hits = await until_done("opensearch", lambda: self._percolator.hits(documents))
        matches = alerts_due(hits, plan.listings)
        owners = {hit.owner_id for hit, _ in matches}
        keys = await until_done("postgres keys", lambda: self._keys(owners)) if owners else {}
        matches = with_sealed_names(matches, keys)
        alerted = await until_done("postgres", lambda: self._ledger.record_then(matches, self._produce))
        if alerted:
            log.info("%d saved-search matches from %d listings", alerted, len(plan.listings))
        await until_done("checkpoint", lambda: self._checkpoints.record(self._checkpoint, plan.positions))


def match_producer(producer: AIOKafkaProducer) -> Produce:
    async def produce_matches(matches: list[tuple[SavedSearchHit, ListedProperty]]) -> None:
        """Every match event on `searches`, acknowledged by the broker (acks=all) before returning."""
        try:
            sent = []
            for hit, listed in matches:
                event = match_event(hit, listed)
                sent.append(await producer.send(SEARCHES.name, encode(event), key=event.subject.encode()))
            for future in sent:
                await future
        except KafkaError as exc:
            # Kafka being away is not the listings' fault: the ledger's transaction rolls back and we retry.
            raise StoreUnavailable(f"kafka: {exc}") from exc

    return produce_matches


def projection(settings: Settings) -> Projection:
    return Projection(
        "saved-search-matcher",
        settings.saved_search_matcher_group,
        (PROPERTIES.name,),
        batch_size=500,
        batch_seconds=settings.saved_search_matcher_batch_seconds,
        open=_open,
    )


@asynccontextmanager
async def _open(context: Context) -> AsyncIterator[Lane]:
    settings = context.settings
    pool = AsyncConnectionPool(settings.postgres_dsn, min_size=1, max_size=2, open=False)
    search = httpx.AsyncClient(base_url=settings.opensearch_url, timeout=30)
    await pool.open(wait=False)

    async def keys(owners: Collection[str]) -> dict[str, bytes]:
        async with pool.connection() as conn:
            return await personal_keys(conn, owners)

    matcher = SavedSearchMatcher(
        OpenSearchPercolator(search, settings.opensearch_saved_searches_alias),
        PostgresMatchLedger(pool),
        PostgresCheckpoints(pool),
        match_producer(context.producer),
        context.publish,
        keys,
        checkpoint=matches_checkpoint(settings.saved_search_matcher_group),
    )
    try:
        yield context.or_dead_letter(MATCHER_CONSUMER, matcher.react)
    finally:
        await search.aclose()
        await pool.close()
