"""Garbage collection of blobs: bytes no live file refers to are removed once a grace period passed.

Mark: every SHA-256 a live file has (`files`), the variants made of those (`file_variants`), and the
images of live listings (`properties.images`, uploaded through the property service). Sweep: every blob
in the store not marked and last touched before the grace period; its last-touched time is read again
just before deleting (an identical upload touches it). The grace covers an upload whose bytes are
stored but whose event is not projected yet; it must be longer than the projection ever lags.
Variant rows of sources no longer marked go too, so a later upload of those bytes makes them again.
One collector at a time (a Postgres advisory lock), so two optimiser workers do not race.
"""

import asyncio
import logging
import time
from dataclasses import dataclass
from typing import Any

from psycopg import AsyncConnection

from storage import BlobStore

log = logging.getLogger("streams.files.gc")

_LOCK_ID = 72_0008

_MARKED_SOURCES = """
SELECT sha256 FROM files WHERE NOT deleted AND sha256 IS NOT NULL
UNION
SELECT img->>'sha256' FROM properties, jsonb_array_elements(images) AS img WHERE NOT deleted
"""
_VARIANTS_OF_MARKED = """
SELECT v.sha256 FROM file_variants v WHERE v.source_sha256 = ANY(%s)
"""
_FORGET_VARIANTS = """
DELETE FROM file_variants WHERE NOT (source_sha256 = ANY(%s)) AND created_at < now() - make_interval(secs => %s)
"""


@dataclass(frozen=True)
class Collected:
    blobs: int
    variant_rows: int
    temporary_files: int


async def collect(store: BlobStore, conn: AsyncConnection[Any], grace_seconds: float) -> Collected | None:
    """One mark-and-sweep (on an autocommit connection); None when another collector holds the lock."""
    cursor = await conn.execute("SELECT pg_try_advisory_lock(%s)", (_LOCK_ID,))
    row = await cursor.fetchone()
    if not row or not row[0]:
        return None
    try:
        cursor = await conn.execute(_MARKED_SOURCES)
        sources = sorted({r[0] for r in await cursor.fetchall() if r[0]})
        cursor = await conn.execute(_VARIANTS_OF_MARKED, (sources,))
        marked = set(sources) | {r[0] for r in await cursor.fetchall()}
        removed = await asyncio.to_thread(_sweep, store, marked, grace_seconds)
        cursor = await conn.execute(_FORGET_VARIANTS, (sources, grace_seconds))
        forgotten = cursor.rowcount
        stale = await asyncio.to_thread(store.discard_stale_incoming, max(grace_seconds, 600.0))
    finally:
        await conn.execute("SELECT pg_advisory_unlock(%s)", (_LOCK_ID,))
    if removed or forgotten or stale:
        log.info("collected %d blobs, %d variant rows, %d stale temporary files", removed, forgotten, stale)
    return Collected(removed, forgotten, stale)


def _sweep(store: BlobStore, marked: set[str], grace_seconds: float) -> int:
    cutoff = time.time() - grace_seconds
    removed = 0
    for sha256, touched in list(store.inventory()):
        if sha256 in marked or touched >= cutoff:
            continue
        again = store.touched(sha256)
        if again is None or again >= cutoff:
            continue
        store.delete(sha256)
        removed += 1
    return removed
