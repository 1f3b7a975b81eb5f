"""Pure part of the archive: Kafka records in, `event_store` rows or dead letters out.

The archive keeps any well-formed CloudEvent, whatever its type: it is the raw log, and it must not
lose an event just because this worker is older than the producer that wrote a new type.
"""

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from schemas.codec import EventDecodeError, decode_storable
from schemas.read_models import ARCHIVE_CHECKPOINT
from streams.dead_letters import DeadLetter
from streams.positions import RawRecord, SourcePosition

# One name for the group and the checkpoint of the event store it raises.
ARCHIVE_CONSUMER = ARCHIVE_CHECKPOINT


@dataclass(frozen=True)
class EventStoreRow:
    event_id: str
    event_type: str
    source: str
    subject: str
    user_id: str | None
    session_id: str | None
    correlation_id: str | None
    causation_id: str | None
    sequence: int | None
    occurred_at: datetime
    data: dict[str, Any]
    position: SourcePosition


@dataclass(frozen=True)
class ArchivePlan:
    rows: list[EventStoreRow]
    dead_letters: list[DeadLetter]


def to_row(record: RawRecord) -> EventStoreRow:
    """Raises `EventDecodeError` for anything that is not a CloudEvent we can keep."""
    event = decode_storable(record.value)
    return EventStoreRow(
        event_id=event.id,
        event_type=event.type,
        source=event.source,
        subject=event.subject,
        user_id=event.userid,
        session_id=event.sessionid,
        correlation_id=event.correlationid,
        causation_id=event.causationid,
        sequence=event.sequence,
        occurred_at=event.time,
        data=event.data,
        position=record.position,
    )


def plan_archive(records: Sequence[RawRecord]) -> ArchivePlan:
    rows: list[EventStoreRow] = []
    dead: list[DeadLetter] = []
    for record in records:
        try:
            rows.append(to_row(record))
        except EventDecodeError as exc:
            dead.append(DeadLetter(record.key, record.value, str(exc), record.position, ARCHIVE_CONSUMER))
    return ArchivePlan(rows, dead)
