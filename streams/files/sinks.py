"""Sinks of the file projection: Postgres (files, jobs, list versions) and Redis (a property's files).

- Postgres: every file row and job row carries the offset of the last event applied (`last_offset`);
  a write applies only when its offset is newer, and a deleted or erased file stays so. The batch's
  changes, each touched property's list version and the checkpoint `files-postgres` are one
  transaction, which returns every touched property's list as of that version.
- Redis `files:property:{id}` = `{"version": v, "items": [...]}`: a Lua script writes it only when
  the stored version is not newer. Versions come from `file_property_lists`, raised under a row lock
  in the transaction that read the list, so a newer list always carries a higher version, whichever
  worker (or replaying group) writes last. Checkpoint `files-redis` once the pipeline has returned.
"""

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import orjson
from psycopg import AsyncConnection
from psycopg.rows import class_row
from psycopg.types.json import Jsonb
from psycopg_pool import AsyncConnectionPool
from redis.asyncio import Redis

from schemas.personal import FILENAME, UnreadablePersonalData, is_sealed, unseal
from schemas.read_models import FILES_POSTGRES_CHECKPOINT, property_files_key
from streams.checkpoints import raise_checkpoints
from streams.files.projection import (
    FileChange,
    FileRemoved,
    FileRow,
    FileStored,
    JobFailed,
    JobQueued,
    OwnerErased,
    VariantsMade,
    list_document,
)
from streams.personal_keys import personal_keys
from streams.positions import SourcePosition

_STORE_FILE = """
INSERT INTO files (id, owner_id, property_id, kind, content_type, size_bytes, sha256, filename, uploaded_at,
    deleted, deleted_at, erased, last_offset, last_event_id, updated_at)
VALUES (%(id)s, %(owner_id)s, %(property_id)s, %(kind)s, %(content_type)s, %(size_bytes)s, %(sha256)s,
    CASE WHEN %(erased)s THEN NULL ELSE %(filename)s END, %(at)s,
    %(erased)s, CASE WHEN %(erased)s THEN %(at)s END, %(erased)s, %(offset)s, %(event_id)s, %(at)s)
ON CONFLICT (id) DO UPDATE SET
    owner_id = EXCLUDED.owner_id, property_id = EXCLUDED.property_id, kind = EXCLUDED.kind,
    content_type = EXCLUDED.content_type, size_bytes = EXCLUDED.size_bytes, sha256 = EXCLUDED.sha256,
    filename = CASE WHEN files.erased OR EXCLUDED.erased THEN NULL ELSE EXCLUDED.filename END,
    uploaded_at = COALESCE(files.uploaded_at, EXCLUDED.uploaded_at),
    deleted = files.deleted OR EXCLUDED.deleted, deleted_at = COALESCE(files.deleted_at, EXCLUDED.deleted_at),
    erased = files.erased OR EXCLUDED.erased,
    last_offset = EXCLUDED.last_offset, last_event_id = EXCLUDED.last_event_id, updated_at = now()
WHERE files.last_offset < EXCLUDED.last_offset
"""

_REMOVE_FILE = """
INSERT INTO files (id, owner_id, property_id, deleted, deleted_at, last_offset, last_event_id, updated_at)
VALUES (%(id)s, %(owner_id)s, %(property_id)s, true, %(at)s, %(offset)s, %(event_id)s, %(at)s)
ON CONFLICT (id) DO UPDATE SET
    deleted = true, deleted_at = COALESCE(files.deleted_at, EXCLUDED.deleted_at),
    property_id = COALESCE(files.property_id, EXCLUDED.property_id),
    last_offset = EXCLUDED.last_offset, last_event_id = EXCLUDED.last_event_id, updated_at = now()
WHERE files.last_offset < EXCLUDED.last_offset
"""

_SET_VARIANTS = """
INSERT INTO files (id, variants, optimized_at, last_offset, last_event_id, updated_at)
VALUES (%(id)s, %(variants)s, %(at)s, %(offset)s, %(event_id)s, %(at)s)
ON CONFLICT (id) DO UPDATE SET
    variants = EXCLUDED.variants, optimized_at = EXCLUDED.optimized_at,
    last_offset = EXCLUDED.last_offset, last_event_id = EXCLUDED.last_event_id, updated_at = now()
WHERE files.last_offset < EXCLUDED.last_offset
"""

# A request never touches the status: a redelivered request (same job, later offset) must not reopen
# a job the optimiser has closed.
_QUEUE_JOB = """
INSERT INTO file_optimization_jobs (job_id, file_id, source_sha256, requested_by, status, widths, formats,
    requested_at, last_offset, updated_at)
VALUES (%(job_id)s, %(file_id)s, %(sha256)s, %(requested_by)s, 'queued', %(widths)s, %(formats)s, %(at)s,
    %(offset)s, now())
ON CONFLICT (job_id) DO UPDATE SET
    file_id = EXCLUDED.file_id, source_sha256 = EXCLUDED.source_sha256, requested_by = EXCLUDED.requested_by,
    widths = EXCLUDED.widths, formats = EXCLUDED.formats,
    requested_at = COALESCE(file_optimization_jobs.requested_at, EXCLUDED.requested_at),
    last_offset = GREATEST(file_optimization_jobs.last_offset, EXCLUDED.last_offset), updated_at = now()
"""

_CLOSE_JOB = """
INSERT INTO file_optimization_jobs (job_id, file_id, status, error, variants, finished_at, last_offset, updated_at)
VALUES (%(job_id)s, %(file_id)s, %(status)s, %(error)s, %(variants)s, %(at)s, %(offset)s, now())
ON CONFLICT (job_id) DO UPDATE SET
    status = EXCLUDED.status, error = EXCLUDED.error, variants = EXCLUDED.variants,
    finished_at = EXCLUDED.finished_at,
    last_offset = GREATEST(file_optimization_jobs.last_offset, EXCLUDED.last_offset), updated_at = now()
WHERE file_optimization_jobs.status = 'queued' OR file_optimization_jobs.last_offset < EXCLUDED.last_offset
"""

_ERASE_OWNER = """
WITH remembered AS (
    INSERT INTO file_erased_owners (user_id, erased_at) VALUES (%(user_id)s, %(at)s) ON CONFLICT DO NOTHING
)
UPDATE files SET deleted = true, deleted_at = COALESCE(deleted_at, %(at)s), erased = true, filename = NULL,
    updated_at = now()
WHERE owner_id = %(user_id)s AND NOT (erased AND filename IS NULL)
"""
# Every listing the owner had files in, erased now or by an earlier delivery (whose Redis write a crash
# may have cut short).
_OWNERS_PROPERTIES = "SELECT DISTINCT property_id FROM files WHERE owner_id = %s AND property_id IS NOT NULL"

_ERASED_OWNERS = "SELECT user_id FROM file_erased_owners WHERE user_id = ANY(%s)"
_PROPERTIES_OF = "SELECT DISTINCT property_id FROM files WHERE id = ANY(%s) AND property_id IS NOT NULL"

_BUMP_LISTS = """
INSERT INTO file_property_lists (property_id, version)
SELECT p, 1 FROM unnest(%s::text[]) p ORDER BY p
ON CONFLICT (property_id) DO UPDATE SET version = file_property_lists.version + 1
RETURNING property_id, version
"""

_LIST_ROWS = """
SELECT id, owner_id, property_id, kind, content_type, size_bytes, sha256, filename, variants, optimized_at,
    uploaded_at
FROM files
WHERE property_id = ANY(%s) AND NOT deleted AND sha256 IS NOT NULL
ORDER BY property_id, CASE kind WHEN 'photo' THEN 0 WHEN 'floor_plan' THEN 1 ELSE 2 END, uploaded_at, id
"""


@dataclass(frozen=True)
class PropertyList:
    property_id: str
    version: int
    rows: list[FileRow]


def _stored(change: FileStored, erased: bool, key: bytes | None) -> dict[str, Any]:
    file = change.file
    return {
        "id": file.file_id,
        "owner_id": file.owner_id,
        "property_id": file.property_id,
        "kind": file.kind.value,
        "content_type": file.content_type,
        "size_bytes": file.size_bytes,
        "sha256": file.sha256,
        "filename": _opened_filename(change, key),
        "erased": erased,
        "at": change.at,
        "offset": change.offset,
        "event_id": change.event_id,
    }


def _opened_filename(change: FileStored, key: bytes | None) -> str:
    """The name as uploaded; a sealed name whose key is gone (the uploader closed their account) is
    replaced by the file's id, which names nobody."""
    file = change.file
    if not is_sealed(file.filename):
        return file.filename
    if key is None:
        return file.file_id
    try:
        return unseal(key, file.owner_id, FILENAME, file.filename)
    except UnreadablePersonalData:
        return file.file_id


class PostgresFileSink:
    def __init__(self, pool: AsyncConnectionPool, projection: str = FILES_POSTGRES_CHECKPOINT) -> None:
        self._pool = pool
        self._projection = projection

    async def apply(self, changes: Sequence[FileChange], positions: Sequence[SourcePosition]) -> list[PropertyList]:
        """Apply the changes in order, raise the touched lists' versions and the checkpoint, in one
        transaction; return every touched property's list (also when nothing changed: a redelivery
        must still reach Redis if the crash came between Postgres and Redis)."""
        async with self._pool.connection() as conn, conn.transaction():
            touched = await self._apply(conn, changes)
            lists = await self._lists(conn, sorted(touched))
            await raise_checkpoints(conn, self._projection, positions)
        return lists

    @staticmethod
    async def _apply(conn: AsyncConnection[Any], changes: Sequence[FileChange]) -> set[str]:
        touched: set[str] = set()
        owners = sorted({c.file.owner_id for c in changes if isinstance(c, FileStored)})
        erased_owners: set[str] = set()
        keys: dict[str, bytes] = {}
        if owners:
            cursor = await conn.execute(_ERASED_OWNERS, (owners,))
            erased_owners = {row[0] for row in await cursor.fetchall()}
            keys = await personal_keys(conn, owners)  # to open the file names sealed with them
        optimized: list[str] = []
        for change in changes:
            if isinstance(change, FileStored):
                owner = change.file.owner_id
                await conn.execute(_STORE_FILE, _stored(change, owner in erased_owners, keys.get(owner)))
                if change.file.property_id:
                    touched.add(change.file.property_id)
            elif isinstance(change, FileRemoved):
                file = change.file
                await conn.execute(
                    _REMOVE_FILE,
                    {
                        "id": file.file_id,
                        "owner_id": file.owner_id,
                        "property_id": file.property_id,
                        "at": change.at,
                        "offset": change.offset,
                        "event_id": change.event_id,
                    },
                )
                if file.property_id:
                    touched.add(file.property_id)
            elif isinstance(change, JobQueued):
                request = change.request
                await conn.execute(
                    _QUEUE_JOB,
                    {
                        "job_id": request.job_id,
                        "file_id": request.file_id,
                        "sha256": request.sha256,
                        "requested_by": request.requested_by,
                        "widths": list(request.widths),
                        "formats": list(change.formats),
                        "at": change.at,
                        "offset": change.offset,
                    },
                )
            elif isinstance(change, VariantsMade):
                result = change.result
                variants = [variant.to_wire() for variant in result.variants]
                await conn.execute(
                    _SET_VARIANTS,
                    {
                        "id": result.file_id,
                        "variants": Jsonb(variants),
                        "at": change.at,
                        "offset": change.offset,
                        "event_id": change.event_id,
                    },
                )
                if result.job_id:
                    await conn.execute(
                        _CLOSE_JOB,
                        {
                            "job_id": result.job_id,
                            "file_id": result.file_id,
                            "status": "done",
                            "error": None,
                            "variants": Jsonb(variants),
                            "at": change.at,
                            "offset": change.offset,
                        },
                    )
                optimized.append(result.file_id)
            elif isinstance(change, JobFailed):
                failure = change.failure
                await conn.execute(
                    _CLOSE_JOB,
                    {
                        "job_id": failure.job_id,
                        "file_id": failure.file_id,
                        "status": "failed",
                        "error": failure.error,
                        "variants": Jsonb([]),
                        "at": change.at,
                        "offset": change.offset,
                    },
                )
            elif isinstance(change, OwnerErased):
                await conn.execute(_ERASE_OWNER, {"user_id": change.user_id, "at": change.at})
                cursor = await conn.execute(_OWNERS_PROPERTIES, (change.user_id,))
                touched.update(row[0] for row in await cursor.fetchall())
                erased_owners.add(change.user_id)
        if optimized:
            cursor = await conn.execute(_PROPERTIES_OF, (optimized,))
            touched.update(row[0] for row in await cursor.fetchall())
        return touched

    @staticmethod
    async def _lists(conn: AsyncConnection[Any], property_ids: list[str]) -> list[PropertyList]:
        if not property_ids:
            return []
        # The upsert locks each list's row until commit: lists are read (and versioned) one writer at a time.
        cursor = await conn.execute(_BUMP_LISTS, (property_ids,))
        versions = dict(await cursor.fetchall())
        async with conn.cursor(row_factory=class_row(FileRow)) as rows_cursor:
            await rows_cursor.execute(_LIST_ROWS, (property_ids,))
            rows = await rows_cursor.fetchall()
        by_property: dict[str, list[FileRow]] = {p: [] for p in property_ids}
        for row in rows:
            assert row.property_id is not None
            by_property[row.property_id].append(row)
        return [PropertyList(p, versions[p], by_property[p]) for p in property_ids]


# KEYS: files:property:{id}   ARGV: version, document
_WRITE_LIST = """
local current = redis.call('GET', KEYS[1])
if current then
  local ok, stored = pcall(cjson.decode, current)
  if ok and type(stored) == 'table' and tonumber(stored['version']) and
     tonumber(stored['version']) > tonumber(ARGV[1]) then
    return 0
  end
end
redis.call('SET', KEYS[1], ARGV[2])
return 1
"""


class RedisFileListSink:
    def __init__(self, redis: Redis) -> None:
        self._redis = redis
        self._write = redis.register_script(_WRITE_LIST)

    async def write(self, lists: Sequence[PropertyList]) -> dict[str, str]:
        """Returns {property id: error} for writes Redis refused (connection problems raise instead)."""
        if not lists:
            return {}
        async with self._redis.pipeline(transaction=False) as pipe:
            for listed in lists:
                document = orjson.dumps({"version": listed.version, "items": list_document(listed.rows)})
                await self._write(
                    keys=[property_files_key(listed.property_id)], args=[listed.version, document], client=pipe
                )
            results = await pipe.execute(raise_on_error=False)
        return {
            listed.property_id: str(result)
            for listed, result in zip(lists, results, strict=True)
            if isinstance(result, Exception)
        }
