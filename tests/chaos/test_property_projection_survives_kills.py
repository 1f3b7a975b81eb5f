"""Kill both property projection workers (Postgres + Redis, and search, two groups) with SIGKILL twice
while 1,000 listings (20 owners) and 1,000 views arrive: Postgres, Redis and OpenSearch each converge to
exactly those 1,000 listings, the view counts sum to exactly 1,000 everywhere, and every owner's listing
count is right."""

import asyncio
import random
import uuid
from collections import Counter

import httpx
import orjson
import redis.asyncio as redis

from schemas.topics import PROPERTIES, PROPERTY_VIEWS
from tests.support.property_projection import (
    checkpoint,
    created,
    produce,
    projection_worker,
    search_worker,
    start_group_at_end,
    viewed,
)
from tests.support.waiting import eventually

TOTAL = 1_000
OWNERS = 20
WAVES = 5


async def count_rows(pg, prefix):
    cursor = await pg.execute("SELECT count(*) FROM properties WHERE id LIKE %s", (f"{prefix}%",))
    return (await cursor.fetchone())[0]


async def test_killing_both_projections_twice_loses_and_duplicates_nothing(settings, producer, pg, run_id, tmp_path):
    chaos = f"{run_id}-pchaos-{uuid.uuid4().hex[:6]}"
    prefix = f"prop-{chaos}-"
    ids = [f"{prefix}{n}" for n in range(TOTAL)]
    owner_of = {pid: f"user-{chaos}-{n % OWNERS}" for n, pid in enumerate(ids)}
    viewed_ids = [random.choice(ids) for _ in range(TOTAL)]

    suffix = uuid.uuid4().hex[:8]
    group, search_group = f"property-projection-chaos-{suffix}", f"property-search-projection-chaos-{suffix}"
    await start_group_at_end(settings.kafka_bootstrap, group, (PROPERTIES.name, PROPERTY_VIEWS.name))
    await start_group_at_end(settings.kafka_bootstrap, search_group, (PROPERTIES.name,))
    workers = [projection_worker(group, tmp_path), search_worker(search_group, tmp_path)]
    for worker in workers:
        worker.start()
    last_sent = {}
    try:
        per_wave = TOTAL // WAVES
        kills = 0
        for wave in range(WAVES):
            wave_ids = ids[wave * per_wave : (wave + 1) * per_wave]
            events = [created(pid, owner_of[pid], chaos, n=i) for i, pid in enumerate(wave_ids)]
            events += [viewed(pid, chaos) for pid in viewed_ids[wave * per_wave : (wave + 1) * per_wave]]
            for sent in await produce(producer, *events):
                where = (sent.topic, sent.partition)
                last_sent[where] = max(last_sent.get(where, -1), sent.offset)
            if wave in (1, 3):
                # Kill once some of the wave is projected and some is not: mid-batch, offsets uncommitted.
                floor = wave * per_wave
                await eventually(lambda: count_rows(pg, prefix), until=lambda c, f=floor: c > f, within=90)
                # Both workers, in a random order and a moment apart: each group is cut mid-batch.
                for worker in random.sample(workers, len(workers)):
                    await asyncio.sleep(random.uniform(0.0, 0.3))
                    worker.kill()
                    worker.start()
                kills += 1
        assert kills == 2

        class Sent:
            def __init__(self, topic, partition, offset):
                self.topic, self.partition, self.offset = topic, partition, offset

        stores = {
            PROPERTIES.name: ("properties-postgres", "properties-redis", "properties-opensearch"),
            PROPERTY_VIEWS.name: ("properties-postgres", "properties-redis"),
        }
        for (topic, partition), offset in last_sent.items():
            for store in stores[topic]:
                sent = Sent(topic, partition, offset)
                await eventually(
                    lambda s=store, m=sent: checkpoint(pg, s, m), until=lambda o, m=sent: o >= m.offset, within=180
                )
    finally:
        for worker in workers:
            worker.stop()

    expected_views = Counter(viewed_ids)

    # Postgres: exactly the listings, exact view counts, right owner counts.
    cursor = await pg.execute(
        "SELECT p.id, p.version, p.deleted, coalesce(v.view_count, 0) FROM properties p"
        " LEFT JOIN property_views v ON v.property_id = p.id WHERE p.id LIKE %s",
        (f"{prefix}%",),
    )
    rows = await cursor.fetchall()
    assert sorted(r[0] for r in rows) == sorted(ids)
    assert {(r[1], r[2]) for r in rows} == {(1, False)}
    assert {r[0]: r[3] for r in rows if r[3]} == dict(expected_views)
    cursor = await pg.execute("SELECT sum(views) FROM property_views_daily WHERE property_id LIKE %s", (f"{prefix}%",))
    assert (await cursor.fetchone())[0] == TOTAL
    cursor = await pg.execute(
        "SELECT user_id, property_count FROM user_property_counts WHERE user_id LIKE %s", (f"user-{chaos}-%",)
    )
    assert dict(await cursor.fetchall()) == {f"user-{chaos}-{n}": TOTAL // OWNERS for n in range(OWNERS)}

    # Redis: every document at version 1 with its exact view count; the recent list holds them all.
    cache = redis.from_url(settings.redis_url)
    try:
        documents = [orjson.loads(raw) for raw in await cache.mget([f"property:{pid}" for pid in ids])]
        assert {d["version"] for d in documents} == {1}
        assert {d["id"]: d["viewCount"] for d in documents if d["viewCount"]} == dict(expected_views)
        counts = [await cache.hget(f"property:{pid}:views", "count") for pid in expected_views]
        assert sum(int(c) for c in counts) == TOTAL
        scores = [await cache.zscore("properties:recent", pid) for pid in ids]
        assert None not in scores
    finally:
        await cache.aclose()

    # OpenSearch: exactly the 1,000 documents, each once.
    async with httpx.AsyncClient(base_url=settings.opensearch_url, timeout=30) as search:
        body = {"query": {"prefix": {"id": prefix}}}
        found = (await search.post("/properties/_count", json=body)).json()["count"]
        assert found == TOTAL
        owners = {
            "size": 0,
            "query": {"prefix": {"id": prefix}},
            "aggs": {"owners": {"terms": {"field": "ownerId", "size": 100}}},
        }
        buckets = (await search.post("/properties/_search", json=owners)).json()["aggregations"]["owners"]["buckets"]
        assert {b["key"]: b["doc_count"] for b in buckets} == {o: TOTAL // OWNERS for o in set(owner_of.values())}
