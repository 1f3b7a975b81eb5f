"""Request bodies of the file service, and the OpenAPI description of its multipart bodies (parsed by
hand off the stream, so FastAPI cannot infer them from the signature)."""

from typing import Any, Literal

from pydantic import Field, model_validator

from api.common.contract import FieldErrorOut
from api.common.responses import ApiModel

MAX_OPTIMIZE_FILES = 100


class OptimizeIn(ApiModel):
    file_ids: list[str] | None = Field(
        default=None,
        min_length=1,
        max_length=MAX_OPTIMIZE_FILES,
        description="Images to optimise (yours, or any as an admin)",
    )
    property_id: str | None = Field(
        default=None, pattern=r"^prop-[A-Za-z0-9]{1,64}$", description="Every image of this listing"
    )

    @model_validator(mode="after")
    def _one_of(self) -> "OptimizeIn":
        if (self.file_ids is None) == (self.property_id is None):
            raise ValueError("send either fileIds or propertyId")
        for file_id in self.file_ids or []:
            if not (file_id.startswith("file-") and 5 < len(file_id) <= 69 and file_id[5:].isalnum()):
                raise ValueError(f"{file_id!r} is not a file id")
        return self


def _multipart(properties: dict[str, Any], required: list[str]) -> dict[str, Any]:
    return {
        "requestBody": {
            "required": True,
            "content": {
                "multipart/form-data": {
                    "schema": {"type": "object", "properties": properties, "required": required},
                }
            },
        }
    }


_COMMON_FIELDS: dict[str, Any] = {
    "propertyId": {"type": "string", "pattern": "^prop-[A-Za-z0-9]{1,64}$", "description": "Your listing"},
    "kind": {
        "type": "string",
        "enum": ["photo", "floor_plan", "document"],
        "description": "Default: photo for images, document for PDFs; documents are private",
    },
}

UPLOAD_BODY = _multipart(
    {"file": {"type": "string", "format": "binary", "description": "JPEG, PNG, WebP or PDF"}, **_COMMON_FIELDS},
    ["file"],
)
BULK_BODY = _multipart(
    {
        "files": {
            "type": "array",
            "items": {"type": "string", "format": "binary"},
            "maxItems": 20,
            "description": "1 to 20 files",
        },
        **_COMMON_FIELDS,
    },
    ["files"],
)
OPTIMIZE_EXAMPLES = {
    "files": {"summary": "Some images", "value": {"fileIds": ["file-3f2a9c"]}},
    "property": {"summary": "Every image of a listing", "value": {"propertyId": "prop-123"}},
}


# ---- answers (`data` of the success envelope) ----


class FileVariantOut(ApiModel):
    name: str = Field(description="`<width>.<format>`, for `?variant=`")
    width: int
    pixel_width: int
    height: int | None
    format: str
    content_type: str
    size_bytes: int
    url: str


class FileOut(ApiModel):
    id: str
    owner_id: str | None
    property_id: str | None
    kind: str
    content_type: str
    size_bytes: int
    sha256: str
    filename: str | None
    url: str
    uploaded_at: str | None
    optimized_at: str | None
    variants: list[FileVariantOut]


class BulkItemOut(ApiModel):
    """One file's result: `status` 201 with `file`, or 413/415/422 with `message` and `errors`."""

    index: int
    filename: str | None
    status: int
    file: FileOut | None = None
    message: str | None = None
    errors: list[FieldErrorOut] | None = None


class BulkUploadOut(ApiModel):
    stored: int
    refused: int
    items: list[BulkItemOut]


class FileDeletedOut(ApiModel):
    id: str


class QueuedJobOut(ApiModel):
    job_id: str
    file_id: str
    status: Literal["queued"]
    variants_total: int
    url: str = Field(description="Where to read the job's progress")


class OptimizationQueuedOut(ApiModel):
    jobs: list[QueuedJobOut]


class JobVariantOut(ApiModel):
    name: str
    width: int
    format: str
    url: str


class OptimizationJobOut(ApiModel):
    job_id: str
    file_id: str
    status: Literal["queued", "running", "done", "failed"]
    variants_done: int
    variants_total: int
    variants: list[JobVariantOut]
    error: str | None
    requested_at: str | None
    finished_at: str | None
