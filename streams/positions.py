"""Where a record came from in Kafka: written beside every row so sinks can be idempotent and order-safe."""

from dataclasses import dataclass, field


@dataclass(frozen=True, order=True)
class SourcePosition:
    topic: str
    partition: int
    offset: int


@dataclass(frozen=True)
class RawRecord:
    """A Kafka record as a worker received it: untouched bytes and where they came from."""

    key: bytes | None
    value: bytes | None
    position: SourcePosition
    # Kafka's, in seconds: how old the event is when a projection applies it. Not part of what the record
    # is: the same bytes from the same position are the same record.
    timestamp: float | None = field(default=None, compare=False)
