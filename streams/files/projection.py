"""Pure part of the file projection: Kafka records of `files` (and `users`) in, changes out.

One function per event type turns an event into the change the Postgres sink applies. A file's events
share a partition (keyed by file id), so the record's offset orders them; it is written with the row
and a change applies only when its offset is newer. `user.deleted.v1` on `users` erases the owner's
files: only the envelope's type and subject are read there (the user service owns the payloads,
which it encrypts), every other user event is none of this projection's business.
"""

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from schemas.codec import EventDecodeError, decode_storable
from schemas.envelope import Envelope, format_time
from schemas.files import (
    FILE_DELETED,
    FILE_OPTIMIZATION_FAILED,
    FILE_OPTIMIZE_REQUESTED,
    FILE_OPTIMIZED,
    FILE_UPLOADED,
    FileDeleted,
    FileOptimizationFailed,
    FileOptimized,
    FileOptimizeRequested,
    FileUploaded,
    file_document,
    variant_formats,
)
from schemas.registry import EVENTS, EventData
from schemas.topics import FILES, USERS
from streams.dead_letters import DeadLetter
from streams.positions import RawRecord, SourcePosition

PROJECTION_CONSUMER = "file-projection"
USER_DELETED = "user.deleted.v1"


@dataclass(frozen=True)
class FileStored:
    offset: int
    event_id: str
    at: datetime
    file: FileUploaded


@dataclass(frozen=True)
class FileRemoved:
    offset: int
    event_id: str
    at: datetime
    file: FileDeleted


@dataclass(frozen=True)
class JobQueued:
    offset: int
    event_id: str
    at: datetime
    request: FileOptimizeRequested
    formats: tuple[str, ...]


@dataclass(frozen=True)
class VariantsMade:
    offset: int
    event_id: str
    at: datetime
    result: FileOptimized


@dataclass(frozen=True)
class JobFailed:
    offset: int
    event_id: str
    at: datetime
    failure: FileOptimizationFailed


@dataclass(frozen=True)
class OwnerErased:
    user_id: str
    at: datetime


FileChange = FileStored | FileRemoved | JobQueued | VariantsMade | JobFailed | OwnerErased


@dataclass(frozen=True)
class PlannedChange:
    change: FileChange
    record: RawRecord


@dataclass(frozen=True)
class FilePlan:
    changes: list[PlannedChange]
    dead_letters: list[DeadLetter]
    positions: list[SourcePosition] = field(default_factory=list)


def _stored(envelope: Envelope, data: EventData, offset: int) -> FileChange:
    assert isinstance(data, FileUploaded)
    return FileStored(offset, envelope.id, envelope.time, data)


def _removed(envelope: Envelope, data: EventData, offset: int) -> FileChange:
    assert isinstance(data, FileDeleted)
    return FileRemoved(offset, envelope.id, envelope.time, data)


def _queued(envelope: Envelope, data: EventData, offset: int) -> FileChange:
    assert isinstance(data, FileOptimizeRequested)
    return JobQueued(
        offset, envelope.id, envelope.time, data, tuple(f.value for f in variant_formats(data.content_type))
    )


def _made(envelope: Envelope, data: EventData, offset: int) -> FileChange:
    assert isinstance(data, FileOptimized)
    return VariantsMade(offset, envelope.id, envelope.time, data)


def _failed(envelope: Envelope, data: EventData, offset: int) -> FileChange:
    assert isinstance(data, FileOptimizationFailed)
    return JobFailed(offset, envelope.id, envelope.time, data)


_PROJECTIONS: dict[str, Callable[[Envelope, EventData, int], FileChange]] = {
    FILE_UPLOADED: _stored,
    FILE_DELETED: _removed,
    FILE_OPTIMIZE_REQUESTED: _queued,
    FILE_OPTIMIZED: _made,
    FILE_OPTIMIZATION_FAILED: _failed,
}


def file_change(record: RawRecord) -> FileChange | None:
    """The change a record asks for, None when it is not this projection's business; raises
    `EventDecodeError` for anything it cannot read."""
    if record.position.topic == USERS.name:
        envelope = decode_storable(record.value)
        return OwnerErased(envelope.subject, envelope.time) if envelope.type == USER_DELETED else None
    envelope = decode_storable(record.value)
    project = _PROJECTIONS.get(EVENTS.upcast(envelope).type if EVENTS.knows(envelope.type) else envelope.type)
    if project is None:
        raise EventDecodeError(f"{envelope.type} does not belong on the {FILES.name} topic")
    event = EVENTS.read(envelope)
    envelope = event.envelope
    file_id = getattr(event.data, "file_id", None)
    if file_id != envelope.subject or (record.key is not None and record.key != envelope.subject.encode()):
        # Offsets order a file's events only if they all share its partition, i.e. are keyed by its id.
        raise EventDecodeError(
            f"{envelope.type} about {file_id} has subject {envelope.subject} and key {record.key!r}: "
            "both must be the file id"
        )
    return project(envelope, event.data, record.position.offset)


def plan_files(records: Sequence[RawRecord]) -> FilePlan:
    changes: list[PlannedChange] = []
    dead: list[DeadLetter] = []
    for record in records:
        try:
            change = file_change(record)
        except EventDecodeError as exc:
            dead.append(DeadLetter(record.key, record.value, str(exc), record.position, PROJECTION_CONSUMER))
            continue
        if change is not None:
            changes.append(PlannedChange(change, record))
    return FilePlan(changes, dead, [r.position for r in records])


@dataclass(frozen=True)
class FileRow:
    """A live `files` row, as the sink reads a property's list back."""

    id: str
    owner_id: str | None
    property_id: str | None
    kind: str
    content_type: str
    size_bytes: int
    sha256: str
    filename: str | None
    variants: list[dict[str, Any]]
    optimized_at: datetime | None
    uploaded_at: datetime | None


def list_document(rows: Sequence[FileRow]) -> list[dict[str, Any]]:
    """A property's files as Redis keeps them (and the API shows them), in the order the rows come."""
    return [
        file_document(
            file_id=row.id,
            owner_id=row.owner_id,
            property_id=row.property_id,
            kind=row.kind,
            content_type=row.content_type,
            size_bytes=row.size_bytes,
            sha256=row.sha256,
            filename=row.filename,
            uploaded_at=format_time(row.uploaded_at) if row.uploaded_at else None,
            variants=row.variants,
            optimized_at=format_time(row.optimized_at) if row.optimized_at else None,
        )
        for row in rows
    ]
