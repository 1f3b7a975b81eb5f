"""Image uploads of a listing: checked by their bytes, stored in the shared blob store (storage/).

The declared content type is not trusted: the first bytes must be a JPEG, PNG or WebP signature, and
the same polyglot, truncation and pixel-count checks as the file service apply (storage/media.py).
Files are streamed to the store's temporary file in chunks (never whole in memory), hashed on the
way, and refused once they pass the size limit. They stay in the store's temporary files until the
decider has accepted the command (owner or admin, listing live, room for them): a refused upload
leaves no blob behind. The same bytes uploaded twice are stored once.
Once the decider has accepted them, each image is also announced as a file (`file.uploaded.v1`,
kind `photo`) so a listing's images are files of the file service too: listed, optimisable, served.
"""

import asyncio
import hashlib
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass

from fastapi import UploadFile
from psycopg_pool import AsyncConnectionPool

from api.common.deps import RequestContext
from api.common.errors import ApiError, field_error
from api.common.kafka import EventProducer, Position
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


@dataclass(frozen=True)
class CheckedImage:
    """An image that passed every check, still in the store's temporary file."""

    writer: BlobWriter
    image: StoredImage


async def check_image(upload: UploadFile, store: BlobStore, field: str, max_pixels: int) -> CheckedImage:
    """Read, hash and check an upload into a temporary file of the store (discarded on refusal)."""
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
    except BaseException:
        writer.discard()
        raise
    stored = StoredImage(writer.sha256, content_type, writer.size, clean_filename(upload.filename))
    return CheckedImage(writer, stored)


@asynccontextmanager
async def checked_images(
    uploads: list[UploadFile], store: BlobStore, max_pixels: int
) -> AsyncIterator[list[CheckedImage]]:
    """The uploads checked (`images[n]` names a refused one); whatever is not committed inside the
    block is discarded when it ends."""
    checked: list[CheckedImage] = []
    try:
        for n, upload in enumerate(uploads):
            checked.append(await check_image(upload, store, f"images[{n}]", max_pixels))
        yield checked
    finally:
        for image in checked:
            image.writer.discard()  # a no-op once committed


async def commit_images(store: BlobStore, images: list[CheckedImage]) -> None:
    for image in images:
        await asyncio.to_thread(store.commit, image.writer)  # same bytes, same name: storing twice is harmless


def image_file_id(property_id: str, sha256: str) -> str:
    """The same image of the same listing is always the same file."""
    return "file-" + hashlib.sha256(f"{property_id}|{sha256}".encode()).hexdigest()[:32]


async def announce_files(
    pool: AsyncConnectionPool,
    producer: EventProducer,
    property_id: str,
    owner_id: str,
    images: list[StoredImage],
    ctx: RequestContext,
) -> list[Position]:
    """`file.uploaded.v1` for each accepted image (ids derived, so a retry duplicates nothing)."""
    key = await personal_key(pool, owner_id)
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
    return list(await asyncio.gather(*(producer.publish(FILES.name, event) for event in events)))
