"""Image uploads: checked by their bytes, stored content-addressed under the state directory.

The declared content type is not trusted: the first bytes must be a JPEG, PNG or WebP signature.
Files are streamed to disk in chunks (never whole in memory), hashed on the way, and refused once
they pass the size limit. The same bytes uploaded twice are stored once.
"""

import hashlib
import os
import tempfile
from contextlib import suppress
from dataclasses import dataclass
from pathlib import Path

from fastapi import UploadFile

from api.common.errors import ApiError, field_error

MAX_IMAGE_BYTES = 10 * 1024 * 1024
CHUNK_BYTES = 256 * 1024


def sniff_image_type(head: bytes) -> str | None:
    if head.startswith(b"\xff\xd8\xff"):
        return "image/jpeg"
    if head.startswith(b"\x89PNG\r\n\x1a\n"):
        return "image/png"
    if len(head) >= 12 and head[:4] == b"RIFF" and head[8:12] == b"WEBP":
        return "image/webp"
    return None


@dataclass(frozen=True)
class StoredImage:
    sha256: str
    content_type: str
    size_bytes: int


def blob_path(blobs: Path, sha256: str) -> Path:
    return blobs / "sha256" / sha256[:2] / sha256


async def store_image(upload: UploadFile, blobs: Path, field: str) -> StoredImage:
    head = await upload.read(16)
    content_type = sniff_image_type(head)
    if content_type is None:
        raise ApiError(
            415,
            f"{upload.filename or 'file'} is not a JPEG, PNG or WebP image",
            [field_error(field, "only JPEG, PNG and WebP images are accepted")],
        )
    digest, size = hashlib.sha256(head), len(head)
    (blobs / "incoming").mkdir(parents=True, exist_ok=True)
    handle, temporary = tempfile.mkstemp(dir=blobs / "incoming")
    try:
        with os.fdopen(handle, "wb") as out:
            out.write(head)
            while chunk := await upload.read(CHUNK_BYTES):
                size += len(chunk)
                if size > MAX_IMAGE_BYTES:
                    raise ApiError(
                        413,
                        f"{upload.filename or 'file'} is larger than {MAX_IMAGE_BYTES // (1024 * 1024)} MB",
                        [field_error(field, f"at most {MAX_IMAGE_BYTES} bytes")],
                    )
                digest.update(chunk)
                out.write(chunk)
        sha256 = digest.hexdigest()
        target = blob_path(blobs, sha256)
        target.parent.mkdir(parents=True, exist_ok=True)
        os.replace(temporary, target)  # same bytes, same name: storing twice is harmless
        return StoredImage(sha256, content_type, size)
    finally:
        with suppress(FileNotFoundError):  # already moved into place when all went well
            os.unlink(temporary)
