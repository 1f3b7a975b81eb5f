"""Dead letters in bulk. `streams.dead_letters.publish_dead_letters` waits for each letter's ack in turn
and logs each one; a replay re-reads every poison message a topic ever had (tens of thousands here),
so history sends a batch's letters together, waits for all the acks once and logs one line per batch."""

import asyncio
import logging
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

from streams import metrics
from streams.dead_letters import DeadLetter

log = logging.getLogger("streams.history.dead_letters")

Send = Callable[[DeadLetter], Awaitable[Awaitable[Any]]]


async def publish_all(send: Send, letters: Sequence[DeadLetter]) -> None:
    """The source records are acked only after every letter is on the broker."""
    if not letters:
        return
    reasons = sorted({letter.error.split(":", 1)[0] for letter in letters})
    first = letters[0]
    log.warning(
        "%d dead letters from %s (%s), first %s[%d]@%d: %s",
        len(letters),
        first.consumer,
        "; ".join(reasons[:3]),
        first.position.topic,
        first.position.partition,
        first.position.offset,
        first.error,
    )
    for letter in letters:
        metrics.dead_lettered(letter.consumer, letter.error)
    pending = [await send(letter) for letter in letters]
    await asyncio.gather(*pending)
