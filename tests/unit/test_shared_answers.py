"""Anonymous answers shared for a moment (api/common/shared_answers.py): which requests share, for how
long, what is never kept, and that identical requests arriving together are computed once."""

import asyncio

import httpx
import pytest
from starlette.responses import JSONResponse

from api.common.shared_answers import SharedAnswers

SEARCH = "/api/search/properties"


class Route:
    """The app behind: answers a count of the times it was asked, with the status it is told to give."""

    def __init__(self) -> None:
        self.calls = 0
        self.status = 200
        self.gate: asyncio.Event | None = None
        self.entered = asyncio.Event()

    async def __call__(self, scope, receive, send):
        self.calls += 1
        self.entered.set()
        if self.gate is not None:
            await self.gate.wait()
        scope["route"] = "the search route"
        await JSONResponse({"calls": self.calls}, status_code=self.status)(scope, receive, send)


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def route():
    return Route()


@pytest.fixture
def clock():
    return Clock()


@pytest.fixture
async def client(route, clock):
    shared = SharedAnswers(route, paths=[SEARCH], seconds=1.0, clock=clock)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(shared), base_url="http://test") as client:
        yield client


async def calls(client, path=SEARCH, **options) -> int:
    answer = await client.get(path, **options)
    return answer.json()["calls"]


async def test_an_anonymous_answer_is_shared_until_it_is_older_than_the_setting(client, clock):
    assert await calls(client, params={"q": "gachibowli"}) == 1
    clock.now += 0.9
    assert await calls(client, params={"q": "gachibowli"}) == 1
    clock.now += 0.2
    assert await calls(client, params={"q": "gachibowli"}) == 2


async def test_each_query_string_has_its_own_answer(client):
    assert await calls(client, params={"q": "gachibowli"}) == 1
    assert await calls(client, params={"q": "kondapur"}) == 2
    assert await calls(client, params={"q": "gachibowli", "limit": "5"}) == 3
    assert await calls(client, params={"q": "kondapur"}) == 2


@pytest.mark.parametrize(
    "headers",
    [{"Authorization": "Bearer x"}, {"X-User-Id": "user-1"}, {"X-Consistency-Token": "properties:0:1"}],
)
async def test_a_caller_or_a_consistency_token_always_reaches_the_route(client, headers):
    assert await calls(client) == 1
    assert await calls(client, headers=headers) == 2
    assert await calls(client, headers=headers) == 3
    assert await calls(client) == 1  # and the anonymous answer stays as it was


async def test_other_paths_and_methods_are_never_shared(client, route):
    assert await calls(client, "/api/search/history/user-1") == 1
    assert await calls(client, "/api/search/history/user-1") == 2
    await client.post(SEARCH)
    await client.post(SEARCH)
    assert route.calls == 4


@pytest.mark.parametrize("status", [422, 503])
async def test_an_error_is_never_shared(client, route, status):
    route.status = status
    await client.get(SEARCH)
    route.status = 200
    assert await calls(client) == 2


async def test_a_shared_answer_carries_the_route_s_headers_and_is_counted_under_its_route(route, clock):
    seen = []
    shared = SharedAnswers(route, paths=[SEARCH], seconds=1.0, clock=clock)

    async def app(scope, receive, send):
        async def with_id(message):
            if message["type"] == "http.response.start":
                message["headers"] = [*message["headers"], (b"x-correlation-id", f"corr-{len(seen)}".encode())]
            await send(message)

        await shared(scope, receive, with_id)
        seen.append(scope.get("route"))

    async with httpx.AsyncClient(transport=httpx.ASGITransport(app), base_url="http://test") as client:
        first, second = await client.get(SEARCH), await client.get(SEARCH)
    assert first.json() == second.json() == {"calls": 1}
    assert second.headers["content-type"] == "application/json"
    # Each answer has its own correlation id, never the first one's as well.
    assert first.headers.get_list("x-correlation-id") == ["corr-0"]
    assert second.headers.get_list("x-correlation-id") == ["corr-1"]
    assert seen == ["the search route", "the search route"]


async def test_identical_requests_arriving_together_are_computed_once(client, route):
    route.gate = asyncio.Event()
    waiting = [asyncio.create_task(calls(client, params={"q": "kokapet"})) for _ in range(5)]
    await route.entered.wait()
    for _ in range(20):  # let the other four arrive and wait
        await asyncio.sleep(0)
    route.gate.set()
    assert await asyncio.gather(*waiting) == [1, 1, 1, 1, 1]
    assert route.calls == 1


async def test_requests_waiting_on_an_error_each_ask_the_route(client, route):
    route.gate = asyncio.Event()
    route.status = 503
    waiting = [asyncio.create_task(client.get(SEARCH)) for _ in range(3)]
    await route.entered.wait()
    for _ in range(20):  # let the other two arrive and wait
        await asyncio.sleep(0)
    route.gate.set()
    answers = await asyncio.gather(*waiting)
    assert [a.status_code for a in answers] == [503, 503, 503]
    assert route.calls == 3


async def test_zero_seconds_shares_nothing(route):
    shared = SharedAnswers(route, paths=[SEARCH], seconds=0)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(shared), base_url="http://test") as client:
        assert [await calls(client), await calls(client)] == [1, 2]
