"""Kill both property projection workers (Postgres + Redis, and search, two groups) with SIGKILL twice
while 1,000 listings (20 owners) and 1,000 views arrive: Postgres, Redis and OpenSearch each converge to
exactly those 1,000 listings, the view counts sum to exactly 1,000 everywhere, and every owner's listing
count is right."""

import random
import uuid
from collections import Counter

import httpx
import orjson
import redis.asyncio as redis

from schemas.properties import PROPERTY_VIEWED
from schemas.topics import PROPERTIES, PROPERTY_VIEWS
from tests.support.projection_kills import run_killing
from tests.support.property_projection import PROPERTY_PROJECTION, PROPERTY_SEARCH_PROJECTION, created, viewed

TOTAL = 1_000
OWNERS = 20
WAVES = 5


def routed(event):
    return (PROPERTY_VIEWS.name if event.type == PROPERTY_VIEWED else PROPERTIES.name, event)


async def test_killing_both_projections_twice_loses_and_duplicates_nothing(settings, producer, pg, run_id, tmp_path):
    chaos = f"{run_id}-pchaos-{uuid.uuid4().hex[:6]}"
    prefix = f"prop-{chaos}-"
    ids = [f"{prefix}{n}" for n in range(TOTAL)]
    owner_of = {pid: f"user-{chaos}-{n % OWNERS}" for n, pid in enumerate(ids)}
    viewed_ids = [random.choice(ids) for _ in range(TOTAL)]

    per_wave = TOTAL // WAVES
    waves = []
    for wave in range(WAVES):
        wave_ids = ids[wave * per_wave : (wave + 1) * per_wave]
        events = [created(pid, owner_of[pid], chaos, n=i) for i, pid in enumerate(wave_ids)]
        events += [viewed(pid, chaos) for pid in viewed_ids[wave * per_wave : (wave + 1) * per_wave]]
        waves.append([routed(event) for event in events])
    # Both workers, in a random order and a moment apart, once some of the wave is projected and some is
    # not: each group is cut mid-batch, offsets uncommitted.
    run = await run_killing(
        settings.kafka_bootstrap,
        producer,
        pg,
        [PROPERTY_PROJECTION, PROPERTY_SEARCH_PROJECTION],
        waves,
        {1, 3},
        tmp_path,
    )
    print(f"\nproperty projections: {run.events} events, {run.kills} kills, converged {run.converged_seconds:.1f} s")
    assert run.kills == 2

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
