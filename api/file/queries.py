"""The file service's query side: the stores the `file-projection` and `file-optimizer` workers write.

- Postgres `files` (one row per file), `file_optimization_jobs`, `file_variants` (the optimiser's
  progress), and the property service's `properties` rows (does a listing exist, whose is it).
- Redis `files:property:{id}`: a property's file list, ordered, as the projection last wrote it.
A query sent with `X-Consistency-Token` first waits (bounded) for the checkpoint of the store it reads.
"""

from dataclasses import dataclass
from typing import Any

import orjson
from psycopg.rows import dict_row
from redis.asyncio import Redis

from api.common.auth import AccessClaims
from api.common.consistency import Reader, wait_for_positions
from api.common.status import ReadModel, fixed
from config.settings import Settings
from schemas.envelope import format_time
from schemas.files import PRIVATE_KINDS, file_document
from schemas.properties import Role
from schemas.read_models import (
    FILES_POSTGRES_CHECKPOINT,
    FILES_REDIS_CHECKPOINT,
    PROPERTIES_POSTGRES_CHECKPOINT,
    property_files_key,
)
from schemas.topics import FILES, PROPERTIES, USERS


def freshness_headers(fresh: bool) -> dict[str, str]:
    return {} if fresh else {"X-Consistency": "stale"}


# The file projection reads `files` and `users` (erasures); a token may name either.
_FILE_TOPICS = frozenset({FILES.name, USERS.name})
# What `/status` reports on: the files in Postgres and Redis, and the listings ownership is checked against.
READ_MODELS = fixed(
    ReadModel(FILES_POSTGRES_CHECKPOINT, _FILE_TOPICS),
    ReadModel(FILES_REDIS_CHECKPOINT, _FILE_TOPICS),
    ReadModel(PROPERTIES_POSTGRES_CHECKPOINT, frozenset({PROPERTIES.name})),
)


async def caught_up(
    reads: Reader,
    settings: Settings,
    checkpoint: str,
    token: str | None,
    topics: frozenset[str] = _FILE_TOPICS,
) -> bool:
    return await wait_for_positions(reads, checkpoint, topics, token, settings.consistency_wait_seconds)


async def _fetch(reads: Reader, sql: str, params: tuple[Any, ...]) -> list[dict[str, Any]]:
    async with reads.connection() as conn:
        cursor = await conn.cursor(row_factory=dict_row).execute(sql, params)  # type: ignore[arg-type]
        return await cursor.fetchall()


_FILE_COLUMNS = """id, owner_id, property_id, kind, content_type, size_bytes, sha256, filename, variants,
    optimized_at, uploaded_at, deleted"""


async def file_row(reads: Reader, file_id: str) -> dict[str, Any] | None:
    """A live file (not deleted, upload projected), or None."""
    rows = await _fetch(
        reads,
        f"SELECT {_FILE_COLUMNS} FROM files WHERE id = %s AND NOT deleted AND sha256 IS NOT NULL",  # noqa: S608
        (file_id,),
    )
    return rows[0] if rows else None


async def file_rows(reads: Reader, file_ids: list[str]) -> dict[str, dict[str, Any]]:
    rows = await _fetch(
        reads,
        f"SELECT {_FILE_COLUMNS} FROM files WHERE id = ANY(%s) AND NOT deleted AND sha256 IS NOT NULL",  # noqa: S608
        (file_ids,),
    )
    return {row["id"]: row for row in rows}


async def property_image_rows(reads: Reader, property_id: str) -> list[dict[str, Any]]:
    return await _fetch(
        reads,
        f"SELECT {_FILE_COLUMNS} FROM files WHERE property_id = %s AND NOT deleted AND sha256 IS NOT NULL"  # noqa: S608
        " AND content_type LIKE 'image/%%' ORDER BY kind, uploaded_at, id",
        (property_id,),
    )


@dataclass(frozen=True)
class Listing:
    property_id: str
    owner_id: str | None


async def listing(reads: Reader, settings: Settings, property_id: str, token: str | None = None) -> Listing | None:
    """The property, if it is listed (read from the property projection's Postgres rows)."""
    await caught_up(reads, settings, PROPERTIES_POSTGRES_CHECKPOINT, token, frozenset({PROPERTIES.name}))
    rows = await _fetch(
        reads,
        "SELECT id, owner_id FROM properties WHERE id = %s AND NOT deleted AND title IS NOT NULL",
        (property_id,),
    )
    return Listing(rows[0]["id"], rows[0]["owner_id"]) if rows else None


def is_admin(user: AccessClaims | None) -> bool:
    return user is not None and user.role == Role.ADMIN


def may_read(document: dict[str, Any], user: AccessClaims | None, property_owner: str | None) -> bool:
    """Photos and floor plans are public; a private document only for its owner, the listing's owner
    and admins."""
    if document["kind"] not in PRIVATE_KINDS:
        return True
    if user is None:
        return False
    return is_admin(user) or user.subject in (document["ownerId"], property_owner)


def document_of(row: dict[str, Any]) -> dict[str, Any]:
    return file_document(
        file_id=row["id"],
        owner_id=row["owner_id"],
        property_id=row["property_id"],
        kind=row["kind"],
        content_type=row["content_type"],
        size_bytes=row["size_bytes"],
        sha256=row["sha256"],
        filename=row["filename"],
        uploaded_at=format_time(row["uploaded_at"]) if row["uploaded_at"] else None,
        variants=row["variants"],
        optimized_at=format_time(row["optimized_at"]) if row["optimized_at"] else None,
    )


async def property_files(
    reads: Reader, redis: Redis, settings: Settings, property_id: str, token: str | None
) -> tuple[list[dict[str, Any]], bool]:
    """Every live file of the property, in listing order: Redis, falling back to Postgres."""
    fresh = await caught_up(reads, settings, FILES_REDIS_CHECKPOINT, token)
    raw = await redis.get(property_files_key(property_id))
    if raw is not None:
        return orjson.loads(raw)["items"], fresh
    rows = await _fetch(
        reads,
        f"SELECT {_FILE_COLUMNS} FROM files WHERE property_id = %s AND NOT deleted AND sha256 IS NOT NULL"  # noqa: S608
        " ORDER BY CASE kind WHEN 'photo' THEN 0 WHEN 'floor_plan' THEN 1 ELSE 2 END, uploaded_at, id",
        (property_id,),
    )
    return [document_of(row) for row in rows], fresh


async def job(reads: Reader, job_id: str) -> dict[str, Any] | None:
    rows = await _fetch(
        reads,
        "SELECT j.job_id, j.file_id, j.source_sha256, j.requested_by, j.status, j.error, j.variants, j.widths,"
        " j.formats, j.requested_at, j.finished_at, f.owner_id,"
        " (SELECT count(*) FROM file_variants v WHERE v.source_sha256 = j.source_sha256"
        "   AND v.width = ANY(j.widths) AND v.format = ANY(j.formats)) AS variants_made"
        " FROM file_optimization_jobs j LEFT JOIN files f ON f.id = j.file_id WHERE j.job_id = %s",
        (job_id,),
    )
    return rows[0] if rows else None
