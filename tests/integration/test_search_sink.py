"""The OpenSearch sink of the listings and the percolator (`write_versioned`): what it wrote is found by
a search the moment it returns (the checkpoint recorded next promises that), and an older or repeated
version changes nothing. Real OpenSearch, an index of the production mapping of its own."""

import uuid
from collections.abc import AsyncIterator

import httpx
import pytest

from ops.search_index import create_index, properties_index_body
from streams.properties.sinks import write_versioned


@pytest.fixture
async def index(settings) -> AsyncIterator[tuple[httpx.AsyncClient, str]]:
    name = f"test-sink-{uuid.uuid4().hex[:12]}"
    with httpx.Client(base_url=settings.opensearch_url, timeout=30) as sync:
        body = properties_index_body()
        # No periodic refresh at all: only the sink's own can make a write searchable here.
        body["settings"]["refresh_interval"] = "-1"
        create_index(sync, name, body)
    async with httpx.AsyncClient(base_url=settings.opensearch_url, timeout=30) as client:
        try:
            yield client, name
        finally:
            await client.delete(f"/{name}")


def listing(property_id: str, title: str, version: int) -> dict[str, object]:
    return {"id": property_id, "title": title, "location": "Gachibowli", "price": 9_000_000, "version": version}


async def found(client: httpx.AsyncClient, index: str, words: str) -> list[str]:
    body = {"query": {"match": {"title": words}}, "_source": ["id"]}
    answer = await client.post(f"/{index}/_search", json=body)
    answer.raise_for_status()
    return sorted(hit["_source"]["id"] for hit in answer.json()["hits"]["hits"])


async def test_a_written_batch_is_searchable_when_the_write_returns(index):
    client, name = index
    ids = [f"prop-{uuid.uuid4().hex}" for _ in range(3)]
    refused = await write_versioned(client, name, [(i, 1, listing(i, "lakeview villa", 1)) for i in ids])
    assert refused == {}
    assert await found(client, name, "lakeview") == sorted(ids)
    await write_versioned(client, name, [(ids[0], 2, None)])  # delisted
    assert await found(client, name, "lakeview") == sorted(ids[1:])


async def test_an_older_or_repeated_version_changes_nothing(index):
    client, name = index
    property_id = f"prop-{uuid.uuid4().hex}"
    await write_versioned(client, name, [(property_id, 3, listing(property_id, "duplex penthouse", 3))])
    refused = await write_versioned(
        client,
        name,
        [(property_id, 2, listing(property_id, "studio flat", 2)), (property_id, 3, listing(property_id, "x", 3))],
    )
    assert refused == {}
    assert await found(client, name, "penthouse") == [property_id]
    assert await found(client, name, "studio") == []
