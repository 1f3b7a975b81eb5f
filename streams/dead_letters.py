"""Dead letters: a message we cannot process goes to the dead-letter topic with why and where from.

The original key and value travel untouched, so once the cause is fixed the message can be put back
on its topic as it was; the error, source position and consumer ride in headers.
"""

import logging
from collections.abc import Sequence
from dataclasses import dataclass

import faust

from schemas.topics import (
    DEAD_LETTERS,
    DLQ_CONSUMER_HEADER,
    DLQ_ERROR_HEADER,
    DLQ_SOURCE_OFFSET_HEADER,
    DLQ_SOURCE_PARTITION_HEADER,
    DLQ_SOURCE_TOPIC_HEADER,
)
from streams.positions import SourcePosition

log = logging.getLogger("streams.dead_letters")

# Long enough to explain, short enough that one dead letter cannot bloat a header.
_MAX_ERROR_CHARS = 2000


@dataclass(frozen=True)
class DeadLetter:
    key: bytes | None
    value: bytes | None
    error: str
    position: SourcePosition
    consumer: str

    def headers(self) -> Sequence[tuple[str, bytes]]:
        return [
            (DLQ_ERROR_HEADER, self.error[:_MAX_ERROR_CHARS].encode()),
            (DLQ_SOURCE_TOPIC_HEADER, self.position.topic.encode()),
            (DLQ_SOURCE_PARTITION_HEADER, str(self.position.partition).encode()),
            (DLQ_SOURCE_OFFSET_HEADER, str(self.position.offset).encode()),
            (DLQ_CONSUMER_HEADER, self.consumer.encode()),
        ]


async def publish_dead_letters(app: faust.App, letters: Sequence[DeadLetter]) -> None:
    """Waits for the broker's ack: the source message is acked only once its dead letter is safe."""
    for letter in letters:
        log.warning(
            "dead letter from %s[%d]@%d (%s): %s",
            letter.position.topic,
            letter.position.partition,
            letter.position.offset,
            letter.consumer,
            letter.error,
        )
        await app.producer.send_and_wait(
            DEAD_LETTERS.name,
            letter.key,
            letter.value,
            partition=None,
            timestamp=None,
            headers=list(letter.headers()),
        )
