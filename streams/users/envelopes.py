"""Envelopes the user deciders write: events and outcomes with ids derived from the command id, so a
command decided twice (redelivered after a crash) yields byte-identical events that sinks ignore."""

import hashlib
from datetime import datetime

from schemas.envelope import Envelope
from schemas.outcomes import COMMAND_OUTCOME, CommandOutcome

ACCOUNT_SOURCE = "/hyderabad-infra/user-account"
REGISTRY_SOURCE = "/hyderabad-infra/user-registry"


def event_id(command_id: str, index: int) -> str:
    return "evt-" + hashlib.sha256(f"{command_id}:{index}".encode()).hexdigest()[:32]


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
