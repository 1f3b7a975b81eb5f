"""Kill the projection host (`python -m streams.host`, several consumer groups in one process) with SIGKILL
twice while 600 listings (12 owners) arrive: every group it hosts is cut mid-batch at once, and still the
property read model's Postgres rows and Redis documents (group `property-projection`) and the OpenSearch
documents (group `property-search-projection`) each converge to exactly those 600 listings, every owner's
count right; the user projection, hosted beside them with nothing to do, changes nothing."""

import uuid

import httpx
import orjson
import redis.asyncio as redis
from aiokafka.admin import AIOKafkaAdminClient

from schemas.topics import PROPERTIES, PROPERTY_VIEWS, USERS
from tests.support.processes import WorkerProcess
from tests.support.property_projection import checkpoint, created, produce, start_group_at_end
from tests.support.waiting import eventually

TOTAL = 600
OWNERS = 12
WAVES = 3


async def committed(bootstrap: str, group: str, topic: str) -> dict[int, int]:
    """Kafka's view of how far one of the host's groups has got: other projections on the shared stack
    write the same tables and checkpoints, only the group's own offsets are the host's alone."""
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        offsets = await admin.list_consumer_group_offsets(group)
    finally:
        await admin.close()
    return {tp.partition: meta.offset for tp, meta in offsets.items() if tp.topic == topic}


async def test_killing_the_host_of_several_groups_twice_loses_and_duplicates_nothing(
    settings, producer, pg, run_id, tmp_path
):
    chaos = f"{run_id}-hchaos-{uuid.uuid4().hex[:6]}"
    prefix = f"prop-{chaos}-"
    ids = [f"{prefix}{n}" for n in range(TOTAL)]
    owner_of = {pid: f"user-{chaos}-{n % OWNERS}" for n, pid in enumerate(ids)}

    suffix = uuid.uuid4().hex[:8]
    groups = {
        "HI_PROPERTY_PROJECTION_GROUP": f"property-projection-hchaos-{suffix}",
        "HI_PROPERTY_SEARCH_PROJECTION_GROUP": f"property-search-projection-hchaos-{suffix}",
        "HI_USER_PROJECTION_GROUP": f"user-projection-hchaos-{suffix}",
    }
    topics = {
        "HI_PROPERTY_PROJECTION_GROUP": (PROPERTIES.name, PROPERTY_VIEWS.name),
        "HI_PROPERTY_SEARCH_PROJECTION_GROUP": (PROPERTIES.name,),
        "HI_USER_PROJECTION_GROUP": (USERS.name,),
    }
    for setting, group in groups.items():
        await start_group_at_end(settings.kafka_bootstrap, group, topics[setting])
    host = WorkerProcess(
        "streams.host",
        groups,
        tmp_path / "projection-host.log",
        args=["property-projection", "property-search-projection", "user-projection"],
    )
    host.start()
    properties_group = groups["HI_PROPERTY_PROJECTION_GROUP"]
    searched_group = groups["HI_PROPERTY_SEARCH_PROJECTION_GROUP"]
    last_sent = {}
    try:
        per_wave = TOTAL // WAVES
        kills = 0
        for wave in range(WAVES):
            wave_ids = ids[wave * per_wave : (wave + 1) * per_wave]
            events = [created(pid, owner_of[pid], chaos, n=i) for i, pid in enumerate(wave_ids)]
            wave_sent = await produce(producer, *events)
            for sent in wave_sent:
                where = (sent.topic, sent.partition)
                last_sent[where] = max(last_sent.get(where, -1), sent.offset)
            if wave in (1, 2):
                # Once the host's group has committed some of this wave: every hosted group is killed
                # between batches or in one. (Counted by offsets: others' tests produce to `properties` too.)

                async def progress(wave_sent=wave_sent) -> int:
                    at = await committed(settings.kafka_bootstrap, properties_group, PROPERTIES.name)
                    return sum(1 for sent in wave_sent if sent.offset < at.get(sent.partition, -1))

                await eventually(progress, until=lambda done: done > 0, within=120)
                host.kill()
                host.start()
                kills += 1
        assert kills == 2
        # Each of the host's groups has committed everything the test sent: it did the work, and the
        # stores' checkpoints (which every property projection on the stack raises) passed it too.
        for group in (properties_group, searched_group):

            async def offsets(g=group) -> dict[int, int]:
                return await committed(settings.kafka_bootstrap, g, PROPERTIES.name)

            await eventually(
                offsets, until=lambda got: all(got.get(p, -1) > o for (_, p), o in last_sent.items()), within=180
            )
        for (topic, partition), offset in last_sent.items():
            for store in ("properties-postgres", "properties-redis", "properties-opensearch"):

                async def at(s=store, t=topic, p=partition, o=offset):
                    return await checkpoint(pg, s, _Sent(t, p, o))

                await eventually(at, until=lambda o, m=offset: o >= m, within=180)
    finally:
        host.stop()

    # Postgres: exactly the listings, each once at version 1, and every owner's count.
    cursor = await pg.execute("SELECT id, version, deleted FROM properties WHERE id LIKE %s", (f"{prefix}%",))
    rows = await cursor.fetchall()
    assert sorted(r[0] for r in rows) == sorted(ids)
    assert {(r[1], r[2]) for r in rows} == {(1, False)}
    cursor = await pg.execute(
        "SELECT user_id, property_count FROM user_property_counts WHERE user_id LIKE %s", (f"user-{chaos}-%",)
    )
    assert dict(await cursor.fetchall()) == {f"user-{chaos}-{n}": TOTAL // OWNERS for n in range(OWNERS)}

    # Redis: every document at version 1.
    cache = redis.from_url(settings.redis_url)
    try:
        documents = [orjson.loads(raw) for raw in await cache.mget([f"property:{pid}" for pid in ids])]
        assert {d["version"] for d in documents} == {1}
    finally:
        await cache.aclose()

    # OpenSearch: exactly the 600 documents, each once, by owner.
    async with httpx.AsyncClient(base_url=settings.opensearch_url, timeout=30) as search:
        owners = {
            "size": 0,
            "query": {"prefix": {"id": prefix}},
            "aggs": {"owners": {"terms": {"field": "ownerId", "size": 100}}},
        }
        answer = (await search.post("/properties/_search", json=owners)).json()
        assert answer["hits"]["total"]["value"] == TOTAL
        buckets = answer["aggregations"]["owners"]["buckets"]
        assert {b["key"]: b["doc_count"] for b in buckets} == {o: TOTAL // OWNERS for o in set(owner_of.values())}


class _Sent:
    def __init__(self, topic, partition, offset):
        self.topic, self.partition, self.offset = topic, partition, offset
