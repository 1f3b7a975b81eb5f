"""What every decider writes besides its events: ids derived from the command id (so a command decided
twice, redelivered after a crash, yields byte-identical events that sinks ignore), the outcome the
waiting endpoint reads, and the dead letter for a command that could not be decided."""

import hashlib
import logging
from datetime import datetime

import faust

from schemas.codec import EventDecodeError
from schemas.envelope import Envelope
from schemas.outcomes import COMMAND_OUTCOME, CommandOutcome
from schemas.registry import EventData
from streams.dead_letters import DeadLetter, publish_dead_letters
from streams.positions import SourcePosition

log = logging.getLogger("streams.deciding")

PROPERTY_SOURCE = "/hyderabad-infra/property-decider"
ACCOUNT_SOURCE = "/hyderabad-infra/user-account"
REGISTRY_SOURCE = "/hyderabad-infra/user-registry"


def event_id(command_id: str, index: int) -> str:
    return "evt-" + hashlib.sha256(f"{command_id}:{index}".encode()).hexdigest()[:32]


def command_data(envelope: Envelope, commands: dict[str, type[EventData]], what: str) -> EventData:
    """The typed payload of a command this decider takes; `EventDecodeError` (so a dead letter) otherwise."""
    model = commands.get(envelope.type)
    if model is None:
        raise EventDecodeError(f"unknown {what} command {envelope.type!r}")
    if not envelope.userid:
        raise EventDecodeError(f"a {what} command needs the acting user (userid)")
    try:
        return model.model_validate(envelope.data)
    except ValueError as exc:
        raise EventDecodeError(f"invalid {envelope.type}: {exc}") from None


def decided_event(
    source: str,
    cause: Envelope,
    subject: str,
    actor_id: str,
    event: EventData,
    event_type: str,
    index: int,
    sequence: int,
) -> Envelope:
    """The `index`-th event decided from the command `cause`, at the aggregate's version `sequence`."""
    return Envelope(
        id=event_id(cause.id, index),
        type=event_type,
        source=source,
        subject=subject,
        time=cause.time,
        userid=actor_id,
        sessionid=cause.sessionid,
        correlationid=cause.correlationid or cause.id,
        causationid=cause.id,
        sequence=sequence,
        data=event.to_wire(),
    )


def outcome_envelope(source: str, command_id: str, actor_id: str, outcome: CommandOutcome, time: datetime) -> Envelope:
    return Envelope(
        id=event_id(command_id, -1),
        type=COMMAND_OUTCOME,
        source=source,
        subject=command_id,
        time=time,
        userid=actor_id,
        correlationid=command_id,
        causationid=command_id,
        data=outcome.to_wire(),
    )


async def dead_letter_command(app: faust.App, decider: str, message: faust.types.Message, exc: Exception) -> None:
    """Unreadable, or a failure we did not foresee: never lose the command silently, never block the
    partition on it. The waiting endpoint answers 503 after its bounded wait."""
    if isinstance(exc, EventDecodeError):
        error = str(exc)
    else:
        log.exception("%s: deciding %r failed", decider, message.key)
        error = f"decider failed: {type(exc).__name__}: {exc}"
    position = SourcePosition(message.topic, message.partition, message.offset)
    await publish_dead_letters(app, [DeadLetter(message.key, message.value, error, position, decider)])
