"""The property projections (Postgres + Redis, and search in its own group) against real Kafka,
Postgres, Redis and OpenSearch: real events in, each store checked; updates, images, deletes,
duplicates and stale events; exact view counts."""

import uuid
from datetime import UTC, datetime

import httpx
import orjson
import pytest
import redis.asyncio as redis
from psycopg_pool import AsyncConnectionPool

from schemas.topics import PROPERTIES, PROPERTY_VIEWS
from streams.positions import SourcePosition
from streams.properties.projection import ViewSeen
from streams.properties.sinks import PostgresViewSink
from tests.support.property_projection import (
    checkpoint,
    created,
    deleted,
    image,
    images_added,
    produce,
    projection_worker,
    search_worker,
    start_group_at_end,
    updated,
    viewed,
)
from tests.support.waiting import eventually

STORES = ("properties-postgres", "properties-redis", "properties-opensearch")


@pytest.fixture(scope="module")
async def worker(settings, tmp_path_factory):
    """Both projection workers, each under a fresh group of its own that starts at the topics' end."""
    suffix = uuid.uuid4().hex[:8]
    group, search_group = f"property-projection-it-{suffix}", f"property-search-projection-it-{suffix}"
    await start_group_at_end(settings.kafka_bootstrap, group, (PROPERTIES.name, PROPERTY_VIEWS.name))
    await start_group_at_end(settings.kafka_bootstrap, search_group, (PROPERTIES.name,))
    logs = tmp_path_factory.mktemp("logs")
    workers = [projection_worker(group, logs), search_worker(search_group, logs)]
    for each in workers:
        each.start()
    yield workers
    for each in workers:
        each.stop()


@pytest.fixture
async def cache(settings):
    client = redis.from_url(settings.redis_url)
    yield client
    await client.aclose()


@pytest.fixture
async def search(settings):
    async with httpx.AsyncClient(base_url=settings.opensearch_url, timeout=10) as client:
        yield client


async def applied_everywhere(pg, sent, stores=STORES):
    """Every store's checkpoint has passed the last record sent."""
    for store in stores:
        await eventually(lambda s=store: checkpoint(pg, s, sent), until=lambda o: o >= sent.offset, within=60)


async def row_of(pg, property_id):
    cursor = await pg.execute(
        "SELECT owner_id, title, price, featured, images, deleted, version, created_at IS NOT NULL"
        " FROM properties WHERE id = %s",
        (property_id,),
    )
    return await cursor.fetchone()


async def owner_count(pg, owner):
    cursor = await pg.execute("SELECT property_count FROM user_property_counts WHERE user_id = %s", (owner,))
    row = await cursor.fetchone()
    return None if row is None else row[0]


async def search_doc(search, property_id):
    response = await search.get(f"/properties/_doc/{property_id}")
    return response.json() if response.status_code == 200 else None


async def test_a_created_property_lands_in_every_store(worker, producer, pg, cache, search, run_id):
    pid, owner = f"prop-{run_id}-c1", f"user-{run_id}-a"
    event = created(pid, owner, run_id, n=1, featured=True)
    [sent] = await produce(producer, event)
    await applied_everywhere(pg, sent)

    assert await row_of(pg, pid) == (owner, event.data["listing"]["title"], 5_001_000, True, [], False, 1, True)
    assert await owner_count(pg, owner) == 1

    document = orjson.loads(await cache.get(f"property:{pid}"))
    assert document["id"] == pid and document["ownerId"] == owner and document["version"] == 1
    assert document["propertyType"] == "APARTMENT" and document["viewCount"] == 0 and document["featured"] is True
    assert document["createdAt"] == event.time.isoformat(timespec="milliseconds").replace("+00:00", "Z")
    score = event.time.timestamp() * 1000
    assert await cache.zscore("properties:recent", pid) == pytest.approx(score)
    assert await cache.zscore("properties:featured", pid) == pytest.approx(score)

    found = await search_doc(search, pid)
    assert found["_index"].startswith("properties-v") and found["_version"] == 1
    assert found["_source"]["geo"] == {"lat": 17.44, "lon": 78.35} and found["_source"]["ownerId"] == owner
    # The edge n-gram subfield finds it by a word's prefix, as suggestions will.
    query = {"bool": {"must": {"match": {"title.suggest": "apart"}}, "filter": {"term": {"ownerId": owner}}}}
    hits = (await search.post("/properties/_search", json={"query": query})).json()["hits"]["hits"]
    assert [hit["_id"] for hit in hits] == [pid]


async def test_update_images_and_delete_move_every_store_forward(worker, producer, pg, cache, search, run_id):
    pid, owner = f"prop-{run_id}-life", f"user-{run_id}-b"
    other = f"prop-{run_id}-life-kept"
    [*_, sent] = await produce(
        producer,
        created(pid, owner, run_id, featured=True),
        created(other, owner, run_id),
        updated(pid, owner, run_id, 2, featured=False, price=9_900_000, title="Renovated 3BHK"),
        images_added(pid, owner, run_id, 3, count=2),
    )
    await applied_everywhere(pg, sent)
    assert (await row_of(pg, pid))[1:7] == ("Renovated 3BHK", 9_900_000, False, [image(0), image(1)], False, 3)
    assert await owner_count(pg, owner) == 2
    document = orjson.loads(await cache.get(f"property:{pid}"))
    assert (document["price"], document["version"], len(document["images"])) == (9_900_000, 3, 2)
    assert await cache.zscore("properties:featured", pid) is None
    found = await search_doc(search, pid)
    assert (found["_version"], found["_source"]["price"], found["_source"]["imageCount"]) == (3, 9_900_000, 2)

    [sent] = await produce(producer, deleted(pid, owner, run_id, 4))
    await applied_everywhere(pg, sent)
    assert (await row_of(pg, pid))[5:7] == (True, 4)
    assert await owner_count(pg, owner) == 1
    assert orjson.loads(await cache.get(f"property:{pid}"))["deleted"] is True
    assert await cache.zscore("properties:recent", pid) is None
    assert await search_doc(search, pid) is None
    assert await search_doc(search, other) is not None


async def test_duplicates_and_stale_events_change_nothing(worker, producer, pg, cache, search, run_id):
    pid, owner = f"prop-{run_id}-dup", f"user-{run_id}-c"
    first = created(pid, owner, run_id, price=1_000_000)
    second = updated(pid, owner, run_id, 2, price=2_000_000)
    third = updated(pid, owner, run_id, 3, price=3_000_000)
    # Redelivery of everything, then a stale version arriving after the newest: the stores stay at v3.
    [*_, sent] = await produce(producer, first, second, third, first, second, third, second)
    await applied_everywhere(pg, sent)
    assert (await row_of(pg, pid))[2] == 3_000_000
    assert (await row_of(pg, pid))[6] == 3
    assert await owner_count(pg, owner) == 1
    document = orjson.loads(await cache.get(f"property:{pid}"))
    assert (document["price"], document["version"]) == (3_000_000, 3)
    found = await search_doc(search, pid)
    assert (found["_version"], found["_source"]["price"]) == (3, 3_000_000)

    # A stale creation after the deletion does not resurrect the property anywhere.
    [*_, sent] = await produce(producer, deleted(pid, owner, run_id, 4), first)
    await applied_everywhere(pg, sent)
    assert (await row_of(pg, pid))[5:7] == (True, 4)
    assert await owner_count(pg, owner) == 0
    assert orjson.loads(await cache.get(f"property:{pid}"))["version"] == 4
    assert await search_doc(search, pid) is None


async def test_views_are_counted_per_property_and_per_day(worker, producer, pg, cache, run_id):
    pid, owner = f"prop-{run_id}-views", f"user-{run_id}-d"
    # Views may arrive before the listing they name: they are kept and shown once it exists.
    [*_, sent_views] = await produce(producer, *(viewed(pid, run_id) for _ in range(3)))
    [sent] = await produce(producer, created(pid, owner, run_id))
    await applied_everywhere(pg, sent_views, ("properties-postgres", "properties-redis"))
    await applied_everywhere(pg, sent)
    assert orjson.loads(await cache.get(f"property:{pid}"))["viewCount"] == 3

    [*_, sent_views] = await produce(producer, *(viewed(pid, run_id) for _ in range(2)))
    await applied_everywhere(pg, sent_views, ("properties-postgres", "properties-redis"))
    cursor = await pg.execute("SELECT view_count FROM property_views WHERE property_id = %s", (pid,))
    assert await cursor.fetchone() == (5,)
    cursor = await pg.execute("SELECT day, views FROM property_views_daily WHERE property_id = %s", (pid,))
    assert await cursor.fetchall() == [(datetime.now(UTC).date(), 5)]
    assert await cache.hget(f"property:{pid}:views", "count") == b"5"
    assert orjson.loads(await cache.get(f"property:{pid}"))["viewCount"] == 5


async def test_a_redelivered_view_batch_is_never_counted_twice(settings, pg, run_id):
    """The sink on its own, under a projection name of this test: the same batch applied twice (a crash
    after commit, before the offset commit) counts once; a batch overlapping it counts only what is new."""
    projection = f"views-it-{uuid.uuid4().hex[:8]}"
    pid = f"prop-{run_id}-redelivered"
    now = datetime.now(UTC)
    views = [ViewSeen(pid, now.date(), now, SourcePosition("property-views", 2, offset)) for offset in (10, 11, 12)]
    async with AsyncConnectionPool(settings.postgres_dsn, min_size=1, max_size=2) as pool:
        sink = PostgresViewSink(pool, projection)
        positions = [v.position for v in views]
        first = await sink.apply(views, positions)
        again = await sink.apply(views, positions)
        later = [*views[1:], ViewSeen(pid, now.date(), now, SourcePosition("property-views", 2, 13))]
        overlapping = await sink.apply(later, [v.position for v in later])
    assert [t.view_count for t in (*first, *again, *overlapping)] == [3, 3, 4]
    await pg.execute("DELETE FROM projection_checkpoints WHERE projection = %s", (projection,))
