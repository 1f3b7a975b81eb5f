"""The commands a decider's state remembers, each with the version it left the aggregate at.

A decider killed mid-batch restarts from a changelog that already holds the batch's later commands. The
redelivered command is recognised (`decided_before`) and answered with the version it left then
(`version_after`), not the aggregate's current one: one command never gets two different answers.
A state remembers only its last few commands, so it also keeps the offset it was decided through (the
aggregate's commands share one partition): a redelivered command at or below it that is no longer
remembered was decided and answered already (`forgotten_redelivery`), and is not answered again from
today's state. The property and account deciders keep the same memory, so it lives here once.
"""

from dataclasses import replace
from typing import Any, ClassVar, Protocol, TypeVar

REMEMBERED_COMMANDS = 20

# `(command id, version it left)`; the version is None for a command remembered before versions were kept.
Remembered = tuple[tuple[str, int | None], ...]


class RemembersCommands(Protocol):
    # A dataclass (for `replace`) with the three fields this module reads.
    __dataclass_fields__: ClassVar[dict[str, Any]]

    @property
    def recent_commands(self) -> Remembered: ...

    @property
    def version(self) -> int: ...

    # The offset, in the aggregate's partition of its commands, of the last command decided into the
    # state; None for a state written before it was kept.
    @property
    def decided_through(self) -> int | None: ...


State = TypeVar("State", bound=RemembersCommands)


def decided_before(state: RemembersCommands | None, command_id: str) -> bool:
    return state is not None and any(id_ == command_id for id_, _ in state.recent_commands)


def remember(state: State, command_id: str, offset: int) -> State:
    """Remember an accepted command (at `offset` of its partition) with the version it left; a command
    remembered already keeps its own. The state is decided through the highest offset seen."""
    through = max(offset, -1 if state.decided_through is None else state.decided_through)
    if decided_before(state, command_id):
        return replace(state, decided_through=through)
    recent = (*state.recent_commands, (command_id, state.version))
    return replace(state, recent_commands=recent[-REMEMBERED_COMMANDS:], decided_through=through)


def forgotten_redelivery(state: RemembersCommands | None, command_id: str, offset: int) -> bool:
    """A command redelivered after a crash that the state decided and has since forgotten (more commands on
    the aggregate since than it remembers): its events and answer left the first time, and answering it
    again from today's state could say another version. A state written before offsets were kept cannot
    tell, and decides as before."""
    if state is None or state.decided_through is None or decided_before(state, command_id):
        return False
    return offset <= state.decided_through


def version_after(state: RemembersCommands, command_id: str) -> int:
    """The version an accepted command left the aggregate at: the same answer however often it is decided.
    A command remembered before versions were kept with it gets the current version."""
    for id_, version in state.recent_commands:
        if id_ == command_id and version is not None:
            return version
    return state.version


def remembered_from_json(entries: list[Any]) -> Remembered:
    """`[id, version]` pairs; a bare id is a state written before versions were remembered."""
    return tuple((entry, None) if isinstance(entry, str) else (entry[0], entry[1]) for entry in entries)
