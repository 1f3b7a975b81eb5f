"""Image uploads of a listing: checked by their bytes, stored in the shared blob store (storage/).

The declared content type is not trusted: the first bytes must be a JPEG, PNG or WebP signature, and
the same polyglot, truncation and pixel-count checks as the file service apply (storage/media.py).
Files are streamed to the store's temporary file in chunks (never whole in memory), hashed on the
way, and refused once they pass the size limit. The same bytes uploaded twice are stored once.
Once the decider has accepted them, each image is also announced as a file (`file.uploaded.v1`,
kind `photo`) so a listing's images are files of the file service too: listed, optimisable, served.
"""

import asyncio
import hashlib
from dataclasses import dataclass

from fastapi import Request, UploadFile

from api.common.deps import RequestContext
from api.common.errors import ApiError, field_error
from api.common.kafka import Position
from api.common.personal_keys import personal_key, sealed_filename
from schemas.envelope import new_event
from schemas.files import FILE_UPLOADED, FileKind, FileUploaded
from schemas.topics import FILES
from storage import BlobStore, BlobWriter
from storage.media import (
    EXTENSIONS,
    HEAD_BYTES,
    IMAGE_TYPES,
    SNIFF_BYTES,
    ZIP_TAIL_BYTES,
    clean_filename,
    image_problem,
    polyglot_problem,
    sniff,
)

MAX_IMAGE_BYTES = 10 * 1024 * 1024
CHUNK_BYTES = 256 * 1024


def sniff_image_type(head: bytes) -> str | None:
    kind = sniff(head)
    return kind if kind in IMAGE_TYPES else None


@dataclass(frozen=True)
class StoredImage:
    sha256: str
    content_type: str
    size_bytes: int
    filename: str


def _checked(writer: BlobWriter, content_type: str, max_pixels: int, name: str, field: str) -> None:
    refusal = polyglot_problem(content_type, writer.head(HEAD_BYTES), writer.tail(ZIP_TAIL_BYTES), writer.size)
    if refusal is None:
        refusal = image_problem(writer.path, content_type, max_pixels)
    if refusal is not None:
        raise ApiError(refusal.status, f"{name} {refusal.reason}", [field_error(field, refusal.reason)])


async def store_image(upload: UploadFile, store: BlobStore, field: str, max_pixels: int) -> StoredImage:
    name = upload.filename or "file"
    head = await upload.read(SNIFF_BYTES)
    content_type = sniff_image_type(head)
    if content_type is None:
        raise ApiError(
            415,
            f"{name} is not a JPEG, PNG or WebP image",
            [field_error(field, "only JPEG, PNG and WebP images are accepted")],
        )
    writer = store.writer()
    try:
        writer.write(head)
        while chunk := await upload.read(CHUNK_BYTES):
            if writer.size + len(chunk) > MAX_IMAGE_BYTES:
                raise ApiError(
                    413,
                    f"{name} is larger than {MAX_IMAGE_BYTES // (1024 * 1024)} MB",
                    [field_error(field, f"at most {MAX_IMAGE_BYTES} bytes")],
                )
            writer.write(chunk)
        writer.close()
        await asyncio.to_thread(_checked, writer, content_type, max_pixels, name, field)
        blob = await asyncio.to_thread(store.commit, writer)  # same bytes, same name: storing twice is harmless
        return StoredImage(blob.sha256, content_type, blob.size, clean_filename(upload.filename))
    finally:
        writer.discard()  # a no-op once committed


def image_file_id(property_id: str, sha256: str) -> str:
    """The same image of the same listing is always the same file."""
    return "file-" + hashlib.sha256(f"{property_id}|{sha256}".encode()).hexdigest()[:32]


async def announce_files(
    request: Request, property_id: str, owner_id: str, images: list[StoredImage], ctx: RequestContext
) -> list[Position]:
    """`file.uploaded.v1` for each accepted image (ids derived, so a retry duplicates nothing)."""
    key = await personal_key(request.app.state.pg_pool, owner_id)
    events = []
    for image in images:
        file_id = image_file_id(property_id, image.sha256)
        uploaded = FileUploaded(
            file_id=file_id,
            owner_id=owner_id,
            property_id=property_id,
            kind=FileKind.PHOTO,
            content_type=image.content_type,
            size_bytes=image.size_bytes,
            sha256=image.sha256,
            filename=sealed_filename(key, owner_id, image.filename or f"{file_id}.{EXTENSIONS[image.content_type]}"),
        )
        events.append(
            new_event(
                type=FILE_UPLOADED,
                subject=file_id,
                data=uploaded.to_wire(),
                service="property",
                userid=ctx.user_id,
                sessionid=ctx.session_id,
                correlationid=ctx.correlation_id,
            )
        )
    producer = request.app.state.producer
    return list(await asyncio.gather(*(producer.publish(FILES.name, event) for event in events)))
