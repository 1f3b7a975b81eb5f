"""The search projection's batch logic with fake stores: it waits for the Postgres read model (another
consumer group) to reach the batch's versions before indexing, and records its checkpoint after."""

from schemas.properties import PROPERTY_CREATED, PROPERTY_UPDATED
from schemas.read_models import PROPERTIES_OPENSEARCH_CHECKPOINT as OPENSEARCH_CHECKPOINT
from streams.properties.projection import (
    SEARCH_CONSUMER,
    behind,
    newest_versions,
    passed,
    plan_properties,
)
from streams.properties.search_app import SearchProjector
from tests.unit.test_property_projection import LISTING, record, row


class FakeRows:
    """Postgres as the other group leaves it: `versions` are served one call after another."""

    def __init__(self, versions: list[int], checkpoint: int = -1) -> None:
        self.versions = versions
        self.checkpoint = checkpoint
        self.reads: list[str] = []

    async def checkpoints(self, projection, where):
        self.reads.append("checkpoint")
        return {w: self.checkpoint for w in where}

    async def current(self, ids):
        self.reads.append("rows")
        version = self.versions.pop(0) if len(self.versions) > 1 else self.versions[0]
        return [] if version == 0 else [row(id=i, version=version) for i in ids]


class FakeSearch:
    def __init__(self) -> None:
        self.written: list[list[int]] = []

    async def write(self, rows):
        self.written.append([r.version for r in rows])
        return {}


class FakeCheckpoints:
    def __init__(self) -> None:
        self.recorded: list[str] = []

    async def record(self, projection, positions):
        self.recorded.append(projection)


def batch():
    created, _ = record(PROPERTY_CREATED, {"ownerId": "user-1", "listing": LISTING, "featured": False}, 1, offset=5)
    updated, _ = record(PROPERTY_UPDATED, {"listing": LISTING, "featured": True, "changedFields": []}, 2, offset=6)
    return [created, updated]


def projector(rows, search, checkpoints, letters, patience=2.0):
    async def dead_letters(found):
        letters.extend(found)

    return SearchProjector(rows, search, checkpoints, dead_letters, patience_seconds=patience)


def test_newest_versions_behind_and_passed():
    plan = plan_properties(batch(), SEARCH_CONSUMER)
    assert newest_versions(plan.changes) == {"prop-1": 2}
    assert behind([row(version=1)], {"prop-1": 2}) == {"prop-1"}
    assert behind([], {"prop-1": 1}) == {"prop-1"}
    assert behind([row(version=3)], {"prop-1": 2}) == set()
    assert passed({("properties", 3): 6}, {("properties", 3): 6})
    assert not passed({}, {("properties", 3): 6})


async def test_it_waits_until_postgres_holds_the_batchs_version_then_indexes_and_checkpoints():
    rows, search, checkpoints, letters = FakeRows([0, 1, 1, 2]), FakeSearch(), FakeCheckpoints(), []
    await projector(rows, search, checkpoints, letters).project(batch())
    assert search.written == [[2]]
    assert checkpoints.recorded == [OPENSEARCH_CHECKPOINT]
    assert letters == []
    # The checkpoint is read before the rows, every time.
    assert rows.reads == ["checkpoint", "rows"] * 4


async def test_a_version_postgres_refused_is_indexed_as_it_is_once_its_checkpoint_passed_it():
    rows, search, checkpoints = FakeRows([1], checkpoint=6), FakeSearch(), FakeCheckpoints()
    await projector(rows, search, checkpoints, [], patience=0.05).project(batch())
    assert search.written == [[1]]
    assert checkpoints.recorded == [OPENSEARCH_CHECKPOINT]


async def test_poison_is_dead_lettered_as_the_search_consumer_and_still_checkpointed():
    poison = record(PROPERTY_CREATED, {"ownerId": "user-1", "listing": LISTING}, sequence=None)[0]
    rows, search, checkpoints, letters = FakeRows([1]), FakeSearch(), FakeCheckpoints(), []
    await projector(rows, search, checkpoints, letters).project([poison])
    assert [letter.consumer for letter in letters] == [SEARCH_CONSUMER]
    assert search.written == [[]]
    assert checkpoints.recorded == [OPENSEARCH_CHECKPOINT]
