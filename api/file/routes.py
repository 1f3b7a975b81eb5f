"""File endpoints (8086). Uploads are streamed to the blob store and announced on `files`; queries read
the `file-projection` worker's stores; optimisation is a job for the `file-optimizer` worker.

Routes never write a read store: an upload stores bytes (content-addressed, not a read model) and
produces `file.uploaded`; a deletion produces `file.deleted`; the projection does the rest.
"""

import asyncio
import re
from typing import Annotated, Any

from fastapi import APIRouter, Header, Path, Query, Request
from fastapi.responses import JSONResponse, Response
from psycopg_pool import AsyncConnectionPool

from api.common.auth import AccessClaims
from api.common.consistency import Reader
from api.common.contract import CONSISTENCY_TOKEN, ETAG, LOCATION, STALE, errors, success_headers
from api.common.deps import (
    AppSettings,
    Blobs,
    ConsistencyToken,
    Context,
    CurrentUser,
    FileId,
    IdempotencyKey,
    OptionalUser,
    PgPool,
    Producer,
    PropertyId,
    QueryReads,
    RedisClient,
    RequestContext,
)
from api.common.downloads import blob_response
from api.common.errors import ApiError, field_error
from api.common.idempotency import derived_id, fingerprint, idempotent
from api.common.kafka import CONSISTENCY_HEADER, EventProducer, Position, consistency_token
from api.common.pagination import Page, PageQuery, encode_cursor, page
from api.common.personal_keys import personal_key, sealed_filename
from api.common.responses import OrjsonResponse, Success, created, ok
from api.file import queries
from api.file.models import (
    BULK_BODY,
    OPTIMIZE_EXAMPLES,
    UPLOAD_BODY,
    BulkUploadOut,
    FileDeletedOut,
    FileOut,
    OptimizationJobOut,
    OptimizationQueuedOut,
    OptimizeIn,
)
from api.file.uploads import MULTIPART_OVERHEAD, Received, default_filename, receive, resolve_kind
from config.settings import Settings
from schemas.envelope import Envelope, format_time, new_event
from schemas.files import (
    FILE_DELETED,
    FILE_OPTIMIZE_REQUESTED,
    FILE_UPLOADED,
    PRIVATE_KINDS,
    VARIANT_WIDTHS,
    FileDeleted,
    FileKind,
    FileOptimizeRequested,
    FileUploaded,
    file_document,
    variant_formats,
    variant_name,
)
from schemas.ids import new_id
from schemas.registry import EventData
from schemas.topics import FILES
from storage import BlobStore

router = APIRouter(prefix="/api/files", tags=["files"])

JobId = Annotated[str, Path(pattern=r"^job-[A-Za-z0-9]{1,64}$", description="An optimisation job id, `job-…`")]
VariantQuery = Annotated[
    str | None,
    Query(
        pattern=r"^\d{2,5}\.(webp|jpeg|png)$",
        description="An optimised size, `<width>.<format>` as listed in the file's `variants`, e.g. `768.webp`",
    ),
]
_PROPERTY_ID = re.compile(r"^prop-[A-Za-z0-9]{1,64}$")


def _event(kind: str, file_id: str, data: EventData, ctx: RequestContext, event_id: str | None = None) -> Envelope:
    return new_event(
        type=kind,
        subject=file_id,
        data=data.to_wire(),
        service="file",
        userid=ctx.user_id,
        sessionid=ctx.session_id,
        correlationid=ctx.correlation_id,
        event_id=event_id,
    )


async def _publish(producer: EventProducer, events: list[Envelope]) -> list[Position]:
    return list(await asyncio.gather(*(producer.publish(FILES.name, event) for event in events)))


def _owner_or_admin(user: AccessClaims, owner: str | None, what: str) -> None:
    if not (queries.is_admin(user) or user.subject == owner):
        raise ApiError(403, f"Only the owner of this {what} or an admin may do that")


async def _checked_property(
    reads: Reader, settings: Settings, fields: dict[str, str], user: AccessClaims, token: str | None
) -> str | None:
    property_id = fields.get("propertyId") or None
    if property_id is None:
        return None
    if not _PROPERTY_ID.match(property_id):
        raise ApiError(422, "Invalid propertyId", [field_error("propertyId", "a property id, `prop-…`")])
    found = await queries.listing(reads, settings, property_id, token)
    if found is None:
        raise ApiError(404, f"Property {property_id} not found", [field_error("propertyId", "no such listing")])
    _owner_or_admin(user, found.owner_id, "listing")
    return property_id


def _uploaded(
    received: Received, file_id: str, user: AccessClaims, property_id: str | None, kind: FileKind
) -> FileUploaded:
    assert received.writer is not None and received.content_type is not None
    return FileUploaded(
        file_id=file_id,
        owner_id=user.subject,
        property_id=property_id,
        kind=kind,
        content_type=received.content_type,
        size_bytes=received.writer.size,
        sha256=received.writer.sha256,
        filename=received.filename or default_filename(file_id, received.content_type),
    )


def _uploaded_document(event: FileUploaded, at: str) -> dict[str, Any]:
    return file_document(
        file_id=event.file_id,
        owner_id=event.owner_id,
        property_id=event.property_id,
        kind=event.kind.value,
        content_type=event.content_type,
        size_bytes=event.size_bytes,
        sha256=event.sha256,
        filename=event.filename,
        uploaded_at=at,
        variants=[],
        optimized_at=None,
    )


async def _store_and_announce(
    store: BlobStore,
    pool: AsyncConnectionPool,
    producer: EventProducer,
    ctx: RequestContext,
    pairs: list[tuple[Received, FileUploaded]],
) -> tuple[list[Envelope], list[Position]]:
    """Commit the bytes (named by their hash), then produce the events: the bytes exist before any
    event names them, so a consumer never meets a file whose bytes are still on their way. The events
    carry the names sealed with the uploader's key; the answers, the names as sent."""
    for received, _ in pairs:
        assert received.writer is not None
        await asyncio.to_thread(store.commit, received.writer)
        received.writer = None
    keys = {owner: await personal_key(pool, owner) for owner in {uploaded.owner_id for _, uploaded in pairs}}
    events = []
    for _, uploaded in pairs:
        name = sealed_filename(keys[uploaded.owner_id], uploaded.owner_id, uploaded.filename)
        events.append(_event(FILE_UPLOADED, uploaded.file_id, uploaded.model_copy(update={"filename": name}), ctx))
    return events, await _publish(producer, events)


# ---- commands ----


@router.post(
    "/upload",
    status_code=201,
    summary="Upload one file (multipart): JPEG, PNG, WebP or PDF, told by its bytes",
    openapi_extra=UPLOAD_BODY,
    response_model=Success[FileOut],
    responses={
        201: {
            "description": "Stored; `Location: /api/files/file-…`",
            "headers": success_headers(LOCATION, CONSISTENCY_TOKEN),
        },
        **errors(403, 404, 409, 413, 415, 422),
    },
)
async def upload_file(
    request: Request,
    user: CurrentUser,
    ctx: Context,
    settings: AppSettings,
    store: Blobs,
    reads: QueryReads,
    pool: PgPool,
    redis: RedisClient,
    producer: Producer,
    idempotency_key: IdempotencyKey = None,
    consistency: ConsistencyToken = None,
) -> JSONResponse:
    """Streamed straight to storage (never whole in memory), SHA-256 recorded. Form fields: `file`
    (required), `propertyId` (your listing), `kind` (`photo`, `floor_plan`, `document`; by default
    photo for images, document for PDFs). Images may be `HI_FILE_MAX_IMAGE_BYTES` (25 MB), other files
    `HI_FILE_MAX_UPLOAD_BYTES` (256 MB). A listing you have just created is waited for (send its
    `X-Consistency-Token` if it was created elsewhere)."""
    body = await receive(
        request,
        store,
        settings,
        file_fields=frozenset({"file"}),
        max_files=1,
        max_body_bytes=settings.file_max_upload_bytes + MULTIPART_OVERHEAD,
    )
    try:
        if not body.files:
            raise ApiError(422, "No file in the request", [field_error("file", "attach one file as `file`")])
        received = body.files[0]
        kind = resolve_kind(received, body.fields.get("kind"))
        if not received.ok:
            raise ApiError(received.status, received.message, received.errors)
        property_id = await _checked_property(reads, settings, body.fields, user, consistency)
        file_id = (
            derived_id("file", "file.upload", user.subject, idempotency_key) if idempotency_key else new_id("file")
        )
        uploaded = _uploaded(received, file_id, user, property_id, kind)

        async def answer() -> JSONResponse:
            events, positions = await _store_and_announce(store, pool, producer, ctx, [(received, uploaded)])
            data = _uploaded_document(uploaded, format_time(events[0].time))
            return created(
                data,
                "File uploaded",
                f"/api/files/{file_id}",
                headers={CONSISTENCY_HEADER: consistency_token(positions)},
            )

        wire = {**uploaded.to_wire(), "fileId": None}
        return await idempotent(
            redis,
            scope="file.upload",
            user_id=user.subject,
            key=idempotency_key,
            request_fingerprint=fingerprint(request.method, request.url.path, wire),
            answer=answer,
        )
    finally:
        body.discard()


@router.post(
    "/bulk",
    summary="Upload up to 20 files in one request; a result per file",
    openapi_extra=BULK_BODY,
    response_model=Success[BulkUploadOut],
    responses={
        200: {"description": "Each file's own result: 201, 413, 415 or 422", "headers": CONSISTENCY_TOKEN},
        **errors(403, 404, 409, 413, 422),
    },
)
async def upload_bulk(
    request: Request,
    user: CurrentUser,
    ctx: Context,
    settings: AppSettings,
    store: Blobs,
    reads: QueryReads,
    pool: PgPool,
    redis: RedisClient,
    producer: Producer,
    idempotency_key: IdempotencyKey = None,
    consistency: ConsistencyToken = None,
) -> JSONResponse:
    """Form fields: `files` (1 to 20 parts), optional `propertyId` and `kind` for all of them. One bad
    file does not fail the others: `data.items[i]` is file i's result (`status` 201 with the file,
    or 413/415/422 with `errors`). The answer is 200 whenever the request itself was readable. With an
    `Idempotency-Key`, the same request sent again stores nothing twice and gets the first answer."""
    body = await receive(
        request,
        store,
        settings,
        file_fields=frozenset({"files"}),
        max_files=settings.file_bulk_max_files,
        max_body_bytes=settings.file_max_bulk_bytes,
    )
    try:
        if not body.files:
            raise ApiError(422, "No files in the request", [field_error("files", "attach 1 to 20 files as `files`")])
        requested_kind = body.fields.get("kind")
        kinds = [resolve_kind(received, requested_kind) for received in body.files]
        property_id = await _checked_property(reads, settings, body.fields, user, consistency)

        def file_id(index: int) -> str:
            if idempotency_key is None:
                return new_id("file")
            return derived_id("file", f"file.bulk:{index}", user.subject, idempotency_key)

        good = [
            (received, _uploaded(received, file_id(received.index), user, property_id, kind))
            for received, kind in zip(body.files, kinds, strict=True)
            if received.ok
        ]

        async def answer() -> JSONResponse:
            events, positions = await _store_and_announce(store, pool, producer, ctx, good) if good else ([], [])
            stored = {r.index: (uploaded, event) for (r, uploaded), event in zip(good, events, strict=True)}
            items = []
            for received in body.files:
                if received.index in stored:
                    uploaded, event = stored[received.index]
                    document = _uploaded_document(uploaded, format_time(event.time))
                    filename = uploaded.filename
                    items.append({"index": received.index, "filename": filename, "status": 201, "file": document})
                else:
                    items.append(received.problem())
            data = {"stored": len(stored), "refused": len(body.files) - len(stored), "items": items}
            headers = {CONSISTENCY_HEADER: consistency_token(positions)} if positions else {}
            return ok(data, f"{len(stored)} of {len(body.files)} files stored", headers)

        wire = [{**uploaded.to_wire(), "fileId": None} for _, uploaded in good]
        refused = [received.problem() for received in body.files if not received.ok]
        return await idempotent(
            redis,
            scope="file.bulk",
            user_id=user.subject,
            key=idempotency_key,
            request_fingerprint=fingerprint(request.method, request.url.path, {"stored": wire, "refused": refused}),
            answer=answer,
        )
    finally:
        body.discard()


@router.delete(
    "/{file_id}",
    summary="Delete a file (owner or admin): it leaves listings and downloads",
    response_model=Success[FileDeletedOut],
    responses={200: {"headers": CONSISTENCY_TOKEN}, **errors(403, 404)},
)
async def delete_file(
    file_id: FileId,
    user: CurrentUser,
    ctx: Context,
    settings: AppSettings,
    reads: QueryReads,
    producer: Producer,
    consistency: ConsistencyToken = None,
) -> JSONResponse:
    """Its bytes are removed by the garbage collector once no live file refers to them (identical
    uploads share bytes) and the grace period has passed."""
    await queries.caught_up(reads, settings, queries.FILES_POSTGRES_CHECKPOINT, consistency)
    row = await queries.file_row(reads, file_id)
    if row is None:
        raise ApiError(404, f"File {file_id} not found")
    _owner_or_admin(user, row["owner_id"], "file")
    deleted = FileDeleted(file_id=file_id, owner_id=row["owner_id"], property_id=row["property_id"])
    positions = await _publish(producer, [_event(FILE_DELETED, file_id, deleted, ctx)])
    return ok({"id": file_id}, "File deleted", {CONSISTENCY_HEADER: consistency_token(positions)})


@router.post(
    "/optimize",
    status_code=202,
    summary="Start optimising images: resized WebP + original-format variants without EXIF",
    openapi_extra={"requestBody": {"content": {"application/json": {"examples": OPTIMIZE_EXAMPLES}}}},
    response_model=Success[OptimizationQueuedOut],
    responses={202: {"headers": CONSISTENCY_TOKEN}, **errors(403, 404, 409, 415)},
)
async def optimize(
    body: OptimizeIn,
    request: Request,
    user: CurrentUser,
    ctx: Context,
    settings: AppSettings,
    reads: QueryReads,
    redis: RedisClient,
    producer: Producer,
    idempotency_key: IdempotencyKey = None,
    consistency: ConsistencyToken = None,
) -> JSONResponse:
    """`{"fileIds": [...]}` (1 to 100 of your images) or `{"propertyId": "prop-…"}` (every image of
    your listing). Answers 202 with one job per image; read progress at `GET /api/files/optimize/{jobId}`
    (`queued`, `running` with `variantsDone` of `variantsTotal`, `done`, `failed` with the reason).
    The `file-optimizer` worker makes 320, 768 and 1600 px wide variants (never upscaled) in WebP and the
    original format, with EXIF (GPS included), XMP and comments stripped, and records `file.optimized`."""
    await queries.caught_up(reads, settings, queries.FILES_POSTGRES_CHECKPOINT, consistency)
    if body.property_id is not None:
        found = await queries.listing(reads, settings, body.property_id, consistency)
        if found is None:
            raise ApiError(
                404, f"Property {body.property_id} not found", [field_error("propertyId", "no such listing")]
            )
        _owner_or_admin(user, found.owner_id, "listing")
        rows = await queries.property_image_rows(reads, body.property_id)
    else:
        assert body.file_ids is not None
        ids = list(dict.fromkeys(body.file_ids))
        found_rows = await queries.file_rows(reads, ids)
        rows = []
        for n, file_id in enumerate(ids):
            row = found_rows.get(file_id)
            if row is None:
                raise ApiError(404, f"File {file_id} not found", [field_error(f"fileIds[{n}]", "no such file")])
            _owner_or_admin(user, row["owner_id"], "file")
            if not str(row["content_type"]).startswith("image/"):
                raise ApiError(
                    415,
                    f"File {file_id} is {row['content_type']}; only images are optimised",
                    [field_error(f"fileIds[{n}]", "only JPEG, PNG and WebP images are optimised")],
                )
            rows.append(row)
    requests = []
    for row in rows:
        job_id = (
            derived_id("job", f"file.optimize:{row['id']}", user.subject, idempotency_key)
            if idempotency_key
            else new_id("job")
        )
        requests.append(
            FileOptimizeRequested(
                job_id=job_id,
                file_id=row["id"],
                sha256=row["sha256"],
                content_type=row["content_type"],
                widths=VARIANT_WIDTHS,
                requested_by=user.subject,
            )
        )

    async def answer() -> JSONResponse:
        # Derived event ids: a retry with the same Idempotency-Key produces the very same events.
        events = [
            _event(
                FILE_OPTIMIZE_REQUESTED,
                r.file_id,
                r,
                ctx,
                event_id=derived_id("evt", "file.optimize", r.job_id, "requested") if idempotency_key else None,
            )
            for r in requests
        ]
        positions = await _publish(producer, events)
        jobs = [
            {
                "jobId": r.job_id,
                "fileId": r.file_id,
                "status": "queued",
                "variantsTotal": len(r.widths) * len(variant_formats(r.content_type)),
                "url": f"/api/files/optimize/{r.job_id}",
            }
            for r in requests
        ]
        headers = {CONSISTENCY_HEADER: consistency_token(positions)} if positions else {}
        return OrjsonResponse(
            {"success": True, "message": f"{len(jobs)} optimisation job(s) queued", "data": {"jobs": jobs}},
            status_code=202,
            headers=headers,
        )

    return await idempotent(
        redis,
        scope="file.optimize",
        user_id=user.subject,
        key=idempotency_key,
        request_fingerprint=fingerprint(request.method, request.url.path, body.model_dump(mode="json")),
        answer=answer,
    )


# ---- queries ----


@router.get(
    "/optimize/{job_id}",
    summary="An optimisation job's progress",
    response_model=Success[OptimizationJobOut],
    responses={200: {"headers": STALE}, **errors(403, 404)},
)
async def optimization_job(
    job_id: JobId, user: CurrentUser, settings: AppSettings, reads: QueryReads, consistency: ConsistencyToken = None
) -> JSONResponse:
    """`status`: `queued` (nothing made yet), `running` (`variantsDone` of `variantsTotal` made),
    `done` (with the variants and their URLs) or `failed` (with `error`). The requester, the file's
    owner and admins may read it. A job you have just queued is waited for (from elsewhere, send the
    202's `X-Consistency-Token`)."""
    fresh = await queries.caught_up(reads, settings, queries.FILES_POSTGRES_CHECKPOINT, consistency)
    found = await queries.job(reads, job_id)
    if found is None:
        raise ApiError(404, f"Optimisation job {job_id} not found")
    if not (queries.is_admin(user) or user.subject in (found["requested_by"], found["owner_id"])):
        raise ApiError(403, "Only the requester, the file's owner or an admin may read this job")
    total = len(found["widths"]) * len(found["formats"])
    status = found["status"]
    done = total if status == "done" else min(found["variants_made"], total)
    if status == "queued" and done > 0:
        status = "running"
    data = {
        "jobId": found["job_id"],
        "fileId": found["file_id"],
        "status": status,
        "variantsDone": done,
        "variantsTotal": total,
        "variants": [
            {
                **variant,
                "name": variant_name(variant["width"], variant["format"]),
                "url": f"/api/files/{found['file_id']}?variant={variant_name(variant['width'], variant['format'])}",
            }
            for variant in found["variants"]
        ],
        "error": found["error"],
        "requestedAt": format_time(found["requested_at"]) if found["requested_at"] else None,
        "finishedAt": format_time(found["finished_at"]) if found["finished_at"] else None,
    }
    return ok(data, "Optimisation job", queries.freshness_headers(fresh))


@router.get(
    "/property/{property_id}",
    summary="A listing's files: photos first, then floor plans, documents",
    response_model=Success[Page[FileOut]],
    responses={200: {"headers": STALE}, **errors(404)},
)
async def property_files(
    property_id: PropertyId,
    user: OptionalUser,
    paging: PageQuery,
    settings: AppSettings,
    reads: QueryReads,
    redis: RedisClient,
    consistency: ConsistencyToken = None,
) -> JSONResponse:
    """Each with its download URL and its variants' URLs. Private documents are listed only for their
    owner, the listing's owner and admins."""
    # The listing too may be one the caller has just created: it is looked up after the wait.
    found = await queries.listing(reads, settings, property_id, consistency)
    if found is None:
        raise ApiError(404, f"Property {property_id} not found")
    items, fresh = await queries.property_files(reads, redis, settings, property_id, consistency)
    visible = [item for item in items if queries.may_read(item, user, found.owner_id)]
    start = 0
    if paging.cursor is not None:
        position = paging.cursor.get("i")
        if not isinstance(position, int) or position < 0:
            raise ApiError(400, "Invalid cursor", [field_error("cursor", "not a cursor of this list")])
        start = position
    chosen = visible[start : start + paging.limit]
    more = start + paging.limit < len(visible)
    cursor = encode_cursor({"i": start + paging.limit}) if more else None
    return ok(page(chosen, cursor), "Property files", queries.freshness_headers(fresh))


# What a download can be: the types an upload is told to be by its bytes, and the variants made of images.
_BYTES = {
    media: {"schema": {"type": "string", "format": "binary"}}
    for media in ("image/jpeg", "image/png", "image/webp", "application/pdf")
}
_SERVED = success_headers(
    ETAG,
    {"Accept-Ranges": {"description": "`bytes`: ranges are served", "schema": {"type": "string"}}},
    {
        "Content-Disposition": {
            "description": "`inline` for public images, else `attachment`",
            "schema": {"type": "string"},
        }
    },
)
_CONTENT_RANGE = {"Content-Range": {"description": "`bytes <first>-<last>/<size>`", "schema": {"type": "string"}}}


@router.head("/{file_id}", include_in_schema=False)
@router.get(
    "/{file_id}",
    summary="Download a file or one of its variants (streamed; Range, ETag, If-None-Match)",
    response_class=Response,
    responses={
        200: {"description": "The bytes, of the type told by them at upload", "content": _BYTES, "headers": _SERVED},
        206: {
            "description": "The range asked for",
            "content": _BYTES,
            "headers": success_headers(_SERVED, _CONTENT_RANGE),
        },
        304: {"description": "Not modified (If-None-Match matched the ETag)", "headers": ETAG},
        **errors(401, 403, 404, 416),
    },
)
async def download(
    file_id: FileId,
    request: Request,
    user: OptionalUser,
    settings: AppSettings,
    reads: QueryReads,
    store: Blobs,
    variant: VariantQuery = None,
    consistency: ConsistencyToken = None,
    range_header: Annotated[str | None, Header(alias="Range", max_length=200)] = None,
    if_range: Annotated[str | None, Header(alias="If-Range", max_length=200)] = None,
    if_none_match: Annotated[str | None, Header(alias="If-None-Match", max_length=2000)] = None,
) -> Response:
    """Photos and floor plans are public; a document only for its owner, the listing's owner and
    admins (401 without a token, 403 for anyone else). `ETag` is the SHA-256 of the bytes served."""
    await queries.caught_up(reads, settings, queries.FILES_POSTGRES_CHECKPOINT, consistency)
    row = await queries.file_row(reads, file_id)
    if row is None:
        raise ApiError(404, f"File {file_id} not found")
    private = row["kind"] in PRIVATE_KINDS
    if private:
        if user is None:
            raise ApiError(401, "This document is private: sign in", headers={"WWW-Authenticate": "Bearer"})
        if not (queries.is_admin(user) or user.subject == row["owner_id"]):
            listing = (
                await queries.listing(reads, settings, row["property_id"], consistency) if row["property_id"] else None
            )
            if listing is None or listing.owner_id != user.subject:
                raise ApiError(403, "This document is private to its owner")
    sha256, size, content_type, filename = row["sha256"], row["size_bytes"], row["content_type"], row["filename"]
    if variant is not None:
        chosen = next((v for v in row["variants"] if variant_name(v["width"], v["format"]) == variant), None)
        if chosen is None:
            made = ", ".join(variant_name(v["width"], v["format"]) for v in row["variants"]) or "none yet"
            raise ApiError(404, f"File {file_id} has no variant {variant} (made: {made}); see POST /api/files/optimize")
        sha256, size, content_type = chosen["sha256"], chosen["sizeBytes"], chosen["contentType"]
        stem = filename.rsplit(".", 1)[0] if "." in filename else filename
        filename = f"{stem}-{chosen['width']}.{chosen['format'].replace('jpeg', 'jpg')}"
    return await blob_response(
        store,
        sha256=sha256,
        size=size,
        content_type=content_type,
        filename=filename,
        inline=not private and content_type.startswith("image/"),
        cache_control="private, no-cache" if private else "public, max-age=86400",
        method=request.method,
        range_header=range_header,
        if_range=if_range,
        if_none_match=if_none_match,
    )
