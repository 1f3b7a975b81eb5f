"""Where a record came from in Kafka: written beside every row so sinks can be idempotent and order-safe."""

from dataclasses import dataclass


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
    timestamp: float | None = None  # Kafka's, in seconds: how old the event is when a projection applies it
