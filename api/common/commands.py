"""Sending a command to its decider and waiting, bounded, for the decision.

Each API process follows `command-outcomes` from its end (all partitions, no consumer group: every
process needs to see the answers to its own commands, and none of them needs history). A command's
future is registered before the command is produced, so its outcome cannot slip past.
"""

import asyncio
import logging
from collections.abc import Sequence
from contextlib import suppress

from aiokafka import AIOKafkaConsumer, TopicPartition

from api.common.errors import ApiError, DependencyUnavailable
from api.common.kafka import EventProducer
from api.common.metrics import observe_command
from schemas.codec import EventDecodeError, decode
from schemas.envelope import Envelope
from schemas.outcomes import CommandOutcome, Verdict
from schemas.topics import COMMAND_OUTCOMES

log = logging.getLogger("api.commands")

# The outcome label of a command its decider did not answer in time (the endpoint answers 503).
NO_DECISION = "no_decision"
# How long the broker may hold an empty fetch of command outcomes (it answers at once when one arrives).
OUTCOME_FETCH_WAIT_MS = 5000


class NoDecision(ApiError):
    def __init__(self, seconds: float) -> None:
        super().__init__(
            503,
            f"No decision within {seconds:g} s; the command may still be applied. Retry with the same Idempotency-Key.",
            headers={"Retry-After": "1"},
        )


class CommandBus:
    def __init__(self, producer: EventProducer, bootstrap_servers: str, wait_seconds: float) -> None:
        self._producer = producer
        self._bootstrap = bootstrap_servers
        self.wait_seconds = wait_seconds
        self._waiting: dict[str, asyncio.Future[CommandOutcome]] = {}
        self._following = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        self._task = asyncio.create_task(self._follow_outcomes(), name="follow-command-outcomes")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with suppress(asyncio.CancelledError):
                await self._task

    async def send(self, topic: str, command: Envelope) -> CommandOutcome:
        outcome, _ = await self.send_with_follow_ups(topic, command, ())
        return outcome

    async def send_with_follow_ups(
        self, topic: str, command: Envelope, follow_ups: Sequence[str]
    ) -> tuple[CommandOutcome, dict[str, CommandOutcome]]:
        """Send `command` and wait for its outcome; when accepted, also for the outcomes of the commands its
        decider sends on (their ids, derived from `command`'s), within the same bound. Follow-ups not
        answered in time are missing from the dict: they are sent all the same, only not yet decided."""
        if not self._following.is_set():
            raise DependencyUnavailable("kafka", "not following command outcomes yet")
        loop = asyncio.get_running_loop()
        futures: dict[str, asyncio.Future[CommandOutcome]] = {
            id_: loop.create_future() for id_ in (command.id, *follow_ups)
        }
        self._waiting.update(futures)
        started = loop.time()
        deadline = started + self.wait_seconds
        try:
            # One bound for producing and deciding: with the broker away a send waits for it (its request
            # timeout is longer), and an answer later than the command wait is no answer to a client.
            try:
                await asyncio.wait_for(self._producer.publish(topic, command, key=command.subject), self.wait_seconds)
            except TimeoutError:
                observe_command(topic, NO_DECISION, self.wait_seconds)
                raise DependencyUnavailable("kafka", f"could not produce to {topic} in time") from None
            try:
                outcome = await asyncio.wait_for(futures[command.id], max(0.0, deadline - loop.time()))
            except TimeoutError:
                observe_command(topic, NO_DECISION, self.wait_seconds)
                raise NoDecision(self.wait_seconds) from None
            observe_command(topic, outcome.verdict.value, loop.time() - started)
            later = [futures[id_] for id_ in follow_ups]
            if outcome.verdict != Verdict.ACCEPTED or not later:
                return outcome, {}
            await asyncio.wait(later, timeout=max(0.0, deadline - loop.time()))
            return outcome, {id_: futures[id_].result() for id_ in follow_ups if futures[id_].done()}
        finally:
            for id_ in futures:
                self._waiting.pop(id_, None)

    async def _follow_outcomes(self) -> None:
        """Runs for the life of the process; reconnects while Kafka is away."""
        while True:
            consumer = AIOKafkaConsumer(
                bootstrap_servers=self._bootstrap,
                group_id=None,
                enable_auto_commit=False,
                # A fetch is answered as soon as an outcome arrives (fetch_min_bytes 1), so the wait only
                # bounds how long the broker holds an empty one: a long wait adds no delay, and spares an
                # idle service and the broker the empty fetches (six services at 500 ms made a third of
                # the broker's requests at rest).
                fetch_max_wait_ms=OUTCOME_FETCH_WAIT_MS,
            )
            try:
                await consumer.start()
                partitions = [TopicPartition(COMMAND_OUTCOMES.name, p) for p in range(COMMAND_OUTCOMES.partitions)]
                consumer.assign(partitions)
                await consumer.seek_to_end(*partitions)
                for partition in partitions:
                    await consumer.position(partition)  # resolves the seek now, before any command
                self._following.set()
                while True:
                    batch = await consumer.getmany(timeout_ms=OUTCOME_FETCH_WAIT_MS)
                    for messages in batch.values():
                        for message in messages:
                            self._resolve(message.value)
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                self._following.clear()
                log.warning("following command outcomes failed (%s); retrying", type(exc).__name__)
                await asyncio.sleep(1)
            finally:
                await consumer.stop()

    def _resolve(self, raw: bytes | None) -> None:
        try:
            outcome = CommandOutcome.model_validate(decode(raw).data)
        except (EventDecodeError, ValueError):
            log.warning("unreadable command outcome skipped")
            return
        future = self._waiting.get(outcome.command_id)
        if future is not None and not future.done():
            future.set_result(outcome)
