"""Zero-downtime rebuild of a search index: a new index, filled, then an atomic alias swap.

    python -m ops.reindex [--target properties|saved-searches] [--alias NAME]
    make reindex [TARGET=saved-searches]

Searches keep answering from the old index until the swap, and from the new one after it; nobody ever
sees a half-built index. The projections keep writing through the alias the whole time:
1. create `<alias>-v<mapping version>-<stamp>` with the current mapping (`ops/search_index.py`);
2. fill it from Postgres: `properties` rows (the fold of the `properties` topic that the property
   projection keeps, turned into documents by the very function the search projection uses), or
   `saved_searches` rows (the percolator queries); each with its version as an external version;
3. catch up: read every (id, version) again and rewrite what moved while step 2 ran;
4. refresh, then swap the alias in one `_aliases` call (remove old, add new as the write index);
5. catch up once more: what the projection wrote to the old index between 3 and 4 (it only ever
   indexes rows Postgres already holds, so a re-read of Postgres after the swap covers it).
External versions make every step safe against the projection writing the same documents: an older
version is refused, whoever writes it. The previous index is kept (a rollback is one alias swap); the
one before it is deleted.
"""

import argparse
import hashlib
import logging
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import httpx
import orjson
import psycopg
from psycopg.rows import class_row

from config import Settings, get_settings
from ops.search_index import BODIES, alias_indices, create_index, new_index_name
from schemas.listings import PropertyRow, search_document
from streams.searches.projection import SavedSearchRow, saved_search_document

log = logging.getLogger("ops.reindex")

_CHUNK = 2000
_KEEP_PREVIOUS = 1


@contextmanager
def advisory_lock(settings: Settings, name: str) -> Iterator[None]:
    """One rebuild of an alias at a time, across processes (test sessions, `make prepare`, operators)."""
    key = int.from_bytes(hashlib.sha256(name.encode()).digest()[:8], "big", signed=True)
    with psycopg.connect(settings.postgres_dsn, autocommit=True) as conn:
        conn.execute("SELECT pg_advisory_lock(%s)", (key,))
        try:
            yield
        finally:
            conn.execute("SELECT pg_advisory_unlock(%s)", (key,))


@dataclass(frozen=True)
class Source:
    """Where an index's documents come from: (id, version, live) of every row, and the documents of some."""

    versions_sql: str
    rows_sql: str  # one parameter: an array of ids
    all_rows_sql: str
    row_type: type[Any]
    document: Callable[[Any], dict[str, Any] | None]


_PROPERTY_COLUMNS = """
    p.id, p.owner_id, p.title, p.location, p.price, p.property_type, p.bedrooms, p.bathrooms, p.description,
    p.area_sqft, p.amenities, p.latitude, p.longitude, p.attributes, p.featured, p.images, p.deleted, p.deleted_at,
    p.version, p.created_at, p.updated_at, COALESCE(v.view_count, 0) AS view_count
"""
# A row is a document when the search projection would index it: created (complete) and not deleted.
_PROPERTY_LIVE = "NOT p.deleted AND p.title IS NOT NULL AND p.owner_id IS NOT NULL AND p.created_at IS NOT NULL"

SOURCES: dict[str, Source] = {
    "properties": Source(
        versions_sql=f"SELECT p.id, p.version, ({_PROPERTY_LIVE}) AS live FROM properties p",
        rows_sql=f"SELECT {_PROPERTY_COLUMNS} FROM properties p LEFT JOIN property_views v ON v.property_id = p.id"
        " WHERE p.id = ANY(%s)",
        all_rows_sql=f"SELECT {_PROPERTY_COLUMNS} FROM properties p LEFT JOIN property_views v"
        f" ON v.property_id = p.id WHERE {_PROPERTY_LIVE}",
        row_type=PropertyRow,
        document=lambda row: search_document(row) if row.complete else None,
    ),
    "saved-searches": Source(
        versions_sql="SELECT id, version, (NOT deleted AND criteria IS NOT NULL) AS live FROM saved_searches",
        rows_sql="SELECT id, owner_id, name, criteria, deleted, version, created_at, updated_at"
        " FROM saved_searches WHERE id = ANY(%s)",
        all_rows_sql="SELECT id, owner_id, name, criteria, deleted, version, created_at, updated_at"
        " FROM saved_searches WHERE NOT deleted AND criteria IS NOT NULL",
        row_type=SavedSearchRow,
        document=saved_search_document,
    ),
}


@dataclass
class ReindexReport:
    alias: str
    old: list[str]
    new: str
    loaded: int = 0
    caught_up: int = 0
    seconds: float = 0.0
    removed: list[str] = field(default_factory=list)

    def summary(self) -> str:
        return (
            f"{self.alias}: {', '.join(self.old) or '(none)'} -> {self.new}; {self.loaded} documents loaded, "
            f"{self.caught_up} caught up, in {self.seconds:.1f} s"
            + (f"; removed {', '.join(self.removed)}" if self.removed else "")
        )


class _Bulk:
    def __init__(self, client: httpx.Client, index: str) -> None:
        self._client = client
        self._index = index

    def write(self, items: Sequence[tuple[str, int, dict[str, Any] | None]]) -> None:
        """(id, version, document or None for a delete); stale versions (409) and absent deletes are fine."""
        if not items:
            return
        lines: list[bytes] = []
        for doc_id, version, document in items:
            meta = {"_index": self._index, "_id": doc_id, "version": version, "version_type": "external"}
            if document is None:
                lines.append(orjson.dumps({"delete": meta}))
            else:
                lines.append(orjson.dumps({"index": meta}))
                lines.append(orjson.dumps(document))
        for attempt in range(5):
            response = self._client.post(
                "/_bulk", content=b"\n".join(lines) + b"\n", headers={"Content-Type": "application/x-ndjson"}
            )
            if response.status_code == 200:
                break
            time.sleep(0.5 * 2**attempt)
        response.raise_for_status()
        for item in response.json()["items"]:
            [(action, outcome)] = item.items()
            status = outcome.get("status", 0)
            if status in (200, 201, 409) or (action == "delete" and status == 404):
                continue
            raise RuntimeError(f"{self._index}: {action} {outcome.get('_id')} refused: {status} {outcome.get('error')}")


def _versions(conn: psycopg.Connection[Any], source: Source) -> dict[str, tuple[int, bool]]:
    return {doc_id: (version, live) for doc_id, version, live in conn.execute(source.versions_sql)}  # type: ignore[arg-type]


def _load(conn: psycopg.Connection[Any], source: Source, bulk: _Bulk) -> dict[str, tuple[int, bool]]:
    """Every live row, streamed (a server-side cursor), in chunks; returns what was written."""
    written: dict[str, tuple[int, bool]] = {}
    with conn.transaction(), conn.cursor(name="reindex", row_factory=class_row(source.row_type)) as cursor:
        cursor.itersize = _CHUNK
        cursor.execute(source.all_rows_sql)  # type: ignore[arg-type]
        while rows := cursor.fetchmany(_CHUNK):
            items = [(row.id, row.version, source.document(row)) for row in rows]
            items = [item for item in items if item[2] is not None]
            bulk.write(items)
            written.update({doc_id: (version, True) for doc_id, version, _ in items})
    return written


def _catch_up(conn: psycopg.Connection[Any], source: Source, bulk: _Bulk, have: dict[str, tuple[int, bool]]) -> int:
    """Rewrite every document whose row moved since `have` was taken; updates `have`."""
    now = _versions(conn, source)
    # A row never written and not live (a tombstone, a row not yet created) has nothing to rewrite. Rows
    # are never removed from Postgres (they become tombstones), so `moved` covers deletions too.
    moved = [
        doc_id
        for doc_id, (version, live) in now.items()
        if (doc_id in have and have[doc_id] != (version, live)) or (doc_id not in have and live)
    ]
    for start in range(0, len(moved), _CHUNK):
        chunk = moved[start : start + _CHUNK]
        with conn.cursor(row_factory=class_row(source.row_type)) as cursor:
            cursor.execute(source.rows_sql, (chunk,))  # type: ignore[arg-type]
            rows = cursor.fetchall()
        bulk.write([(row.id, row.version, source.document(row)) for row in rows])
    have.update({doc_id: now[doc_id] for doc_id in moved})
    return len(moved)


def reindex(kind: str, alias: str, settings: Settings | None = None) -> ReindexReport:
    """Build a new index for `alias` (`kind`: properties | saved-searches) and swap it in."""
    settings = settings or get_settings()
    source = SOURCES[kind]
    started = time.monotonic()
    with (
        advisory_lock(settings, f"reindex:{alias}"),
        httpx.Client(base_url=settings.opensearch_url, timeout=120) as client,
        psycopg.connect(settings.postgres_dsn, autocommit=True) as conn,
    ):
        old = alias_indices(client, alias)
        index = new_index_name(alias)
        report = ReindexReport(alias, old, index)
        body = BODIES[kind]()
        # Loading without periodic refreshes is several times faster; one refresh before the swap.
        body["settings"]["refresh_interval"] = "-1"
        create_index(client, index, body)
        bulk = _Bulk(client, index)
        try:
            have = _load(conn, source, bulk)
            report.loaded = len(have)
            report.caught_up = _catch_up(conn, source, bulk, have)
            client.put(f"/{index}/_settings", json={"index": {"refresh_interval": None}}).raise_for_status()
            client.post(f"/{index}/_refresh").raise_for_status()
        except BaseException:
            client.delete(f"/{index}")
            raise
        actions: list[dict[str, Any]] = [{"remove": {"index": name, "alias": alias}} for name in old]
        actions.append(
            {"add": {**_alias_options(client, alias), "index": index, "alias": alias, "is_write_index": True}}
        )
        client.post("/_aliases", json={"actions": actions}).raise_for_status()
        report.caught_up += _catch_up(conn, source, bulk, have)
        client.post(f"/{index}/_refresh").raise_for_status()
        report.removed = _remove_older(client, alias, index)
    report.seconds = time.monotonic() - started
    log.info("reindexed %s", report.summary())
    return report


def _alias_options(client: httpx.Client, alias: str) -> dict[str, Any]:
    """What the alias carries besides its indices (a filter, routing), so the swap keeps it."""
    answer = client.get(f"/_alias/{alias}")
    if answer.status_code == 404:
        return {}
    answer.raise_for_status()
    for definition in answer.json().values():
        options = definition.get("aliases", {}).get(alias, {})
        return {k: v for k, v in options.items() if k in ("filter", "index_routing", "search_routing")}
    return {}


def _remove_older(client: httpx.Client, alias: str, current: str) -> list[str]:
    """Keep the index just replaced (a rollback is one alias swap); delete the ones before it."""
    answer = client.get(f"/_cat/indices/{alias}-v*", params={"format": "json", "h": "index"})
    if answer.status_code == 404:
        return []
    answer.raise_for_status()
    names = sorted((row["index"] for row in answer.json()), key=_built_at)
    older = [name for name in names if name != current and _built_at(name) < _built_at(current)]
    doomed = older[: max(0, len(older) - _KEEP_PREVIOUS)]
    for name in doomed:
        client.delete(f"/{name}").raise_for_status()
    return doomed


def _built_at(index: str) -> str:
    """`properties-v2-20250101t120000123` -> `20250101t120000123`; the first index (`properties-v1`) is oldest."""
    stamp = index.rsplit("-", 1)[-1]
    return stamp if "t" in stamp and stamp[:8].isdigit() else ""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--target", choices=sorted(SOURCES), default="properties")
    parser.add_argument("--alias", help="default: the target's alias from settings")
    args = parser.parse_args()
    settings = get_settings()
    default_alias = {
        "properties": settings.opensearch_properties_alias,
        "saved-searches": settings.opensearch_saved_searches_alias,
    }
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    report = reindex(args.target, args.alias or default_alias[args.target], settings)
    print(f"reindexed {report.summary()}")


if __name__ == "__main__":
    main()
