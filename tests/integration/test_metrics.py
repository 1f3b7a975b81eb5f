"""Metrics an operator scrapes while traffic flows: a service's requests and read-model staleness, a stream
worker's consumer lag and last-event age; the lag rises while the worker is stopped and falls back to 0
once it runs again. And a command left without a decision, a read that gave up waiting for its store.

The worker is the event archive under a group of its own reading a topic of the test's own
(`HI_ARCHIVE_TOPICS`), and the user-history service is pointed at that topic (`HI_HISTORY_TOPICS`), so its
`event-archive` read model covers exactly what the test produces: the shared topics carry every other
test's traffic on this machine, and their lag is never reliably 0.
"""

import shutil
import uuid

import httpx
import pytest
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.partitioner import DefaultPartitioner
from prometheus_client.parser import text_string_to_metric_families

from api.services import by_name
from config.settings import PROJECT_ROOT
from schemas.codec import encode
from schemas.topics import DEFAULT_PARTITIONS, PROPERTY_COMMANDS
from tests.support.archive import archive_worker
from tests.support.properties import SEED_BODY, bearer
from tests.support.property_projection import created
from tests.support.services import ServiceProcess, free_port
from tests.support.waiting import eventually

pytestmark = pytest.mark.stack

ARCHIVE = "event-archive"  # the archive's consumer name and its read model's checkpoint name


def samples(text: str, name: str, **labels: str) -> list[float]:
    return [
        sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
        if sample.name == name and all(sample.labels.get(k) == v for k, v in labels.items())
    ]


def one_key_per_partition(run: str) -> list[str]:
    """Property ids whose keys land on each partition once, so every partition has a checkpoint of the
    read model (a partition it never applied counts whole in its lag)."""
    partitioner, every = DefaultPartitioner(), list(range(DEFAULT_PARTITIONS))
    chosen: dict[int, str] = {}
    n = 0
    while len(chosen) < DEFAULT_PARTITIONS:
        candidate = f"prop-{run}-{n}"
        chosen.setdefault(partitioner(candidate.encode(), every, every), candidate)
        n += 1
    return list(chosen.values())


@pytest.fixture
async def observed(settings, tmp_path, pg):
    run = uuid.uuid4().hex[:10]
    topic = group = f"metrics-test-{run}"
    admin = AIOKafkaAdminClient(bootstrap_servers=settings.kafka_bootstrap)
    await admin.start()
    await admin.create_topics([NewTopic(topic, num_partitions=DEFAULT_PARTITIONS, replication_factor=1)])
    worker_port = free_port()
    metrics = {"HI_METRICS_PORT": str(worker_port), "HI_METRICS_INTERVAL_SECONDS": "0.5"}
    worker = archive_worker(group, tmp_path, HI_ARCHIVE_TOPICS=topic, **metrics)
    service = ServiceProcess(
        by_name("user-history"),
        tmp_path / "user-history.log",
        {"HI_HISTORY_TOPICS": topic, "HI_HISTORY_NAMESPACE": f"mt{run}"},
    )
    worker.start()
    try:
        await service.start()
        yield run, topic, group, worker, f"http://127.0.0.1:{worker_port}", service
    finally:
        service.stop()
        worker.stop()
        await admin.delete_topics([topic])
        await admin.close()
        await pg.execute("DELETE FROM event_store WHERE source_topic = %s", (topic,))
        await pg.execute("DELETE FROM projection_checkpoints WHERE topic = %s", (topic,))
        await pg.commit()
        shutil.rmtree(PROJECT_ROOT / f"{group}-data", ignore_errors=True)


async def test_scraped_metrics_show_requests_lag_and_staleness_and_the_lag_of_a_stopped_worker(observed, producer):
    run, topic, group, worker, worker_url, service = observed
    owner = f"user-{run}"

    async def produce(*property_ids: str) -> None:
        events = [created(property_id, owner, run, n) for n, property_id in enumerate(property_ids)]
        sent = [await producer.send(topic, encode(e), key=e.subject.encode()) for e in events]
        for future in sent:
            await future

    await produce(*one_key_per_partition(run))

    async with httpx.AsyncClient(timeout=10) as client:

        async def scrape(url: str) -> str:
            try:
                answer = await client.get(f"{url}/metrics")
            except httpx.TransportError:
                return ""  # a worker binds its port once it has started
            assert answer.status_code == 200, answer.text
            return answer.text

        async def status_lag() -> int:
            answer = await client.get(f"{service.url}/status")
            assert answer.status_code == 200, answer.text
            models = {m["readModel"]: m for m in answer.json()["data"]["readModels"]}
            assert models[ARCHIVE]["topics"] == [topic]
            return int(models[ARCHIVE]["lag"])

        def worker_lag(text: str) -> float | None:
            lags = samples(text, "hi_consumer_lag", group=group, topic=topic)
            return sum(lags) if len(lags) == DEFAULT_PARTITIONS else None

        # Traffic while the worker applies: a user reading their raw events.
        for _ in range(5):
            answer = await client.get(f"{service.url}/api/user-history/{owner}/events", headers=bearer(owner))
            assert answer.status_code == 200, answer.text

        def caught_up(text: str) -> bool:
            """Lag 0 on every partition, sampled after the events were produced (a sample of the empty topic,
            taken as the worker started, shows lag 0 too)."""
            ends = samples(text, "hi_consumer_log_end_offset", group=group, topic=topic)
            return worker_lag(text) == 0 and len(ends) == DEFAULT_PARTITIONS and all(end >= 1 for end in ends)

        # The worker caught up: its group's lag is 0 on every partition, its last event is recent.
        text = await eventually(lambda: scrape(worker_url), caught_up, within=90, every=0.5)
        assert samples(text, "hi_consumer_committed_offset", group=group, topic=topic, partition="0") == [1.0]
        assert samples(text, "hi_consumer_log_end_offset", group=group, topic=topic, partition="0") == [1.0]
        [age] = samples(text, "hi_projection_last_event_age_seconds", projection=ARCHIVE)
        assert 0 <= age < 300

        # The service: requests by route template; the read model it serves caught up, its last event recent.
        text = await eventually(
            lambda: scrape(service.url),
            lambda t: samples(t, "hi_read_model_lag", read_model=ARCHIVE) == [0.0],
            within=60,
            every=0.5,
        )
        route = "/api/user-history/{user_id}/events"
        assert samples(text, "hi_http_requests_total", route=route, method="GET", status="200") == [5.0]
        assert samples(text, "hi_http_request_duration_seconds_count", route=route, method="GET") == [5.0]
        [staleness] = samples(text, "hi_read_model_last_event_age_seconds", read_model=ARCHIVE)
        assert 0 <= staleness < 300
        assert await status_lag() == 0

        # Stopped, the worker applies nothing: what is produced meanwhile is the lag.
        worker.stop()
        await produce(*(f"prop-{run}-late-{n}" for n in range(5)))
        await eventually(status_lag, lambda lag: lag == 5, within=30, every=0.5)

        # Started again, it catches up: the lag falls back to 0, in the service and in the worker.
        worker.start()
        await eventually(status_lag, lambda lag: lag == 0, within=90, every=0.5)
        await eventually(lambda: scrape(worker_url), lambda t: worker_lag(t) == 0, within=60, every=0.5)


async def test_a_command_without_a_decision_and_a_read_that_gave_up_waiting_are_counted(tmp_path):
    """The service waits a millisecond for its decider (none answers that fast, whatever deciders run on the
    machine), so a create is answered 503; a read waits for an offset no store will reach, so it is
    answered stale after its 0.5 s bound."""
    env = {"HI_COMMAND_WAIT_SECONDS": "0.001", "HI_CONSISTENCY_WAIT_SECONDS": "0.5"}
    service = ServiceProcess(by_name("property"), tmp_path / "property.log", env)
    await service.start()
    run = uuid.uuid4().hex[:8]
    user = f"user-metrics{run}"
    try:
        async with httpx.AsyncClient(base_url=service.url, timeout=10) as client:
            answer = await client.post("/api/properties", json=SEED_BODY, headers=bearer(user))
            assert answer.status_code == 503, answer.text
            never = {"X-Consistency-Token": f"properties:0:{10**15}"}
            answer = await client.get(f"/api/properties/prop-metrics{run}", headers=never)
            assert answer.status_code == 404, answer.text
            text = (await client.get("/metrics")).text
    finally:
        service.stop()
    assert samples(text, "hi_command_outcomes_total", topic=PROPERTY_COMMANDS.name, outcome="no_decision") == [1.0]
    assert samples(text, "hi_command_decision_wait_seconds_count", outcome="no_decision") == [1.0]
    assert samples(text, "hi_http_requests_total", route="/api/properties", method="POST", status="503") == [1.0]
    waits = {
        projection: samples(text, "hi_consistency_waits_total", projection=projection, result="timed_out")
        for projection in ("properties-redis", "properties-postgres")
    }
    assert [1.0] in waits.values(), waits
    assert samples(text, "hi_consistency_waits_total", result="applied") == []
