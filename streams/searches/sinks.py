"""Sinks of the search projection and the saved-search matcher.

- `PostgresSearchSink`: `saved_searches` (guarded by the version = the record's offset), `search_history`
  (insert once per event id), erasure of a deleted user, and the `searches-postgres` checkpoint, all in
  one transaction, with the sealed words opened by the users' keys read in it. Returns the current row
  of every saved search touched, which feeds the percolator.
- `OpenSearchSavedSearchSink`: the percolator documents, written from those rows with external versions
  (a stale or repeated write is refused by OpenSearch itself: 409, which is success here).
- `PostgresMatchLedger`: the (saved search, listing) pairs the matcher has alerted on.
"""

from collections.abc import Awaitable, Callable, Sequence
from datetime import datetime
from typing import Any

import httpx
from psycopg import AsyncConnection
from psycopg.rows import class_row
from psycopg.types.json import Jsonb
from psycopg_pool import AsyncConnectionPool

from schemas.read_models import SEARCHES_POSTGRES_CHECKPOINT
from schemas.searches import saved_match_event_id
from streams.checkpoints import raise_checkpoints
from streams.personal_keys import personal_keys
from streams.positions import SourcePosition
from streams.properties.sinks import SearchUnavailable, write_versioned
from streams.searches.matching import ListedProperty, SavedSearchHit
from streams.searches.projection import (
    SavedSearchRemoved,
    SavedSearchRow,
    SavedSearchWritten,
    SearchChange,
    SearchRecorded,
    UserErased,
    opened,
    saved_search_document,
    sealed_for,
)

# A save by a user already erased (a replay of the topic) is ignored; so is anything older than the row.
_WRITE_SAVED = """
INSERT INTO saved_searches (id, owner_id, name, criteria, deleted, version, last_event_id, created_at, updated_at)
SELECT %(id)s, %(owner_id)s, %(name)s, %(criteria)s, false, %(version)s, %(event_id)s, %(at)s, %(at)s
WHERE NOT EXISTS (SELECT 1 FROM search_erased_users WHERE user_id = %(owner_id)s)
ON CONFLICT (id) DO UPDATE SET
    name = EXCLUDED.name, criteria = EXCLUDED.criteria, deleted = false, version = EXCLUDED.version,
    last_event_id = EXCLUDED.last_event_id, created_at = COALESCE(saved_searches.created_at, EXCLUDED.created_at),
    updated_at = EXCLUDED.updated_at
WHERE saved_searches.version < EXCLUDED.version AND saved_searches.owner_id = EXCLUDED.owner_id
"""

_REMOVE_SAVED = """
INSERT INTO saved_searches (id, owner_id, deleted, version, last_event_id, updated_at)
VALUES (%(id)s, %(owner_id)s, true, %(version)s, %(event_id)s, %(at)s)
ON CONFLICT (id) DO UPDATE SET
    name = NULL, criteria = NULL, deleted = true, version = EXCLUDED.version,
    last_event_id = EXCLUDED.last_event_id, updated_at = EXCLUDED.updated_at
WHERE saved_searches.version < EXCLUDED.version
"""

_RECORD_SEARCH = """
INSERT INTO search_history (event_id, user_id, query, filters, result_count, searched_at)
SELECT %(event_id)s, %(user_id)s, %(query)s, %(filters)s, %(result_count)s, %(at)s
WHERE NOT EXISTS (SELECT 1 FROM search_erased_users WHERE user_id = %(user_id)s)
ON CONFLICT (event_id) DO NOTHING
"""

_REMEMBER_ERASED = """
INSERT INTO search_erased_users (user_id, erased_at) VALUES (%(user_id)s, %(at)s) ON CONFLICT (user_id) DO NOTHING
"""

# The version moves on (by one) so the percolator's external version accepts the delete; rows already
# erased are left alone, so a redelivered deletion changes nothing.
_ERASE_SAVED = """
UPDATE saved_searches SET name = NULL, criteria = NULL, deleted = true, version = version + 1, updated_at = %(at)s
WHERE owner_id = %(user_id)s AND (NOT deleted OR name IS NOT NULL OR criteria IS NOT NULL)
RETURNING id
"""

_ERASE_HISTORY = "DELETE FROM search_history WHERE user_id = %(user_id)s"

_CURRENT_SAVED = """
SELECT id, owner_id, name, criteria, deleted, version, created_at, updated_at
FROM saved_searches WHERE id = ANY(%s) ORDER BY id
"""


def _parameters(change: SearchChange) -> dict[str, Any]:
    if isinstance(change, SavedSearchWritten):
        return {
            "id": change.saved_search_id,
            "owner_id": change.owner_id,
            "name": change.name,
            "criteria": Jsonb(change.criteria),
            "version": change.version,
            "event_id": change.event_id,
            "at": change.at,
        }
    if isinstance(change, SavedSearchRemoved):
        return {
            "id": change.saved_search_id,
            "owner_id": change.owner_id,
            "version": change.version,
            "event_id": change.event_id,
            "at": change.at,
        }
    if isinstance(change, SearchRecorded):
        return {
            "event_id": change.event_id,
            "user_id": change.user_id,
            "query": change.query,
            "filters": Jsonb(change.filters),
            "result_count": change.result_count,
            "at": change.at,
        }
    return {"user_id": change.user_id, "at": change.at}


def _statement(change: SearchChange) -> str:
    if isinstance(change, SavedSearchWritten):
        return _WRITE_SAVED
    if isinstance(change, SavedSearchRemoved):
        return _REMOVE_SAVED
    return _RECORD_SEARCH


class PostgresSearchSink:
    def __init__(self, pool: AsyncConnectionPool, projection: str = SEARCHES_POSTGRES_CHECKPOINT) -> None:
        self._pool = pool
        self._projection = projection

    async def apply(self, changes: Sequence[SearchChange], positions: Sequence[SourcePosition]) -> list[SavedSearchRow]:
        """Apply in order and raise the checkpoint, one transaction; the current row of every saved search
        touched (also when nothing changed, so a redelivery still reaches the percolator)."""
        touched = {c.saved_search_id for c in changes if isinstance(c, SavedSearchWritten | SavedSearchRemoved)}
        async with self._pool.connection() as conn, conn.transaction():
            keys = await personal_keys(conn, sealed_for(changes))
            readable = [c for c in (opened(c, keys) for c in changes) if c is not None]
            run: list[SearchChange] = []
            for change in [*readable, None]:
                # Consecutive changes of one kind go as one executemany (pipelined); order is kept.
                flush = run and (
                    change is None or isinstance(change, UserErased) or _statement(change) != _statement(run[0])
                )
                if flush:
                    async with conn.cursor() as cursor:
                        await cursor.executemany(_statement(run[0]), [_parameters(c) for c in run])
                    run = []
                if isinstance(change, UserErased):
                    touched |= await self._erase(conn, change)
                elif change is not None:
                    run.append(change)
            rows = await self._current(conn, sorted(touched))
            await raise_checkpoints(conn, self._projection, positions)
        return rows

    @staticmethod
    async def _erase(conn: AsyncConnection[Any], change: UserErased) -> set[str]:
        parameters = _parameters(change)
        await conn.execute(_REMEMBER_ERASED, parameters)
        cursor = await conn.execute(_ERASE_SAVED, parameters)
        erased = {row[0] for row in await cursor.fetchall()}
        await conn.execute(_ERASE_HISTORY, parameters)
        return erased

    @staticmethod
    async def _current(conn: AsyncConnection[Any], ids: list[str]) -> list[SavedSearchRow]:
        if not ids:
            return []
        async with conn.cursor(row_factory=class_row(SavedSearchRow)) as cursor:
            await cursor.execute(_CURRENT_SAVED, (ids,))
            return await cursor.fetchall()


class OpenSearchSavedSearchSink:
    def __init__(self, client: httpx.AsyncClient, alias: str) -> None:
        self._client = client
        self._alias = alias

    async def write(self, rows: Sequence[SavedSearchRow]) -> dict[str, str]:
        """Register (or remove) the percolator queries, visible to percolation when this returns; {id: error}
        for documents OpenSearch refuses for good."""
        return await write_versioned(
            self._client, self._alias, [(r.id, r.version, saved_search_document(r)) for r in rows]
        )


# ---- the saved-search matcher ----

_PERCOLATE_PAGE = 500


class OpenSearchPercolator:
    """Which saved searches match which of a batch of listings (`percolate` with several documents)."""

    def __init__(self, client: httpx.AsyncClient, alias: str) -> None:
        self._client = client
        self._alias = alias

    async def hits(self, documents: Sequence[dict[str, Any]]) -> list[SavedSearchHit]:
        if not documents:
            return []
        found: list[SavedSearchHit] = []
        after: list[Any] | None = None
        while True:
            body: dict[str, Any] = {
                "query": {"percolate": {"field": "query", "documents": list(documents)}},
                "size": _PERCOLATE_PAGE,
                "_source": ["savedSearchId", "ownerId", "name", "savedAt"],
                "sort": [{"savedSearchId": "asc"}],
                "track_total_hits": False,
            }
            if after is not None:
                body["search_after"] = after
            response = await self._client.post(f"/{self._alias}/_search", json=body)
            if response.status_code != 200:
                raise SearchUnavailable(f"percolate answered {response.status_code}: {response.text[:500]}")
            page = response.json()["hits"]["hits"]
            for hit in page:
                source = hit["_source"]
                saved_at = datetime.fromisoformat(source["savedAt"]) if source.get("savedAt") else None
                for slot in hit.get("fields", {}).get("_percolator_document_slot", [0]):
                    found.append(
                        SavedSearchHit(slot, source["savedSearchId"], source["ownerId"], source["name"], saved_at)
                    )
            if len(page) < _PERCOLATE_PAGE:
                return found
            after = page[-1]["sort"]


_NEW_MATCHES = """
INSERT INTO saved_search_matches (saved_search_id, property_id, event_id, property_version, matched_at)
SELECT * FROM unnest(%s::text[], %s::text[], %s::text[], %s::integer[], %s::timestamptz[])
ON CONFLICT (saved_search_id, property_id) DO NOTHING
RETURNING saved_search_id, property_id
"""


class PostgresMatchLedger:
    """The pairs already alerted on. `record` returns the pairs that are new; the caller produces their
    events inside the same transaction, so a pair is remembered only once its event is on Kafka (a crash
    in between produces it again with the same id, which every reader already ignores)."""

    def __init__(self, pool: AsyncConnectionPool) -> None:
        self._pool = pool

    async def record_then(
        self,
        matches: Sequence[tuple[SavedSearchHit, ListedProperty]],
        produce: Callable[[list[tuple[SavedSearchHit, ListedProperty]]], Awaitable[None]],
    ) -> int:
        if not matches:
            return 0
        async with self._pool.connection() as conn, conn.transaction():
            cursor = await conn.execute(
                _NEW_MATCHES,
                (
                    [hit.saved_search_id for hit, _ in matches],
                    [listed.property_id for _, listed in matches],
                    [saved_match_event_id(hit.saved_search_id, listed.property_id) for hit, listed in matches],
                    [listed.version for _, listed in matches],
                    [listed.at for _, listed in matches],
                ),
            )
            new = {(s, p) for s, p in await cursor.fetchall()}
            fresh = [(hit, listed) for hit, listed in matches if (hit.saved_search_id, listed.property_id) in new]
            await produce(fresh)
        return len(fresh)
