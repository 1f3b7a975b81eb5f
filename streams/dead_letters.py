"""Dead letters: a message we cannot process goes to the dead-letter topic with why and where from.

The original key and value travel untouched, so once the cause is fixed the message can be put back
on its topic as it was; the error, source position and consumer ride in headers.
"""

import asyncio
import logging
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass

import faust
from aiokafka import AIOKafkaProducer  # type: ignore[import-untyped]

from schemas.topics import (
    DEAD_LETTERS,
    DLQ_CONSUMER_HEADER,
    DLQ_ERROR_HEADER,
    DLQ_SOURCE_OFFSET_HEADER,
    DLQ_SOURCE_PARTITION_HEADER,
    DLQ_SOURCE_TOPIC_HEADER,
)
from streams import metrics
from streams.positions import RawRecord, SourcePosition

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


async def publish_dead_letters(to: faust.App | AIOKafkaProducer, letters: Sequence[DeadLetter]) -> None:
    """Waits for the broker's ack: the source message is acked only once its dead letter is safe. `to`
    is a Faust app (the deciders, the delivery and optimizer workers) or the lean runner's producer."""
    for letter in letters:
        log.warning(
            "dead letter from %s[%d]@%d (%s): %s",
            letter.position.topic,
            letter.position.partition,
            letter.position.offset,
            letter.consumer,
            letter.error,
        )
        metrics.dead_lettered(letter.consumer, letter.error)
        if isinstance(to, AIOKafkaProducer):
            await to.send_and_wait(DEAD_LETTERS.name, letter.value, key=letter.key, headers=list(letter.headers()))
            continue
        await to.producer.send_and_wait(
            DEAD_LETTERS.name,
            letter.key,
            letter.value,
            partition=None,
            timestamp=None,
            headers=list(letter.headers()),
        )


async def or_dead_letter(
    app: faust.App | None,
    consumer: str,
    records: Sequence[RawRecord],
    work: Callable[[Sequence[RawRecord]], Awaitable[None]],
    attempts: int = 3,
    publish: Callable[[Sequence[DeadLetter]], Awaitable[None]] | None = None,
) -> None:
    """Run a batch; on a failure nobody foresaw (a bug, not a store being down: sinks retry those
    themselves), try again a few times, then dead-letter the batch's records with the error. Faust acks
    a batch whatever its loop body raised, so letting the exception escape would lose the batch.
    `publish` replaces the plain publishing to `app`'s producer (a consumer that parks also notes them)."""
    for attempt in range(1, attempts + 1):
        try:
            await work(records)
            metrics.applied(consumer, records)
            return
        except Exception as exc:
            log.exception("%s: batch of %d failed (attempt %d of %d)", consumer, len(records), attempt, attempts)
            failure = f"{consumer} failed: {type(exc).__name__}: {exc}"
            await asyncio.sleep(0.2 * attempt)
    letters = [DeadLetter(r.key, r.value, failure, r.position, consumer) for r in records]
    if publish is not None:
        await publish(letters)
    else:
        assert app is not None, "or_dead_letter needs an app or a publish"
        await publish_dead_letters(app, letters)
    metrics.applied(consumer, records)  # handled: they are on the dead-letter topic now
