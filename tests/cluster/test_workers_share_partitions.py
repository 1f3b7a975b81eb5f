"""Two workers of one consumer group split its partitions; a third joins and one leaves while events
arrive (two rebalances). Postgres, Redis and OpenSearch end exactly where one worker reading the same log
would leave them: every listing at its last version and price, every view counted once.

Both property projections run this way at once (Postgres + Redis, and OpenSearch: two groups), on a
three-broker cluster with the topics replicated three times."""

import random
import time
import uuid
from collections import Counter

import httpx
import orjson
import redis.asyncio as redis

from schemas.topics import PROPERTIES, PROPERTY_VIEWS
from tests.support.groups import assignments
from tests.support.projection_kills import LastSent, await_checkpoints, stores_of
from tests.support.property_projection import (
    PROPERTY_PROJECTION,
    PROPERTY_SEARCH_PROJECTION,
    created,
    produce,
    projection_worker,
    search_worker,
    start_group_at_end,
    updated,
    viewed,
)
from tests.support.waiting import eventually

LISTINGS = 600
VIEWS = 1_200
WAVES = 6
EVERY_PARTITION = {(topic.name, p) for topic in (PROPERTIES, PROPERTY_VIEWS) for p in range(topic.partitions)}
SEARCH_PARTITIONS = {(PROPERTIES.name, p) for p in range(PROPERTIES.partitions)}


def split_among(count: int, partitions: set[tuple[str, int]]):
    """The group has `count` members, each with partitions of its own, together all of them once."""

    def holds(members: dict[str, set[tuple[str, int]]]) -> bool:
        owned = [p for parts in members.values() for p in parts]
        return (
            len(members) == count
            and all(members.values())
            and len(owned) == len(set(owned))
            and set(owned) == partitions
        )

    return holds


async def test_workers_of_one_group_share_its_partitions_and_a_rebalance_loses_and_doubles_nothing(
    settings, producer, pg, run_id, tmp_path
):
    tag = f"{run_id}-share-{uuid.uuid4().hex[:6]}"
    prefix = f"prop-{tag}-"
    ids = [f"{prefix}{n}" for n in range(LISTINGS)]
    owner_of = {pid: f"user-{tag}-{n % 10}" for n, pid in enumerate(ids)}
    views = [random.choice(ids) for _ in range(VIEWS)]
    # Half the listings change price afterwards: a worker that replays an old event over a newer one shows.
    price_of = {pid: 5_000_000 + n * 1000 for n, pid in enumerate(ids)}
    changed = set(ids[::2])

    group, search_group = f"property-projection-share-{tag}", f"property-search-projection-share-{tag}"
    await start_group_at_end(settings.kafka_bootstrap, group, (PROPERTIES.name, PROPERTY_VIEWS.name))
    await start_group_at_end(settings.kafka_bootstrap, search_group, (PROPERTIES.name,))

    def projection(n: int):
        return projection_worker(group, tmp_path / f"projection-{n}")

    def searcher(n: int):
        return search_worker(search_group, tmp_path / f"search-{n}")

    for n in range(1, 4):
        (tmp_path / f"projection-{n}").mkdir()
        (tmp_path / f"search-{n}").mkdir()
    running = {"p1": projection(1), "p2": projection(2), "s1": searcher(1), "s2": searcher(2)}
    for worker in running.values():
        worker.start()
    timings: dict[str, float] = {}
    last_sent = LastSent()
    try:
        # Two instances: each has an assignment, together every partition once.
        await eventually(lambda: assignments(settings.kafka_bootstrap, group), split_among(2, EVERY_PARTITION), 180, 1)
        await eventually(
            lambda: assignments(settings.kafka_bootstrap, search_group), split_among(2, SEARCH_PARTITIONS), 180, 1
        )

        per_wave, views_per_wave = LISTINGS // WAVES, VIEWS // WAVES
        for wave in range(WAVES):
            wave_ids = ids[wave * per_wave : (wave + 1) * per_wave]
            events = [created(pid, owner_of[pid], tag, n=ids.index(pid)) for pid in wave_ids]
            events += [
                updated(pid, owner_of[pid], tag, 2, price=price_of[pid] + 1) for pid in wave_ids if pid in changed
            ]
            events += [viewed(pid, tag) for pid in views[wave * views_per_wave : (wave + 1) * views_per_wave]]
            last_sent.add(await produce(producer, *events))
            if wave == 2:
                # A third instance joins each group mid-load: the partitions are split three ways.
                started = time.monotonic()
                running["p3"], running["s3"] = projection(3), searcher(3)
                running["p3"].start()
                running["s3"].start()
                await eventually(
                    lambda: assignments(settings.kafka_bootstrap, group), split_among(3, EVERY_PARTITION), 180, 0.5
                )
                await eventually(
                    lambda: assignments(settings.kafka_bootstrap, search_group),
                    split_among(3, SEARCH_PARTITIONS),
                    180,
                    0.5,
                )
                timings["join"] = time.monotonic() - started
            if wave == 4:
                # And the first leaves (a clean stop: it leaves the group); the other two take its share.
                started = time.monotonic()
                running.pop("p1").stop()
                running.pop("s1").stop()
                await eventually(
                    lambda: assignments(settings.kafka_bootstrap, group), split_among(2, EVERY_PARTITION), 180, 0.5
                )
                await eventually(
                    lambda: assignments(settings.kafka_bootstrap, search_group),
                    split_among(2, SEARCH_PARTITIONS),
                    180,
                    0.5,
                )
                timings["leave"] = time.monotonic() - started

        stores = stores_of([PROPERTY_PROJECTION, PROPERTY_SEARCH_PROJECTION])
        await await_checkpoints(pg, last_sent, stores, within=240)
    finally:
        for worker in running.values():
            worker.stop()
    print(
        f"rebalance: third member joined both groups in {timings['join']:.1f} s, first left in {timings['leave']:.1f} s"
    )

    # What one worker makes of this log: each listing once, at its last version and price; views exact.
    expected = {pid: (2 if pid in changed else 1, price_of[pid] + (1 if pid in changed else 0)) for pid in ids}
    expected_views = Counter(views)

    cursor = await pg.execute(
        "SELECT p.id, p.version, p.price, p.deleted, coalesce(v.view_count, 0) FROM properties p"
        " LEFT JOIN property_views v ON v.property_id = p.id WHERE p.id LIKE %s",
        (f"{prefix}%",),
    )
    rows = await cursor.fetchall()
    assert {r[0]: (r[1], r[2]) for r in rows} == expected
    assert not any(r[3] for r in rows)
    assert {r[0]: r[4] for r in rows if r[4]} == dict(expected_views)
    cursor = await pg.execute("SELECT sum(views) FROM property_views_daily WHERE property_id LIKE %s", (f"{prefix}%",))
    assert (await cursor.fetchone())[0] == VIEWS

    cache = redis.from_url(settings.redis_url)
    try:
        documents = [orjson.loads(raw) for raw in await cache.mget([f"property:{pid}" for pid in ids])]
        assert {d["id"]: (d["version"], d["price"]) for d in documents} == expected
        assert {d["id"]: d["viewCount"] for d in documents if d["viewCount"]} == dict(expected_views)
    finally:
        await cache.aclose()

    async with httpx.AsyncClient(base_url=settings.opensearch_url, timeout=30) as search:
        await search.post("/properties/_refresh")
        body = {"size": LISTINGS + 10, "query": {"prefix": {"id": prefix}}, "_source": ["id", "version", "price"]}
        hits = (await search.post("/properties/_search", json=body)).json()["hits"]["hits"]
        assert len(hits) == LISTINGS
        assert {h["_source"]["id"]: (h["_source"]["version"], h["_source"]["price"]) for h in hits} == expected
