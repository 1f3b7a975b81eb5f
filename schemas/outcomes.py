"""A decider's answer to one command, on `command-outcomes`, keyed by the command's id.

The endpoint that sent the command waits (bounded) for this answer and turns it into its HTTP
response: `accepted` with the events' positions (the consistency token), or `rejected` with the status
and reason (404, 403, 409, 422).
"""

from dataclasses import dataclass
from enum import StrEnum

from schemas.registry import EVENTS, EventData

COMMAND_OUTCOME = "command.outcome.v1"


class Verdict(StrEnum):
    ACCEPTED = "accepted"
    REJECTED = "rejected"


class FieldProblem(EventData):
    field: str
    message: str


class CommandOutcome(EventData):
    command_id: str
    aggregate_id: str
    verdict: Verdict
    # On acceptance: the aggregate's version after the command, and where its events landed.
    version: int | None = None
    positions: tuple[str, ...] = ()  # "topic:partition:offset"
    # On rejection: an HTTP status the endpoint answers with, and why.
    status: int | None = None
    message: str = ""
    errors: tuple[FieldProblem, ...] = ()
    # What the endpoint needs to answer without reading a store (e.g. `createdAt`).
    result: dict[str, str | int | None] = {}


EVENTS.register(COMMAND_OUTCOME, CommandOutcome)


# What a pure decider returns: the events a command yields, or why it is refused.


@dataclass(frozen=True)
class NewEvent:
    type: str
    data: EventData


@dataclass(frozen=True)
class Rejection:
    status: int
    message: str
    errors: tuple[FieldProblem, ...] = ()

    def outcome(self, command_id: str, aggregate_id: str, version: int | None = None) -> CommandOutcome:
        """The answer a refused command gets: the endpoint waiting on it replies with this status."""
        return CommandOutcome(
            command_id=command_id,
            aggregate_id=aggregate_id,
            verdict=Verdict.REJECTED,
            status=self.status,
            message=self.message,
            errors=self.errors,
            version=version,
        )
