"""The demo-data generator against the real property slice: its listings go through the command path,
come back readable with what was sent, and running it again creates nothing new."""

import pytest

from ops.demo_data import create_demo_listings, create_listings, demo_listing
from schemas.localities import BY_NAME
from tests.support.properties import running_property_slice
from tests.support.waiting import eventually

COUNT = 20


@pytest.fixture(scope="module")
async def api(stack, tmp_path_factory):
    async with running_property_slice(tmp_path_factory.mktemp("demo-data"), stack.as_env()) as slice_:
        async with slice_.client() as client:
            yield client


@pytest.fixture(scope="module")
def seed(run_id) -> int:
    # A seed of its own per run: the listings are new to this run's stores, not replays of an earlier one.
    return int(run_id.removeprefix("run-"), 16)


async def test_listings_are_created_through_the_service_and_read_back(api, seed):
    ids = await create_listings(api, COUNT, seed)
    assert len(set(ids)) == COUNT and all(i.startswith("prop-") for i in ids)

    for index, property_id in enumerate(ids):
        sent = demo_listing(index, seed)
        answer = await eventually(lambda p=property_id: api.get(f"/api/properties/{p}"), lambda r: r.status_code == 200)
        shown = answer.json()["data"]
        assert shown["ownerId"] == sent.owner and sent.owner.startswith("user-demo-")
        assert {field: shown[field] for field in sent.body} == sent.body
        assert shown["location"] in BY_NAME


async def test_running_it_again_creates_nothing_new(api, seed):
    first = await create_listings(api, COUNT, seed)
    again = await create_demo_listings(api, COUNT, seed)
    assert [already for _, already in again] == [True] * COUNT
    assert [property_id for property_id, _ in again] == first
