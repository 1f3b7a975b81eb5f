"""Where a record came from in Kafka: written beside every row so sinks can be idempotent and order-safe."""

from dataclasses import dataclass


@dataclass(frozen=True, order=True)
class SourcePosition:
    topic: str
    partition: int
    offset: int
