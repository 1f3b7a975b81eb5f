"""The property decider worker: `python -m streams.properties.decider_app worker -l info`.

Consumer group `property-decider`. Reads `property-commands`, keeps each property's state in the
`properties-state` table (co-partitioned with the commands: same key, six partitions), and for each
command: decide (pure) -> produce the events to `properties` -> fold them into the table -> answer on
`command-outcomes`. At-least-once: a command redelivered after a crash is decided again against the
state the table had; the events it yields carry ids derived from the command id and its time, so a
duplicate is the same event (same id, time and sequence), which every sink already ignores.
"""

import logging
from collections.abc import Awaitable
from dataclasses import dataclass

import faust
from aiokafka.structs import RecordMetadata

from config import get_settings
from schemas.codec import EventDecodeError, decode, encode
from schemas.envelope import Envelope, format_time
from schemas.outcomes import CommandOutcome, Verdict
from schemas.properties import COMMANDS
from schemas.topics import COMMAND_OUTCOMES, PROPERTIES, PROPERTY_COMMANDS
from streams.app import create_app, run_worker
from streams.deciding import (
    PROPERTY_SOURCE,
    command_data,
    dead_letter_command,
    decided_event,
    outcome_envelope,
)
from streams.properties.decider import (
    Command,
    NewEvent,
    PropertyState,
    Rejection,
    decide,
    evolve,
    remember,
    state_from_json,
    state_to_json,
)

log = logging.getLogger("streams.properties.decider")

DECIDER = "property-decider"


def read_command(envelope: Envelope) -> Command:
    data = command_data(envelope, COMMANDS, "property")
    assert envelope.userid is not None  # command_data refused it otherwise
    return Command(envelope.id, envelope.type, envelope.subject, envelope.userid, envelope.time, data)


def event_envelope(command: Command, cause: Envelope, event: NewEvent, index: int, sequence: int) -> Envelope:
    return decided_event(
        PROPERTY_SOURCE, cause, command.property_id, command.user_id, event.data, event.type, index, sequence
    )


settings = get_settings()
app = create_app(DECIDER, settings)
commands_topic = app.topic(PROPERTY_COMMANDS.name, key_serializer="raw", value_serializer="raw")


class CommandStateTable(faust.Table):  # type: ignore[misc]  # Faust's classes are untyped
    """A table written from a batch loop: Faust finds the changelog partition through the event being
    iterated, which a batch loop has not got, so the loop says which command it is deciding. The
    changelog record goes to that command's partition: the table stays co-partitioned with it."""

    deciding_partition: int | None = None

    def partition_for_key(self, key: object) -> int | None:
        if self.deciding_partition is None:
            raise RuntimeError("table written outside a decision")
        return self.deciding_partition


states = app.tables.add(
    CommandStateTable(
        app,
        name="properties-state",
        beacon=app.tables.beacon,
        partitions=PROPERTY_COMMANDS.partitions,
        # JSON keys and values: Faust's defaults, which its changelog recovery reads back.
        key_type=str,
    )
)


@dataclass
class Pending:
    """A decided command whose events are on their way to the broker."""

    command: Command
    outcome: CommandOutcome
    sends: list[Awaitable[RecordMetadata]]


async def _send(topic: str, key: bytes, envelope: Envelope) -> Awaitable[RecordMetadata]:
    return await app.producer.send(topic, key, encode(envelope), partition=None, timestamp=None, headers=None)


async def decide_one(message: faust.types.Message, cause: Envelope) -> Pending:
    """Decide, fold the events into the table and start producing them; nothing here waits on Kafka."""
    command = read_command(cause)
    if message.key != command.property_id.encode():
        # The table is partitioned by the message key; a command keyed otherwise would be decided
        # against another partition's (absent) state.
        raise EventDecodeError(f"command key {message.key!r} is not its property id {command.property_id}")
    stored = states.get(command.property_id)
    state: PropertyState | None = state_from_json(stored) if stored else None
    decision = decide(command, state)
    if isinstance(decision, Rejection):
        outcome = CommandOutcome(
            command_id=command.id,
            aggregate_id=command.property_id,
            verdict=Verdict.REJECTED,
            status=decision.status,
            message=decision.message,
            errors=decision.errors,
            version=state.version if state else None,
        )
        return Pending(command, outcome, [])
    sends = []
    for index, event in enumerate(decision):
        state = evolve(state, event, property_id=command.property_id, time=command.time)
        envelope = event_envelope(command, cause, event, index, state.version)
        sends.append(await _send(PROPERTIES.name, message.key, envelope))
    assert state is not None  # an accepted command always leaves a property behind
    state = remember(state, command.id)
    states.deciding_partition = message.partition
    try:
        states[command.property_id] = state_to_json(state)
    finally:
        states.deciding_partition = None
    outcome = CommandOutcome(
        command_id=command.id,
        aggregate_id=command.property_id,
        verdict=Verdict.ACCEPTED,
        version=state.version,
        result={"createdAt": format_time(state.created_at), "title": state.listing.title},
    )
    return Pending(command, outcome, sends)


async def decide_batch(messages: list[faust.types.Message]) -> None:
    """Decide a batch in order, then wait for the broker once: every event acked (`acks=all`), then
    every answer sent. No answer leaves before its events are durable, and the batch is acked only
    after both, so a crash anywhere re-decides it (see the module docstring)."""
    pending: list[Pending] = []
    for message in messages:
        try:
            pending.append(await decide_one(message, decode(message.value)))
        except Exception as exc:
            await dead_letter_command(app, DECIDER, message, exc)
    answers = []
    for item in pending:
        written = [await send for send in item.sends]
        positions = tuple(f"{m.topic}:{m.partition}:{m.offset}" for m in written)
        outcome = item.outcome.model_copy(update={"positions": positions})
        answers.append(
            await _send(
                COMMAND_OUTCOMES.name,
                item.command.id.encode(),
                outcome_envelope(PROPERTY_SOURCE, item.command.id, item.command.user_id, outcome, item.command.time),
            )
        )
    for answer in answers:
        await answer


@app.agent(commands_topic)
async def decide_property_commands(stream: faust.StreamT[bytes]) -> None:
    # A short window: under load a batch fills at once; alone, a command waits at most this long.
    async for events in stream.take_events(settings.decider_batch_size, within=settings.decider_batch_seconds):
        await decide_batch([event.message for event in events])


if __name__ == "__main__":
    run_worker(app)
