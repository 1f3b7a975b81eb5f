"""Stream topology tests without a broker: an agent runs in Faust's `test_context`, messages go in through
it, and what the agent sends (events, outcomes, forwarded commands, table changelogs, dead letters) is
kept by a `RecordingProducer` standing in for the app's Kafka producer. Partitions are chosen as Kafka's
default partitioner chooses them (murmur2 of the key over the catalogue's partition count), so a test can
say where a record would land."""

import ast
import asyncio
import contextlib
import importlib
import importlib.util
import time
from collections import Counter
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path

import faust
from aiokafka.partitioner import DefaultPartitioner
from faust.types import TP, FutureMessage, Message, RecordMetadata

from schemas.codec import decode
from schemas.envelope import Envelope, new_event
from schemas.topics import by_name
from schemas.users import REGISTER_USER, RegisterUser
from streams.positions import RawRecord
from tests.support.waiting import eventually

_PARTITIONER = DefaultPartitioner()


def kafka_partition(topic: str, key: bytes | None) -> int:
    partitions = list(range(by_name(topic).partitions))
    return int(_PARTITIONER(key, partitions, partitions))


@dataclass(frozen=True)
class Sent:
    topic: str
    key: bytes | None
    value: bytes | None
    partition: int
    offset: int
    headers: dict[str, bytes]

    @property
    def envelope(self) -> Envelope:
        assert self.value is not None
        return decode(self.value)


class RecordingProducer:
    """What an agent hands to `app.producer`, kept in order, acknowledged at once."""

    def __init__(self) -> None:
        self.sent: list[Sent] = []
        self._next_offset: Counter[tuple[str, int]] = Counter()

    def record(
        self, topic: str, key: bytes | None, value: bytes | None, partition: int | None, headers: object
    ) -> RecordMetadata:
        if partition is None:
            partition = kafka_partition(topic, key)
        offset = self._next_offset[(topic, partition)]
        self._next_offset[(topic, partition)] += 1
        header_map = {name: bytes(content) for name, content in (headers or [])}  # type: ignore[attr-defined]
        self.sent.append(Sent(topic, key, value, partition, offset, header_map))
        return RecordMetadata(topic, partition, TP(topic, partition), offset)

    async def send_and_wait(
        self,
        topic: str,
        key: bytes | None,
        value: bytes | None,
        partition: int | None = None,
        timestamp: float | None = None,
        headers: object = None,
        **_: object,
    ) -> RecordMetadata:
        return self.record(topic, key, value, partition, headers)

    async def send(self, *args: object, **kwargs: object) -> "asyncio.Future[RecordMetadata]":
        acked: asyncio.Future[RecordMetadata] = asyncio.get_running_loop().create_future()
        acked.set_result(await self.send_and_wait(*args, **kwargs))  # type: ignore[arg-type]
        return acked

    def send_soon(self, future: FutureMessage) -> None:
        """A table's changelog write (Faust buffers these; here they are acknowledged at once)."""
        pending = future.message
        metadata = self.record(
            pending.channel.get_topic_name(), pending.key, pending.value, pending.partition, pending.headers
        )
        future.set_result(metadata)
        if pending.callback is not None:
            pending.callback(future)

    def key_partition(self, topic: str, key: bytes) -> TP:
        return TP(topic, kafka_partition(topic, key))

    def to(self, topic: str) -> list[Sent]:
        return [sent for sent in self.sent if sent.topic == topic]

    async def until(self, topic: str, count: int, within: float = 10.0) -> list[Sent]:
        """What was sent to `topic` once it holds `count` records (a batching agent sends a little later)."""

        async def probe() -> list[Sent]:
            return self.to(topic)

        return await eventually(probe, lambda sent: len(sent) >= count, within=within, every=0.01)


class RecordingKafkaProducer:
    """A `RecordingProducer` behind aiokafka's `AIOKafkaProducer.send` (what the lean runner's
    projections are given), acknowledged at once."""

    def __init__(self) -> None:
        self.recorded = RecordingProducer()

    async def send(
        self,
        topic: str,
        value: bytes | None = None,
        key: bytes | None = None,
        partition: int | None = None,
        timestamp_ms: int | None = None,
        headers: object = None,
    ) -> "asyncio.Future[RecordMetadata]":
        return await self.recorded.send(topic, key, value, partition, None, headers)


@contextlib.contextmanager
def recording(app: faust.App) -> Iterator[RecordingProducer]:
    """The app's producer replaced for the length of a test."""
    producer = RecordingProducer()
    previous = app._producer
    app.producer = producer
    try:
        yield producer
    finally:
        app.producer = previous


@contextlib.asynccontextmanager
async def running(agent: faust.types.AgentT) -> AsyncIterator[tuple[faust.types.AgentT, RecordingProducer]]:
    """The agent in Faust's test context, its app's producer recording; its app's tables start and end
    empty (their stores directly: clearing the table itself would write tombstones to its changelog)."""
    tables = list(agent.app.tables.values())
    with recording(agent.app) as producer:
        try:
            for table in tables:
                table.data.clear()
            async with agent.test_context() as running_agent:
                yield running_agent, producer
        finally:
            for table in tables:
                table.data.clear()


async def put_records(agent: faust.types.AgentT, records: list[RawRecord]) -> None:
    """As the test wrapper's `put`, with each record's topic, partition and offset its own: an agent of
    several topics tells them apart by the topic, and the wrapper names none for such an agent."""
    channel = agent.stream().channel  # type: ignore[attr-defined]
    for record in records:
        assert record.key is not None and record.value is not None
        message = Message(
            topic=record.position.topic,
            partition=record.position.partition,
            offset=record.position.offset,
            timestamp=time.time(),
            timestamp_type=0,
            headers=None,
            key=record.key,
            value=record.value,
            checksum=b"",
            serialized_key_size=len(record.key),
            serialized_value_size=len(record.value),
            generation_id=agent.app.consumer_generation_id,
        )
        await channel.put(await channel.decode(message))


def registration(user_id: str, email_key: str, command_id: str, email: str = "priya@example.com") -> Envelope:
    """A `user.register.v1` as the user service sends it to the registry."""
    data = RegisterUser(
        user_id=user_id,
        email=email,
        email_key=email_key,
        name="Priya",
        phone="+919876543210",
        password_hash="$argon2id$v=19$m=65536,t=3,p=4$c2FsdA$aGFzaA",
    )
    return new_event(
        type=REGISTER_USER, subject=email_key, data=data.to_wire(), service="user", userid=user_id, event_id=command_id
    )


def faust_app_of(module: str) -> faust.App:
    """The Faust app a worker module runs, found without running it (a `*_worker` module starts its app on
    import; a package run with -m runs its `__main__`)."""
    if module.endswith("_app"):
        return importlib.import_module(module).app
    spec = importlib.util.find_spec(module)
    assert spec is not None and spec.origin is not None, module
    origin = Path(spec.origin)
    if spec.submodule_search_locations:
        origin = origin.with_name("__main__.py")
    for node in ast.walk(ast.parse(origin.read_text())):
        if isinstance(node, ast.ImportFrom) and any(alias.name == "app" for alias in node.names):
            assert node.module is not None
            return importlib.import_module(node.module).app
    raise AssertionError(f"{module} imports no Faust app")


def hosted_by(module: str) -> list[str]:
    """The lean-runner projections a worker module hosts (`run_worker("<name>")`, streams/host.py), found
    without running it; none for a Faust worker."""
    spec = importlib.util.find_spec(module)
    assert spec is not None and spec.origin is not None, module
    origin = Path(spec.origin)
    if spec.submodule_search_locations:  # a package run with -m runs its `__main__`
        origin = origin.with_name("__main__.py")
    tree = ast.parse(origin.read_text())
    # A name passed by constant (`run_worker(ARCHIVE_CONSUMER)`) is looked up where it is imported from.
    imported = {
        alias.asname or alias.name: node.module
        for node in ast.walk(tree)
        if isinstance(node, ast.ImportFrom) and node.module
        for alias in node.names
    }
    names = []
    if imported.get("run_worker") != "streams.host":  # a Faust worker's `streams.app.run_worker(app)`
        return names
    for node in ast.walk(tree):
        if isinstance(node, ast.Call) and getattr(node.func, "id", None) == "run_worker":
            for arg in node.args:
                if isinstance(arg, ast.Constant) and isinstance(arg.value, str):
                    names.append(arg.value)
                elif isinstance(arg, ast.Name):
                    names.append(getattr(importlib.import_module(imported[arg.id]), arg.id))
    return names
