"""Every agent of a Faust worker that hands batches on, records in, no broker (the projections on the lean
runner are tests/streams/test_lean_projections.py's): each agent reads its topics in batches and hands every
record (key, value and where it came from) to the one object that plans and writes it; a batch that
object fails on for good goes to `dead-letters`, record by record, named after the consumer and the
source position, because Faust acks a batch whatever its loop raised. What the objects write is theirs
to prove (tests/unit for the plans, tests/integration for the stores)."""

import asyncio
import importlib
from dataclasses import dataclass
from typing import Any

import pytest

from schemas.topics import (
    DEAD_LETTERS,
    DLQ_CONSUMER_HEADER,
    DLQ_ERROR_HEADER,
    DLQ_SOURCE_OFFSET_HEADER,
    DLQ_SOURCE_PARTITION_HEADER,
    DLQ_SOURCE_TOPIC_HEADER,
)
from streams.files.optimizer_app import OPTIMIZER_CONSUMER
from streams.notifications.policy import DELIVERY_CONSUMER
from streams.notifications.triggers import TRIGGER_CONSUMER
from streams.positions import RawRecord, SourcePosition
from tests.support.topology import kafka_partition, put_records, running
from tests.support.waiting import eventually


@dataclass(frozen=True)
class Agent:
    module: str
    agent: str
    handed_to: str  # the class the agent builds and hands its records to
    method: str
    consumer: str


AGENTS = [
    Agent("streams.files.optimizer_app", "optimize_images", "Optimizer", "handle", OPTIMIZER_CONSUMER),
    Agent("streams.notifications.delivery_app", "take_requests", "DeliveryReactor", "take_requests", DELIVERY_CONSUMER),
    Agent("streams.notifications.delivery_app", "take_triggers", "DeliveryReactor", "take_triggers", TRIGGER_CONSUMER),
]


class HandedTo:
    """Takes the place of the planner-and-writer an agent builds (its constructor returns this), and keeps
    each batch it is handed; or fails on every batch, as a bug would."""

    def __init__(self, method: str, failing: bool) -> None:
        self.batches: list[list[RawRecord]] = []
        self._failing = failing
        setattr(self, method, self._take)

    def __call__(self, *args: Any, **kwargs: Any) -> "HandedTo":
        return self

    async def _take(self, records: list[RawRecord]) -> None:
        if self._failing:
            raise RuntimeError("a bug nobody foresaw")
        self.batches.append(list(records))

    @property
    def records(self) -> list[RawRecord]:
        return [record for batch in self.batches for record in batch]


def handed_to(monkeypatch: pytest.MonkeyPatch, case: Agent, *, failing: bool = False) -> tuple[Any, HandedTo]:
    module = importlib.import_module(case.module)
    handed = HandedTo(case.method, failing)
    monkeypatch.setattr(module, case.handed_to, handed)
    if hasattr(module, "ensure_live"):  # history makes its live generation before it reads: not here
        monkeypatch.setattr(module, "ensure_live", lambda *args: asyncio.sleep(0))
    if hasattr(module, "runtime"):  # the delivery agents share one reactor, built on first use
        monkeypatch.setattr(module.runtime, "_reactor", None)
    return getattr(module, case.agent), handed


def records_for(agent: Any) -> list[RawRecord]:
    """Two records of each topic the agent reads, each on its key's partition."""
    made = []
    for topic in sorted(agent.channel.topics):
        for n in range(2):
            key = f"{topic}-key-{n}".encode()
            position = SourcePosition(topic, kafka_partition(topic, key), 100 + n)
            made.append(RawRecord(key, f'{{"n": {n}, "topic": "{topic}"}}'.encode(), position))
    return made


@pytest.mark.parametrize("case", AGENTS, ids=[case.agent for case in AGENTS])
async def test_the_agent_hands_every_record_as_it_came(monkeypatch, case):
    agent, handed = handed_to(monkeypatch, case)
    sent = records_for(agent)
    async with running(agent) as (running_agent, producer):
        await put_records(running_agent, sent)

        async def taken() -> list[RawRecord]:
            return handed.records

        assert await eventually(taken, lambda got: len(got) >= len(sent), within=10, every=0.01) == sent
        assert producer.to(DEAD_LETTERS.name) == []


@pytest.mark.parametrize("case", AGENTS, ids=[case.agent for case in AGENTS])
async def test_a_batch_that_fails_for_good_is_dead_lettered_record_by_record(monkeypatch, case):
    agent, _ = handed_to(monkeypatch, case, failing=True)
    sent = records_for(agent)
    async with running(agent) as (running_agent, producer):
        await put_records(running_agent, sent)
        letters = await producer.until(DEAD_LETTERS.name, len(sent), within=30)
    assert [(letter.key, letter.value) for letter in letters] == [(record.key, record.value) for record in sent]
    for letter, record in zip(letters, sent, strict=True):
        assert letter.headers[DLQ_CONSUMER_HEADER] == case.consumer.encode()
        assert b"a bug nobody foresaw" in letter.headers[DLQ_ERROR_HEADER]
        assert (
            letter.headers[DLQ_SOURCE_TOPIC_HEADER].decode(),
            int(letter.headers[DLQ_SOURCE_PARTITION_HEADER]),
            int(letter.headers[DLQ_SOURCE_OFFSET_HEADER]),
        ) == (record.position.topic, record.position.partition, record.position.offset)
