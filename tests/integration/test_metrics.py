"""Metrics an operator scrapes while traffic flows: a service's requests and read-model staleness, a stream
worker's consumer lag and last-event age; the lag rises while the worker is stopped and falls back to 0
once it runs again.

The worker is the property search projection under a group of its own, writing into an alias of its own,
so its checkpoint (`properties-opensearch@<alias>`) is this test's alone; the search service is pointed at
that alias, so its `/status` and `/metrics` report on exactly that read model.
"""

import shutil
import uuid

import httpx
import pytest
from aiokafka.partitioner import DefaultPartitioner
from prometheus_client.parser import text_string_to_metric_families

from api.services import by_name
from config.settings import PROJECT_ROOT
from ops.search_index import BODIES, create_index, new_index_name
from schemas.topics import PROPERTIES
from tests.support.processes import WorkerProcess
from tests.support.property_projection import created, produce, start_group_at_end
from tests.support.services import ServiceProcess, free_port
from tests.support.waiting import eventually

pytestmark = pytest.mark.stack


def samples(text: str, name: str, **labels: str) -> list[float]:
    return [
        sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
        if sample.name == name and all(sample.labels.get(k) == v for k, v in labels.items())
    ]


def one_id_per_partition(run: str) -> list[str]:
    """Property ids whose keys land on each partition of `properties` once, so every partition has a
    checkpoint of the test's read model (a partition never applied counts whole in its lag)."""
    partitioner, every = DefaultPartitioner(), list(range(PROPERTIES.partitions))
    chosen: dict[int, str] = {}
    n = 0
    while len(chosen) < PROPERTIES.partitions:
        candidate = f"prop-{run}-{n}"
        chosen.setdefault(partitioner(candidate.encode(), every, every), candidate)
        n += 1
    return list(chosen.values())


def _make_alias(opensearch_url: str, alias: str) -> None:
    with httpx.Client(base_url=opensearch_url, timeout=30) as client:
        index = new_index_name(alias)
        create_index(client, index, BODIES["properties"]())
        client.post("/_aliases", json={"actions": [{"add": {"index": index, "alias": alias}}]}).raise_for_status()


def _drop_alias(opensearch_url: str, alias: str) -> None:
    with httpx.Client(base_url=opensearch_url, timeout=30) as client:
        client.delete(f"/{alias}-v*")


@pytest.fixture
async def observed(settings, tmp_path, pg):
    run = uuid.uuid4().hex[:10]
    alias, group = f"metrics-test-{run}", f"metrics-test-{run}"
    _make_alias(settings.opensearch_url, alias)
    await start_group_at_end(settings.kafka_bootstrap, group, (PROPERTIES.name,))
    env = {"HI_OPENSEARCH_PROPERTIES_ALIAS": alias}
    worker_port = free_port()
    worker = WorkerProcess(
        "streams.properties.search_worker",
        {
            **env,
            "HI_PROPERTY_SEARCH_PROJECTION_GROUP": group,
            "HI_METRICS_PORT": str(worker_port),
            "HI_METRICS_INTERVAL_SECONDS": "0.5",
        },
        tmp_path / "worker.log",
    )
    service = ServiceProcess(by_name("search"), tmp_path / "search.log", env)
    worker.start()
    try:
        await service.start()
        yield run, group, f"properties-opensearch@{alias}", worker, f"http://127.0.0.1:{worker_port}", service
    finally:
        service.stop()
        worker.stop()
        _drop_alias(settings.opensearch_url, alias)
        await pg.execute(
            "DELETE FROM projection_checkpoints WHERE projection = %s", (f"properties-opensearch@{alias}",)
        )
        await pg.commit()
        shutil.rmtree(PROJECT_ROOT / f"{group}-data", ignore_errors=True)


async def test_scraped_metrics_show_requests_lag_and_staleness_and_the_lag_of_a_stopped_worker(observed, producer):
    run, group, read_model, worker, worker_url, service = observed
    owner = f"user-{run}"
    ids = one_id_per_partition(run)
    await produce(producer, *(created(property_id, owner, run, n) for n, property_id in enumerate(ids)))

    async with httpx.AsyncClient(timeout=10) as client:

        async def scrape(url: str) -> str:
            try:
                answer = await client.get(f"{url}/metrics")
            except httpx.TransportError:
                return ""  # a worker binds its port once it has started
            assert answer.status_code == 200, answer.text
            return answer.text

        async def status_lag() -> int | None:
            answer = await client.get(f"{service.url}/status")
            assert answer.status_code == 200, answer.text
            models = {m["readModel"]: m for m in answer.json()["data"]["readModels"]}
            return models[read_model]["lag"]

        def worker_lag(text: str) -> float | None:
            lags = samples(text, "hi_consumer_lag", group=group, topic=PROPERTIES.name)
            return sum(lags) if len(lags) == PROPERTIES.partitions else None

        # Traffic while the worker applies: searches answered by the service.
        for _ in range(5):
            answer = await client.get(f"{service.url}/api/search/properties", params={"q": "Gachibowli"})
            assert answer.status_code == 200, answer.text

        # The worker caught up: its group's lag is 0 on every partition, its last event is recent.
        text = await eventually(lambda: scrape(worker_url), lambda t: worker_lag(t) == 0, within=90, every=0.5)
        assert samples(text, "hi_consumer_committed_offset", group=group, topic=PROPERTIES.name)
        [age] = samples(text, "hi_projection_last_event_age_seconds", projection="property-search-projection")
        assert 0 <= age < 300

        # The service: requests by route template, and the read model it serves caught up with a recent event.
        text = await eventually(
            lambda: scrape(service.url),
            lambda t: samples(t, "hi_read_model_lag", read_model=read_model) == [0.0],
            within=60,
            every=0.5,
        )
        [searches] = samples(text, "hi_http_requests_total", route="/api/search/properties", method="GET", status="200")
        assert searches >= 5
        [count] = samples(text, "hi_http_request_duration_seconds_count", route="/api/search/properties", method="GET")
        assert count >= 5
        [staleness] = samples(text, "hi_read_model_last_event_age_seconds", read_model=read_model)
        assert 0 <= staleness < 300
        # Other tests' listings flow on the same topic: the lag is 0 between their batches.
        await eventually(status_lag, lambda lag: lag == 0, within=60, every=0.5)

        # Stopped, the worker applies nothing: what is produced meanwhile shows as lag.
        worker.stop()
        await produce(producer, *(created(f"prop-{run}-late-{n}", owner, run, n) for n in range(5)))
        await eventually(status_lag, lambda lag: lag is not None and lag >= 5, within=30, every=0.5)

        # Started again, it catches up: the lag falls back to 0, in the service and in the worker.
        worker.start()
        await eventually(status_lag, lambda lag: lag == 0, within=90, every=0.5)
        await eventually(lambda: scrape(worker_url), lambda t: worker_lag(t) == 0, within=60, every=0.5)
