"""Deciding a batch of property commands: the loop of the property decider, with its ports passed in
(the producer's send, the state table, the dead letters) so the decider app wires the real ones and a
unit test can make the broker fail.

A batch whose events or answers the broker did not take is not acknowledged: its states are put back
as they were before it, and the whole batch is decided again after a backoff. That is safe because a
command decided again from the same state yields the same events (ids derived from the command id,
its time, the same sequence), which every sink ignores when it has them already; and it is necessary,
because a state left with the command remembered would answer the retry "already applied" and the
events that never reached the broker would be lost.
"""

import asyncio
import logging
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol, TypeVar

import faust
from aiokafka.errors import KafkaError, MessageSizeTooLargeError  # type: ignore[import-untyped]
from aiokafka.structs import RecordMetadata  # type: ignore[import-untyped]

from schemas.codec import EventDecodeError, decode, encode
from schemas.envelope import Envelope, format_time
from schemas.outcomes import CommandOutcome, NewEvent, Rejection, Verdict
from schemas.properties import COMMANDS
from schemas.topics import COMMAND_OUTCOMES, PROPERTIES
from streams.deciding import PROPERTY_SOURCE, command_data, decided_event, outcome_envelope
from streams.properties.decider import (
    Command,
    PropertyState,
    decide,
    evolve,
    state_from_json,
    state_to_json,
)
from streams.remembered_commands import forgotten_redelivery, remember, version_after

log = logging.getLogger("streams.properties.decider")

MAX_BACKOFF_SECONDS = 5.0

T = TypeVar("T")

Send = Callable[[str, bytes, bytes], Awaitable[Awaitable[RecordMetadata]]]
DeadLetter = Callable[[faust.types.Message, Exception], Awaitable[None]]


class StateTable(Protocol):
    """The properties' states, one per property id, written to the partition of the command deciding."""

    def get(self, property_id: str) -> dict[str, Any] | None: ...

    def put(self, partition: int, property_id: str, state: dict[str, Any] | None) -> None: ...


class ProducerFailed(Exception):
    """The broker did not take something the batch produced: the batch is decided again."""


@dataclass
class _Pending:
    """A decided command whose events are on their way to the broker."""

    command: Command
    outcome: CommandOutcome
    sends: list[Awaitable[RecordMetadata]]


@dataclass
class _Attempt:
    """What one attempt at a batch changed: the states as they were before it, to put back on failure."""

    before: dict[str, tuple[int, dict[str, Any] | None]] = field(default_factory=dict)


def read_command(envelope: Envelope) -> Command:
    data = command_data(envelope, COMMANDS, "property")
    assert envelope.userid is not None  # command_data refused it otherwise
    return Command(envelope.id, envelope.type, envelope.subject, envelope.userid, envelope.time, data)


def event_envelope(command: Command, cause: Envelope, event: NewEvent, index: int, sequence: int) -> Envelope:
    return decided_event(
        PROPERTY_SOURCE, cause, command.property_id, command.user_id, event.data, event.type, index, sequence
    )


def _is_producer_failure(exc: BaseException) -> bool:
    # Too large is the command's own fault (the door bounds listings; this is the last guard): retrying
    # cannot help, so it is dead-lettered like an undecidable command.
    return isinstance(exc, KafkaError) and not isinstance(exc, MessageSizeTooLargeError)


class PropertyCommandBatches:
    def __init__(self, send: Send, states: StateTable, dead_letter: DeadLetter) -> None:
        self._send = send
        self._states = states
        self._dead_letter = dead_letter

    async def decide_batch(self, messages: Sequence[faust.types.Message]) -> None:
        """Decide a batch until the broker has taken all of it; see the module docstring."""
        dead_lettered: set[int] = set()  # offsets whose dead letter is safe: not decided again
        backoff = 0.1
        while True:
            attempt = _Attempt()
            try:
                await self._attempt(messages, attempt, dead_lettered)
                return
            except ProducerFailed as exc:
                self._roll_back(attempt)
                log.warning(
                    "property batch of %d not produced (%s); deciding it again in %.1fs",
                    len(messages),
                    exc.__cause__ or exc,
                    backoff,
                )
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, MAX_BACKOFF_SECONDS)

    async def _attempt(
        self, messages: Sequence[faust.types.Message], attempt: _Attempt, dead_lettered: set[int]
    ) -> None:
        """Decide in order, then wait for the broker once: every event acked (`acks=all`), then every
        answer sent. No answer leaves before its events are durable."""
        pending: list[_Pending] = []
        for message in messages:
            if message.offset in dead_lettered:
                continue
            try:
                decided = await self._decide_one(message, decode(message.value), attempt)
            except ProducerFailed:
                raise
            except Exception as exc:
                await self._produced(self._dead_letter(message, exc))
                dead_lettered.add(message.offset)
            else:
                if decided is not None:
                    pending.append(decided)
        answers = []
        for item in pending:
            written = [await self._produced(send) for send in item.sends]
            positions = tuple(f"{m.topic}:{m.partition}:{m.offset}" for m in written)
            outcome = item.outcome.model_copy(update={"positions": positions})
            command = item.command
            answer = outcome_envelope(PROPERTY_SOURCE, command.id, command.user_id, outcome, command.time)
            answers.append(await self._produced(self._send(COMMAND_OUTCOMES.name, command.id.encode(), encode(answer))))
        for sent in answers:
            await self._produced(sent)

    async def _produced(self, sending: Awaitable[T]) -> T:
        try:
            return await sending
        except Exception as exc:
            if _is_producer_failure(exc):
                raise ProducerFailed(str(exc)) from exc
            raise

    async def _decide_one(self, message: faust.types.Message, cause: Envelope, attempt: _Attempt) -> _Pending | None:
        """Decide, fold the events into the table and start producing them; nothing here waits on Kafka.
        None for a command redelivered after a crash that the state has decided and since forgotten (more
        commands on the property since than it remembers): its events and answer left the first time, and
        answering it again from today's state could say another version."""
        command = read_command(cause)
        if message.key != command.property_id.encode():
            # The table is partitioned by the message key; a command keyed otherwise would be decided
            # against another partition's (absent) state.
            raise EventDecodeError(f"command key {message.key!r} is not its property id {command.property_id}")
        stored = self._states.get(command.property_id)
        state: PropertyState | None = state_from_json(stored) if stored else None
        if forgotten_redelivery(state, command.id, message.offset):
            return None
        decision = decide(command, state)
        if isinstance(decision, Rejection):
            outcome = decision.outcome(command.id, command.property_id, state.version if state else None)
            return _Pending(command, outcome, [])
        sends = []
        for index, event in enumerate(decision):
            state = evolve(state, event, property_id=command.property_id, time=command.time)
            envelope = event_envelope(command, cause, event, index, state.version)
            sends.append(await self._produced(self._send(PROPERTIES.name, message.key, encode(envelope))))
        assert state is not None  # an accepted command always leaves a property behind
        state = remember(state, command.id, message.offset)
        attempt.before.setdefault(command.property_id, (message.partition, stored))
        self._states.put(message.partition, command.property_id, state_to_json(state))
        outcome = CommandOutcome(
            command_id=command.id,
            aggregate_id=command.property_id,
            verdict=Verdict.ACCEPTED,
            version=version_after(state, command.id),
            result={"createdAt": format_time(state.created_at), "title": state.listing.title},
        )
        return _Pending(command, outcome, sends)

    def _roll_back(self, attempt: _Attempt) -> None:
        for property_id, (partition, state) in attempt.before.items():
            self._states.put(partition, property_id, state)
