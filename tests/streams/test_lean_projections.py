"""Every projection on the lean runner (streams/runner.py), records in, no broker: the lane a projection
opens hands every record of a batch (key, value and where it came from) to the one object that plans and
writes it, through `KeyOrder` where the projection parks; a batch that object fails on for good goes to
`dead-letters`, record by record, named after the consumer and the source position, and a projection
that parks parks each as the dead head of its key. Each reads its settings' group and the topics it
names. What the objects write is theirs to prove (tests/unit for the plans, tests/integration for the
stores); the runner's consuming and committing is tests/integration/test_runner.py's."""

import asyncio
import importlib
from dataclasses import dataclass
from typing import Any

import pytest

from config import get_settings
from schemas.topics import (
    DEAD_LETTERS,
    DLQ_CONSUMER_HEADER,
    DLQ_ERROR_HEADER,
    DLQ_SOURCE_OFFSET_HEADER,
    DLQ_SOURCE_PARTITION_HEADER,
    DLQ_SOURCE_TOPIC_HEADER,
    FILES,
    NOTIFICATIONS,
    PROPERTIES,
    PROPERTY_VIEWS,
    SEARCHES,
    USERS,
)
from streams.archive.app import archive_topic_names
from streams.archive.projection import ARCHIVE_CONSUMER
from streams.dead_letters import DeadLetter
from streams.files.projection import PROJECTION_CONSUMER as FILE_CONSUMER
from streams.history.projection import HISTORY_CONSUMER
from streams.history.topics import history_topic_names
from streams.host import HOSTED, projection_named
from streams.notifications.projection import PROJECTION_CONSUMER as NOTIFICATION_CONSUMER
from streams.parking import KeyOrder, Parked
from streams.positions import RawRecord, SourcePosition
from streams.properties.projection import PROJECTION_CONSUMER as PROPERTY_CONSUMER
from streams.properties.projection import SEARCH_CONSUMER as PROPERTY_SEARCH_CONSUMER
from streams.runner import Context
from streams.searches.matching import MATCHER_CONSUMER
from streams.searches.projection import PROJECTION_CONSUMER as SEARCH_CONSUMER
from streams.users.projection import PROJECTION_CONSUMER as USER_CONSUMER
from tests.support.topology import RecordingKafkaProducer, kafka_partition


@dataclass(frozen=True)
class Lean:
    name: str  # as `python -m streams.host` names it
    group_setting: str
    handed_to: str  # the class the projection builds and hands its records to
    methods: dict[str, str]  # topic -> the method its records go to
    consumer: str
    parks: frozenset[str]  # the topics whose dead letters park their key's later events


CASES = [
    Lean(
        "file-projection",
        "file_projection_group",
        "FileProjector",
        {FILES.name: "project", USERS.name: "project"},
        FILE_CONSUMER,
        frozenset({FILES.name, USERS.name}),
    ),
    Lean(
        "search-projection",
        "search_projection_group",
        "SearchProjector",
        {SEARCHES.name: "project", USERS.name: "project"},
        SEARCH_CONSUMER,
        frozenset({SEARCHES.name, USERS.name}),
    ),
    Lean(
        "notification-projection",
        "notification_projection_group",
        "NotificationProjector",
        {NOTIFICATIONS.name: "project", USERS.name: "project"},
        NOTIFICATION_CONSUMER,
        frozenset({NOTIFICATIONS.name, USERS.name}),
    ),
    Lean(
        "user-projection",
        "user_projection_group",
        "UserProjector",
        {USERS.name: "project"},
        USER_CONSUMER,
        frozenset({USERS.name}),
    ),
    Lean(
        "property-search-projection",
        "property_search_projection_group",
        "SearchProjector",
        {PROPERTIES.name: "project"},
        PROPERTY_SEARCH_CONSUMER,
        frozenset(),
    ),
    Lean(
        "saved-search-matcher",
        "saved_search_matcher_group",
        "SavedSearchMatcher",
        {PROPERTIES.name: "react"},
        MATCHER_CONSUMER,
        frozenset(),
    ),
    Lean(
        "event-archive",
        "archive_group",
        "Archiver",
        {topic: "archive" for topic in archive_topic_names(get_settings())},
        ARCHIVE_CONSUMER,
        frozenset(),
    ),
    Lean(
        "user-history",
        "history_group",
        "HistoryProjector",
        {topic: "project" for topic in history_topic_names(get_settings())},
        HISTORY_CONSUMER,
        frozenset(),
    ),
    Lean(
        "property-projection",
        "property_projection_group",
        "PropertyProjector",
        {PROPERTIES.name: "project_properties", PROPERTY_VIEWS.name: "project_views"},
        PROPERTY_CONSUMER,
        # Views are counts, which no order changes.
        frozenset({PROPERTIES.name}),
    ),
]


class HandedTo:
    """Takes the place of the planner-and-writer a projection builds (its constructor returns this), and
    keeps each batch each of its methods is handed; or fails on every batch, as a bug would."""

    def __init__(self, methods: set[str], failing: bool) -> None:
        self.batches: dict[str, list[list[RawRecord]]] = {method: [] for method in methods}
        self._failing = failing
        for method in methods:
            setattr(self, method, self._taker(method))

    def __call__(self, *args: Any, **kwargs: Any) -> "HandedTo":
        return self

    def _taker(self, method: str) -> Any:
        async def take(records: list[RawRecord]) -> None:
            if self._failing:
                raise RuntimeError("a bug nobody foresaw")
            self.batches[method].append(list(records))

        return take

    def records(self, method: str) -> list[RawRecord]:
        return [record for batch in self.batches[method] for record in batch]


class ParkedInMemory:
    """Takes the place of `parked_events`: no Postgres here, and the projections' groups are the
    deployment's own, whose rows a test must not touch."""

    def __init__(self) -> None:
        self.parked: list[Parked] = []

    async def heads(self, keys):
        heads = {}
        for p in self.parked:
            heads.setdefault(p.key, p.record.position)
        return {key: at for key, at in heads.items() if key in keys}

    async def park(self, parked):
        known = {p.record.position for p in self.parked}
        self.parked += [p for p in parked if p.record.position not in known]

    async def requested(self, assigned):
        return []


@dataclass(frozen=True)
class InMemoryContext(Context):
    lot: ParkedInMemory | None = None

    def key_order(self, pool, dead_letter_consumer):
        assert self.lot is not None
        return KeyOrder(self.lot, self.publish, dead_letter_consumer)  # type: ignore[arg-type]


class Published:
    """The host's dead letters, and what a projection that sends its own (history) sent to its producer."""

    def __init__(self) -> None:
        self.letters: list[DeadLetter] = []
        self.producer = RecordingKafkaProducer()

    async def __call__(self, letters):
        self.letters += letters

    def sent(self) -> list[tuple[bytes | None, bytes | None, dict[str, bytes]]]:
        """Every dead letter as it would be on the topic: key, value, headers."""
        published = [(letter.key, letter.value, dict(letter.headers())) for letter in self.letters]
        produced = [(sent.key, sent.value, sent.headers) for sent in self.producer.recorded.to(DEAD_LETTERS.name)]
        return published + produced


def records_for(topics: list[str]) -> list[RawRecord]:
    """Two records of each topic, each on its key's partition."""
    made = []
    for topic in sorted(topics):
        for n in range(2):
            key = f"{topic}-key-{n}".encode()
            position = SourcePosition(topic, kafka_partition(topic, key), 100 + n)
            made.append(RawRecord(key, f'{{"n": {n}, "topic": "{topic}"}}'.encode(), position, timestamp=1.0))
    return made


def opened(monkeypatch, case: Lean, *, failing: bool = False):
    module = importlib.import_module(HOSTED[case.name])
    handed = HandedTo(set(case.methods.values()), failing)
    monkeypatch.setattr(module, case.handed_to, handed)
    if hasattr(module, "ensure_live"):  # history makes its live generation before it reads: not here
        monkeypatch.setattr(module, "ensure_live", lambda *args: asyncio.sleep(0))
    settings = get_settings()
    projection = projection_named(case.name, settings)
    published, lot = Published(), ParkedInMemory()
    context = InMemoryContext(settings, projection.group, published, producer=published.producer, lot=lot)
    return projection, projection.open(context), handed, published, lot


def test_every_lean_projection_is_tested_here():
    assert {case.name for case in CASES} == set(HOSTED)


@pytest.mark.parametrize("case", CASES, ids=[case.name for case in CASES])
def test_the_projection_reads_its_group_and_topics(case):
    projection = projection_named(case.name, get_settings())
    assert projection.name == case.name
    assert projection.group == getattr(get_settings(), case.group_setting)
    assert sorted(projection.topics) == sorted(case.methods)


@pytest.mark.parametrize("case", CASES, ids=[case.name for case in CASES])
async def test_the_lane_hands_every_record_as_it_came(monkeypatch, case):
    projection, lane_of, handed, published, lot = opened(monkeypatch, case)
    sent = records_for(list(projection.topics))
    async with lane_of as lane:
        await lane.handle(sent)
    for method in set(case.methods.values()):
        topics = {topic for topic, m in case.methods.items() if m == method}
        assert handed.records(method) == [record for record in sent if record.position.topic in topics]
    assert published.sent() == []
    assert lot.parked == []


@pytest.mark.parametrize("case", CASES, ids=[case.name for case in CASES])
async def test_a_batch_that_fails_for_good_is_dead_lettered_record_by_record(monkeypatch, case):
    projection, lane_of, _, published, lot = opened(monkeypatch, case, failing=True)
    sent = records_for(list(projection.topics))
    async with lane_of as lane:
        await lane.handle(sent)

    def position(headers: dict[str, bytes]) -> SourcePosition:
        return SourcePosition(
            headers[DLQ_SOURCE_TOPIC_HEADER].decode(),
            int(headers[DLQ_SOURCE_PARTITION_HEADER]),
            int(headers[DLQ_SOURCE_OFFSET_HEADER]),
        )

    letters = sorted(published.sent(), key=lambda letter: position(letter[2]))
    assert [(key, value, position(headers)) for key, value, headers in letters] == sorted(
        ((record.key, record.value, record.position) for record in sent), key=lambda kvp: kvp[2]
    )
    for _, _, headers in letters:
        assert headers[DLQ_CONSUMER_HEADER] == case.consumer.encode()
        assert b"a bug nobody foresaw" in headers[DLQ_ERROR_HEADER]
    # Each is dead, and first of its key: every later event of those keys would wait behind it.
    assert [(p.record, p.dead) for p in lot.parked] == [
        (record, True) for record in sent if record.position.topic in case.parks
    ]
