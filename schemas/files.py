"""The file aggregate's language: events on `files`, keyed by the file id (`file-…`).

Files have no decider: an upload is a fact (the bytes are stored, content-addressed, before the event
is produced), a deletion is refused or accepted by the file service from the read model (only the
owner or an admin may, and a deleted file stays deleted), and optimisation results are facts of the
optimiser. One file's events share a partition, so their offsets order them; the events carry no
`sequence`.

- `file.uploaded.v1`     the file service (and the property service's image upload) stored the bytes.
- `file.deleted.v1`      owner or admin removed it: it leaves listings and downloads.
- `file.optimize_requested.v1`  a job: make the resized variants of one image.
- `file.optimized.v1`    the optimiser made them (each variant EXIF-free); closes the job.
- `file.optimization_failed.v1` the optimiser could not (not decodable, truncated, a bomb): closes the job.
"""

from enum import StrEnum
from typing import Any

from pydantic import Field

from schemas.registry import EVENTS, EventData

FILE_UPLOADED = "file.uploaded.v1"
FILE_DELETED = "file.deleted.v1"
FILE_OPTIMIZE_REQUESTED = "file.optimize_requested.v1"
FILE_OPTIMIZED = "file.optimized.v1"
FILE_OPTIMIZATION_FAILED = "file.optimization_failed.v1"

SHA256_PATTERN = r"^[0-9a-f]{64}$"
FILENAME_MAX = 255
SEALED_FILENAME_MAX = 2048
VARIANT_WIDTHS: tuple[int, ...] = (320, 768, 1600)


class FileKind(StrEnum):
    PHOTO = "photo"
    FLOOR_PLAN = "floor_plan"
    DOCUMENT = "document"


# Listings show photos first, then floor plans, then documents.
KIND_ORDER: dict[str, int] = {FileKind.PHOTO: 0, FileKind.FLOOR_PLAN: 1, FileKind.DOCUMENT: 2}
# Documents (sale deeds, approvals) are private: only their owner and admins may read them.
PRIVATE_KINDS = frozenset({FileKind.DOCUMENT})


class VariantFormat(StrEnum):
    WEBP = "webp"
    JPEG = "jpeg"
    PNG = "png"


class FileUploaded(EventData):
    file_id: str
    owner_id: str
    property_id: str | None = None
    kind: FileKind
    content_type: str
    size_bytes: int = Field(ge=0)
    sha256: str = Field(pattern=SHA256_PATTERN)
    # At most FILENAME_MAX characters, sealed with the uploader's key (schemas/personal.py) when they have
    # one: a sealed name is longer than the name.
    filename: str = Field(max_length=SEALED_FILENAME_MAX)


class FileDeleted(EventData):
    file_id: str
    owner_id: str
    property_id: str | None = None


class Variant(EventData):
    """`width` is the size class asked for (320, 768, 1600), which names the variant; an original
    narrower than the class is never upscaled, so `pixel_width` says what the variant really is."""

    width: int = Field(gt=0)
    pixel_width: int | None = Field(default=None, gt=0)
    height: int | None = Field(default=None, gt=0)
    format: VariantFormat
    content_type: str
    sha256: str = Field(pattern=SHA256_PATTERN)
    size_bytes: int = Field(ge=0)


class FileOptimizeRequested(EventData):
    """Carries what the optimiser needs (which bytes, what type), so it reads no read model."""

    job_id: str
    file_id: str
    sha256: str = Field(pattern=SHA256_PATTERN)
    content_type: str
    widths: tuple[int, ...] = VARIANT_WIDTHS
    requested_by: str


class FileOptimized(EventData):
    file_id: str
    variants: tuple[Variant, ...]
    job_id: str | None = None


class FileOptimizationFailed(EventData):
    file_id: str
    job_id: str
    error: str


for _type, _model in (
    (FILE_UPLOADED, FileUploaded),
    (FILE_DELETED, FileDeleted),
    (FILE_OPTIMIZE_REQUESTED, FileOptimizeRequested),
    (FILE_OPTIMIZED, FileOptimized),
    (FILE_OPTIMIZATION_FAILED, FileOptimizationFailed),
):
    EVENTS.register(_type, _model)


def variant_formats(content_type: str) -> tuple[VariantFormat, ...]:
    """WebP, and the original's own format (once, when the original is WebP)."""
    original = {"image/jpeg": VariantFormat.JPEG, "image/png": VariantFormat.PNG}.get(content_type)
    return (VariantFormat.WEBP,) if original is None else (VariantFormat.WEBP, original)


VARIANT_CONTENT_TYPES = {
    VariantFormat.WEBP: "image/webp",
    VariantFormat.JPEG: "image/jpeg",
    VariantFormat.PNG: "image/png",
}


def variant_name(width: int, format: str) -> str:
    """How a variant is asked for: `?variant=768.webp`."""
    return f"{width}.{format}"


def file_url(file_id: str, variant: str | None = None) -> str:
    return f"/api/files/{file_id}" + (f"?variant={variant}" if variant else "")


def file_document(
    *,
    file_id: str,
    owner_id: str | None,
    property_id: str | None,
    kind: str,
    content_type: str,
    size_bytes: int,
    sha256: str,
    filename: str | None,
    uploaded_at: str | None,
    variants: list[dict[str, Any]],
    optimized_at: str | None,
) -> dict[str, Any]:
    """A file as the API shows it (and as Redis keeps it in a property's list): camelCase, with URLs."""
    return {
        "id": file_id,
        "ownerId": owner_id,
        "propertyId": property_id,
        "kind": kind,
        "contentType": content_type,
        "sizeBytes": size_bytes,
        "sha256": sha256,
        "filename": filename,
        "url": file_url(file_id),
        "uploadedAt": uploaded_at,
        "optimizedAt": optimized_at,
        "variants": [
            {
                "name": variant_name(v["width"], v["format"]),
                "width": v["width"],
                "pixelWidth": v.get("pixelWidth", v["width"]),
                "height": v.get("height"),
                "format": v["format"],
                "contentType": v["contentType"],
                "sizeBytes": v["sizeBytes"],
                "url": file_url(file_id, variant_name(v["width"], v["format"])),
            }
            for v in sorted(variants, key=lambda v: (v["width"], v["format"]))
        ],
    }
