"""The property decider's batch loop with a broker that fails once: the batch is decided again, every
command keeps its events and its answer, nothing is applied twice."""

import asyncio
from collections.abc import Awaitable
from datetime import UTC, datetime
from typing import Any

import faust
import pytest
from aiokafka.errors import KafkaTimeoutError, RequestTimedOutError
from aiokafka.structs import RecordMetadata

from schemas.codec import decode, encode
from schemas.envelope import new_event
from schemas.outcomes import CommandOutcome, Verdict
from schemas.properties import CREATE_PROPERTY, UPDATE_PROPERTY, CreateProperty, ListingFields, UpdateProperty
from schemas.topics import COMMAND_OUTCOMES, PROPERTIES, PROPERTY_COMMANDS
from streams.properties import command_batches
from streams.properties.command_batches import PropertyCommandBatches
from streams.remembered_commands import REMEMBERED_COMMANDS

LISTING = ListingFields.model_validate(
    {
        "title": "2BHK Kondapur",
        "location": "Kondapur",
        "price": 6500000,
        "propertyType": "APARTMENT",
        "bedrooms": 2,
        "bathrooms": 2,
    }
)


class Broker:
    """Records what the broker took; `fail_at` makes the n-th send (0-based) fail once, `when` says how."""

    def __init__(self, fail_at: int | None = None, when: str = "acked") -> None:
        self.taken: dict[str, list[bytes]] = {}
        self.sends = 0
        self.fail_at = fail_at
        self.when = when

    async def send(self, topic: str, key: bytes, value: bytes) -> Awaitable[RecordMetadata]:
        n = self.sends
        self.sends += 1
        failing = n == self.fail_at
        if failing and self.when == "sending":
            raise KafkaTimeoutError()
        future: asyncio.Future[RecordMetadata] = asyncio.get_running_loop().create_future()
        if failing:
            future.set_exception(RequestTimedOutError())
        else:
            records = self.taken.setdefault(topic, [])
            records.append(value)
            future.set_result(RecordMetadata(topic, 0, None, len(records) - 1, -1, -1, None))
        return future

    def outcomes(self) -> dict[str, CommandOutcome]:
        answers = (decode(value) for value in self.taken.get(COMMAND_OUTCOMES.name, []))
        return {a.subject: CommandOutcome.model_validate(a.data) for a in answers}

    def event_ids(self) -> list[str]:
        return [decode(value).id for value in self.taken.get(PROPERTIES.name, [])]


class Table:
    def __init__(self) -> None:
        self.states: dict[str, dict[str, Any]] = {}

    def get(self, property_id: str) -> dict[str, Any] | None:
        return self.states.get(property_id)

    def put(self, partition: int, property_id: str, state: dict[str, Any] | None) -> None:
        if state is None:
            self.states.pop(property_id, None)
        else:
            self.states[property_id] = state


def message(offset: int, kind: str, property_id: str, data: Any, command_id: str) -> faust.types.Message:
    envelope = new_event(
        type=kind,
        subject=property_id,
        data=data.to_wire(),
        service="property",
        userid="user-1",
        event_id=command_id,
        time=datetime(2026, 12, 1, 10, 0, tzinfo=UTC),
    )
    return faust.types.Message(
        PROPERTY_COMMANDS.name, 0, offset, 0.0, 0, None, property_id.encode(), encode(envelope), None
    )


def batch() -> list[faust.types.Message]:
    return [
        message(0, CREATE_PROPERTY, "prop-a", CreateProperty(listing=LISTING), "cmd-a"),
        message(1, CREATE_PROPERTY, "prop-b", CreateProperty(listing=LISTING), "cmd-b"),
        message(2, UPDATE_PROPERTY, "prop-a", UpdateProperty(changes={"price": 6400000}), "cmd-a2"),
        message(3, CREATE_PROPERTY, "prop-c", CreateProperty(listing=LISTING), "cmd-c"),
    ]


async def decide(broker: Broker) -> Table:
    table = Table()
    dead: list[Exception] = []

    async def dead_letter(_: faust.types.Message, exc: Exception) -> None:
        dead.append(exc)

    await PropertyCommandBatches(broker.send, table, dead_letter).decide_batch(batch())
    assert dead == []
    return table


@pytest.fixture(autouse=True)
def no_backoff(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(command_batches, "MAX_BACKOFF_SECONDS", 0.0)

    async def no_sleep(_: float) -> None:
        return None

    monkeypatch.setattr(command_batches.asyncio, "sleep", no_sleep)


@pytest.mark.parametrize("fail_at", [0, 1, 3, 5])  # an event of the first command, of a later one, answers
@pytest.mark.parametrize("when", ["acked", "sending"])
def test_a_producer_error_decides_the_batch_again_and_loses_no_outcome(fail_at: int, when: str) -> None:
    clean = Broker()
    expected_states = asyncio.run(decide(clean)).states
    broker = Broker(fail_at=fail_at, when=when)

    states = asyncio.run(decide(broker)).states

    outcomes = broker.outcomes()
    assert set(outcomes) == {"cmd-a", "cmd-b", "cmd-a2", "cmd-c"}
    assert all(o.verdict == Verdict.ACCEPTED and o.positions for o in outcomes.values())
    assert outcomes["cmd-a2"].version == 2  # decided again from the state before the batch, not twice
    assert set(broker.event_ids()) == set(clean.event_ids())  # the same events: sinks ignore the repeats
    assert states == expected_states


def test_a_command_redelivered_after_more_commands_than_the_state_remembers_is_not_answered_again() -> None:
    """A decider killed before its offsets were committed decides its commands again from a state that has
    moved on. A command still remembered is answered with the version it left; one pushed out of memory by
    later commands on its property must not be answered from today's state with another version."""
    updates = [
        message(1 + n, UPDATE_PROPERTY, "prop-a", UpdateProperty(changes={"price": 6_000_000 + n}), f"cmd-u{n}")
        for n in range(REMEMBERED_COMMANDS + 5)
    ]
    first_run = [message(0, CREATE_PROPERTY, "prop-a", CreateProperty(listing=LISTING), "cmd-a"), *updates]
    table = Table()
    broker = Broker()

    async def dead_letter(_: faust.types.Message, exc: Exception) -> None:
        raise AssertionError(exc)

    deciding = PropertyCommandBatches(broker.send, table, dead_letter)
    asyncio.run(deciding.decide_batch(first_run))
    first_answers = {a.subject: a.data for a in map(decode, broker.taken[COMMAND_OUTCOMES.name])}

    broker.taken[COMMAND_OUTCOMES.name] = []
    asyncio.run(deciding.decide_batch(first_run))  # the same log again, as after a crash
    again = {a.subject: a.data for a in map(decode, broker.taken[COMMAND_OUTCOMES.name])}

    assert again, "the remembered commands are answered again"
    assert "cmd-u0" not in again and "cmd-a" not in again  # forgotten: answered once, the first time
    assert all(again[command]["version"] == first_answers[command]["version"] for command in again)
    assert table.states["prop-a"]["version"] == 1 + len(updates)  # nothing applied twice
