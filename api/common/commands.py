"""Sending a command to its decider and waiting, bounded, for the decision.

Each API process follows `command-outcomes` from its end (all partitions, no consumer group: every
process needs to see the answers to its own commands, and none of them needs history). A command's
future is registered before the command is produced, so its outcome cannot slip past.
"""

import asyncio
import logging
from contextlib import suppress

from aiokafka import AIOKafkaConsumer, TopicPartition

from api.common.errors import ApiError, DependencyUnavailable
from api.common.kafka import EventProducer
from schemas.codec import EventDecodeError, decode
from schemas.envelope import Envelope
from schemas.outcomes import CommandOutcome
from schemas.topics import COMMAND_OUTCOMES

log = logging.getLogger("api.commands")


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
        if not self._following.is_set():
            raise DependencyUnavailable("kafka", "not following command outcomes yet")
        future: asyncio.Future[CommandOutcome] = asyncio.get_running_loop().create_future()
        self._waiting[command.id] = future
        try:
            await self._producer.publish(topic, command, key=command.subject)
            return await asyncio.wait_for(future, self.wait_seconds)
        except TimeoutError:
            raise NoDecision(self.wait_seconds) from None
        finally:
            self._waiting.pop(command.id, None)

    async def _follow_outcomes(self) -> None:
        """Runs for the life of the process; reconnects while Kafka is away."""
        while True:
            consumer = AIOKafkaConsumer(
                bootstrap_servers=self._bootstrap,
                group_id=None,
                enable_auto_commit=False,
                # The broker answers a fetch as soon as an outcome arrives; no batching delay.
                fetch_max_wait_ms=20,
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
                    batch = await consumer.getmany(timeout_ms=500)
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
