"""The fast lane's pipelined GETs (api/common/redis_gets.py) against the real Redis: each caller gets
its own key's value however many share a write, a lost connection is connected again, and a peer that
does not answer or hangs up is the errors the services answer 503 for."""

import asyncio
import uuid

import pytest
from redis.asyncio import Redis
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

from api.common.redis_gets import RedisGets


@pytest.fixture
async def keys(stack):
    run = uuid.uuid4().hex[:10]
    written = {f"test-redis-gets:{run}:{n}": f"value {n} " * (n % 7) + "é" for n in range(300)}
    async with Redis.from_url(stack.redis_url) as redis:
        await redis.mset({key: value.encode() for key, value in written.items()})
        yield written
        await redis.delete(*written)


async def test_concurrent_gets_each_get_their_own_value(stack, keys):
    gets = RedisGets.for_url(stack.redis_url, timeout=5)
    assert gets is not None
    try:
        names = [*keys, "test-redis-gets:missing"]
        values = await asyncio.gather(*(gets.get(name) for name in names * 3))
        expected = [keys[name].encode() if name in keys else None for name in names] * 3
        assert values == expected
    finally:
        await gets.aclose()


async def test_a_lost_connection_is_connected_again(stack, keys):
    gets = RedisGets.for_url(stack.redis_url, timeout=5)
    assert gets is not None
    key = next(iter(keys))
    try:
        assert await gets.get(key) == keys[key].encode()
        assert gets._connection is not None and gets._connection.transport is not None
        gets._connection.transport.abort()
        await asyncio.sleep(0)  # the loop tells the protocol its connection is gone
        assert await gets.get(key) == keys[key].encode()
    finally:
        await gets.aclose()


async def test_a_silent_peer_times_out_and_a_closing_one_is_a_connection_error():
    async def silent(reader, writer):
        await reader.read(1 << 16)
        await asyncio.sleep(30)

    async def hangs_up(reader, writer):
        await reader.read(1 << 16)
        writer.close()

    for handler, error in ((silent, RedisTimeoutError), (hangs_up, RedisConnectionError)):
        server = await asyncio.start_server(handler, "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        gets = RedisGets.for_url(f"redis://127.0.0.1:{port}/0", timeout=0.3)
        assert gets is not None
        try:
            with pytest.raises(error):
                await gets.get("anything")
        finally:
            await gets.aclose()
            server.close()


async def test_nothing_listening_is_a_connection_error():
    server = await asyncio.start_server(lambda r, w: None, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    server.close()
    await server.wait_closed()
    gets = RedisGets.for_url(f"redis://127.0.0.1:{port}/0", timeout=1)
    assert gets is not None
    with pytest.raises(RedisConnectionError):
        await gets.get("anything")


def test_only_plain_tcp_urls_are_taken():
    assert RedisGets.for_url("rediss://127.0.0.1:6380/0", 1) is None
    assert RedisGets.for_url("unix:///tmp/redis.sock", 1) is None
    taken = RedisGets.for_url("redis://:s%40cret@127.0.0.1:6380/2", 1)
    assert taken is not None and (taken.port, taken.db) == (6380, 2)
