"""The fast lane for plain anonymous reads (api/common/fast_reads.py): which requests it answers, and
that everything else reaches the app behind it."""

import httpx
import pytest
import redis.exceptions
from starlette.datastructures import State
from starlette.responses import JSONResponse, PlainTextResponse

from api.common.deps import PROPERTY_ID_PATTERN
from api.common.fast_reads import FastRead, FastReads


async def behind(scope, receive, send):
    await PlainTextResponse("route")(scope, receive, send)


async def answer(state, property_id):
    if property_id == "prop-down":
        raise redis.exceptions.ConnectionError("gone")
    return None if property_id == "prop-missing" else JSONResponse({"id": property_id})


READ = FastRead("/api/properties/{property_id}", PROPERTY_ID_PATTERN, answer)


class App:
    """What the lane reads from the scope: the app's state."""

    def __init__(self) -> None:
        self.state = State()
        self.lane = FastReads(behind, [READ])

    async def __call__(self, scope, receive, send):
        scope["app"] = self
        await self.lane(scope, receive, send)


@pytest.fixture
async def client():
    async with httpx.AsyncClient(transport=httpx.ASGITransport(App()), base_url="http://test") as client:
        yield client


async def test_a_plain_anonymous_get_is_answered_by_the_lane(client):
    assert (await client.get("/api/properties/prop-1")).json() == {"id": "prop-1"}


@pytest.mark.parametrize(
    ("method", "path", "headers"),
    [
        ("GET", "/api/properties/prop-missing", {}),  # the lane has no answer: the route's full rules
        ("GET", "/api/properties/prop-down", {}),  # a store error: the route answers 503 naming it
        ("GET", "/api/properties/prop-1?utm=x", {}),
        ("GET", "/api/properties/prop-1", {"Authorization": "Bearer x"}),
        ("GET", "/api/properties/prop-1", {"X-User-Id": "user-1"}),
        ("GET", "/api/properties/prop-1", {"X-Consistency-Token": "properties:0:1"}),
        ("HEAD", "/api/properties/prop-1", {}),
        ("DELETE", "/api/properties/prop-1", {}),
        ("GET", "/api/properties/prop-1/view", {}),
        ("GET", "/api/properties/featured", {}),
        ("GET", f"/api/properties/prop-{'x' * 65}", {}),  # the parameter's pattern refuses it: FastAPI's 422
    ],
)
async def test_anything_else_reaches_the_route(client, method, path, headers):
    answer = await client.request(method, path, headers=headers)
    assert answer.status_code == 200 and (method == "HEAD" or answer.text == "route")


def test_a_fast_read_names_one_parameter():
    with pytest.raises(ValueError, match="one path parameter"):
        FastRead("/api/properties/{a}/{b}", PROPERTY_ID_PATTERN, answer)
