"""File service (port 8086): `uvicorn api.file.main:app --port 8086`."""

from api.common.service import create_service
from api.file.queries import READ_MODELS
from api.file.routes import router

app = create_service(
    "file",
    title="Hyderabad Infra: file service",
    description=(
        "Photos, floor plans and documents of listings. Uploading one file or up to 20 "
        "(`POST /api/files/upload`, `POST /api/files/bulk`: multipart, streamed to storage, never whole in "
        "memory; the type is told by the bytes: JPEG, PNG, WebP or PDF, else 415; polyglots refused; "
        "size limits from settings, else 413; SHA-256 recorded), downloading (`GET /api/files/{id}`: "
        "streamed, `ETag` = SHA-256, `Range` -> 206/416, `If-None-Match` -> 304, `?variant=768.webp` for an "
        "optimised size; documents are private to their owner, the listing's owner and admins), deleting "
        "(`DELETE /api/files/{id}`), a listing's files (`GET /api/files/property/{id}`, photos first, with "
        "variant URLs) and image optimisation jobs (`POST /api/files/optimize` -> 202 with job ids, "
        "`GET /api/files/optimize/{jobId}` for progress).\n\n"
        "Bytes live in a content-addressed blob store (local disk under the state directory, or S3 with "
        "`HI_BLOB_BACKEND=s3`). Facts go to the `files` topic (`file.uploaded`, `file.deleted`, "
        "`file.optimize_requested`, `file.optimized`, `file.optimization_failed`); the `file-projection` "
        "worker keeps the metadata in Postgres and each listing's file list in Redis; the `file-optimizer` "
        "worker makes the variants."
    ),
    uses={"kafka", "postgres", "redis"},
    read_models=READ_MODELS,
)
app.include_router(router)
