"""Receiving files: the multipart stream -> checked, hashed temporary files, ready to be committed.

Per file part: the first 16 bytes decide the type (415 when it is none we take); the bytes go to the
blob store's temporary file as they arrive, hashed on the way; past the size limit of its type (413)
the rest of the part is read and dropped, so one bad file in a bulk request leaves the others alone.
Once the body has arrived, each file's ends are checked for polyglots and truncation, and an image's
header for its pixel count (storage/media.py). Nothing is committed (named by its hash and kept) here:
the route does that once the whole request is known to be good.
"""

import asyncio
from dataclasses import dataclass, field
from typing import Any

from fastapi import Request

from api.common.errors import ApiError, FieldError, field_error
from api.file import multipart
from config import Settings
from schemas.files import FileKind
from storage import BlobStore, BlobWriter
from storage.media import (
    EXTENSIONS,
    HEAD_BYTES,
    IMAGE_TYPES,
    PDF,
    SNIFF_BYTES,
    ZIP_TAIL_BYTES,
    Refusal,
    clean_filename,
    image_problem,
    polyglot_problem,
    sniff,
)

FIELD_MAX_BYTES = 1024
# Room for the part headers and boundaries around a file of the largest size.
MULTIPART_OVERHEAD = 64 * 1024
_ACCEPTED = "JPEG, PNG or WebP images and PDF documents"


@dataclass
class Received:
    """One file part as it arrived."""

    index: int
    field: str
    filename: str
    content_type: str | None = None
    size: int = 0
    writer: BlobWriter | None = None
    status: int = 0  # 0 while fine; else the HTTP status of its refusal
    message: str = ""
    errors: list[FieldError] = field(default_factory=list)
    _head: bytearray = field(default_factory=bytearray)

    @property
    def ok(self) -> bool:
        return self.status == 0

    def refuse(self, status: int, message: str, field_message: str | None = None) -> None:
        if not self.ok:
            return
        self.status, self.message = status, message
        self.errors = [field_error(self.field, field_message or message)]
        if self.writer is not None:
            self.writer.discard()
            self.writer = None

    def discard(self) -> None:
        if self.writer is not None:
            self.writer.discard()
            self.writer = None

    def problem(self) -> dict[str, Any]:
        return {
            "index": self.index,
            "filename": self.filename,
            "status": self.status,
            "message": self.message,
            "errors": self.errors,
        }


@dataclass
class Body:
    fields: dict[str, str]
    files: list[Received]

    def discard(self) -> None:
        for received in self.files:
            received.discard()


def size_limit(settings: Settings, content_type: str | None) -> int:
    if content_type in IMAGE_TYPES:
        return settings.file_max_image_bytes
    return settings.file_max_upload_bytes


def _megabytes(n: int) -> str:
    return f"{n / (1024 * 1024):g} MB"


class _Receiver:
    def __init__(self, store: BlobStore, settings: Settings, file_fields: frozenset[str], max_files: int) -> None:
        self.store = store
        self.settings = settings
        self.file_fields = file_fields
        self.max_files = max_files
        self.body = Body({}, [])
        self._file: Received | None = None
        self._field: tuple[str, bytearray] | None = None

    def start(self, part: multipart.PartStart) -> None:
        if part.filename is None:
            self._field = (part.name, bytearray())
            return
        if part.name not in self.file_fields:
            wanted = " or ".join(f"`{name}`" for name in sorted(self.file_fields))
            raise ApiError(
                422, f"Unexpected file field {part.name!r}", [field_error(part.name, f"send files as {wanted}")]
            )
        if len(self.body.files) >= self.max_files:
            name = sorted(self.file_fields)[0]
            raise ApiError(
                422, f"At most {self.max_files} file(s) per request", [field_error(name, f"at most {self.max_files}")]
            )
        index = len(self.body.files)
        field_name = part.name if self.max_files == 1 else f"{part.name}[{index}]"
        self._file = Received(index, field_name, clean_filename(part.filename))
        self.body.files.append(self._file)

    def data(self, chunk: bytes) -> None:
        if self._field is not None:
            name, value = self._field
            value += chunk
            if len(value) > FIELD_MAX_BYTES:
                raise ApiError(
                    422, f"Field {name!r} is too long", [field_error(name, f"at most {FIELD_MAX_BYTES} bytes")]
                )
            return
        received = self._file
        if received is None:  # pragma: no cover - the parser never sends data outside a part
            return
        received.size += len(chunk)
        if not received.ok:
            return  # refused already: the rest of the part is read and dropped
        if received.writer is None:
            received._head += chunk
            if len(received._head) >= SNIFF_BYTES:
                self._typed(received)
            return
        received.writer.write(chunk)
        self._check_size(received)

    def _typed(self, received: Received) -> None:
        head, received._head = bytes(received._head), bytearray()
        received.content_type = sniff(head)
        if received.content_type is None:
            received.refuse(
                415, f"{received.filename or 'the file'} is not one of the accepted types", f"only {_ACCEPTED}"
            )
            return
        received.writer = self.store.writer()
        received.writer.write(head)
        self._check_size(received)

    def _check_size(self, received: Received) -> None:
        limit = size_limit(self.settings, received.content_type)
        if received.size > limit:
            kind = "an image" if received.content_type in IMAGE_TYPES else "a file"
            received.refuse(
                413,
                f"{received.filename or 'the file'} is larger than {_megabytes(limit)}",
                f"{kind} may be at most {limit} bytes",
            )

    def end(self) -> None:
        if self._field is not None:
            name, value = self._field
            self.body.fields[name] = value.decode("utf-8", "replace").strip()
            self._field = None
            return
        received, self._file = self._file, None
        if received is None or not received.ok:
            return
        if received.writer is None:
            if not received._head:
                received.refuse(422, f"{received.filename or 'the file'} is empty", "the file has no bytes")
                return
            self._typed(received)
        if received.writer is not None:
            received.writer.close()


async def receive(
    request: Request,
    store: BlobStore,
    settings: Settings,
    *,
    file_fields: frozenset[str],
    max_files: int,
    max_body_bytes: int,
) -> Body:
    """Read the whole multipart body; every file part ends up spooled (or refused with its status)."""
    declared = multipart.declared_length(request)
    if declared is not None and declared > max_body_bytes:
        # Refused before a byte is read; a client that sent `Expect: 100-continue` sends nothing more.
        raise ApiError(
            413,
            f"The request is larger than {_megabytes(max_body_bytes)}",
            [field_error("Content-Length", f"at most {max_body_bytes} bytes")],
        )
    receiver = _Receiver(store, settings, file_fields, max_files)
    total = 0
    try:
        async for event in multipart.parts(request):
            if isinstance(event, multipart.PartStart):
                receiver.start(event)
            elif isinstance(event, multipart.PartData):
                total += len(event.data)
                if total > max_body_bytes:
                    raise ApiError(
                        413,
                        f"The request is larger than {_megabytes(max_body_bytes)}",
                        [field_error("body", f"at most {max_body_bytes} bytes")],
                    )
                receiver.data(event.data)
            else:
                receiver.end()
        if receiver._file is not None or receiver._field is not None:
            raise ApiError(422, "Malformed multipart body", [field_error("body", "a part was never closed")])
        await asyncio.to_thread(_inspect, receiver.body.files, settings)
    except BaseException:
        receiver.body.discard()
        # Let a client that is still sending read our answer rather than meet a closed socket.
        await multipart.drain(request, limit=max_body_bytes)
        raise
    return receiver.body


def _inspect(files: list[Received], settings: Settings) -> None:
    """The checks that need the whole file: its ends (polyglots, truncation) and an image's header."""
    for received in files:
        if not received.ok or received.writer is None or received.content_type is None:
            continue
        writer = received.writer
        refusal: Refusal | None = polyglot_problem(
            received.content_type, writer.head(HEAD_BYTES), writer.tail(ZIP_TAIL_BYTES), writer.size
        )
        if refusal is None and received.content_type in IMAGE_TYPES:
            refusal = image_problem(writer.path, received.content_type, settings.file_max_image_pixels)
        if refusal is not None:
            received.refuse(refusal.status, f"{received.filename or 'the file'} {refusal.reason}")


def resolve_kind(received: Received, requested: str | None) -> FileKind:
    """The kind asked for, or by type: images are photos, PDFs documents. A photo must be an image."""
    if requested is None or requested == "":
        return FileKind.PHOTO if received.content_type in IMAGE_TYPES else FileKind.DOCUMENT
    try:
        kind = FileKind(requested)
    except ValueError:
        kinds = ", ".join(k.value for k in FileKind)
        raise ApiError(422, "Invalid kind", [field_error("kind", f"one of {kinds}")]) from None
    if kind == FileKind.PHOTO and received.content_type == PDF:
        received.refuse(415, f"{received.filename or 'the file'} is a PDF; a photo must be a JPEG, PNG or WebP image")
    return kind


def default_filename(file_id: str, content_type: str) -> str:
    return f"{file_id}.{EXTENSIONS.get(content_type, 'bin')}"
