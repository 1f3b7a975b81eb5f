"""What every stream worker shares: a Faust event as a `RawRecord`, and waiting out a store.

A store being away is not the events' fault: the batch waits for it (backoff 0.1 s doubling to 5 s,
the partition stays put) instead of being acked half-applied or dead-lettered.
"""

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import TypeVar

import faust
import httpx
import psycopg
import redis.exceptions
from psycopg_pool import PoolTimeout

from streams.positions import RawRecord, SourcePosition

log = logging.getLogger("streams.batches")

T = TypeVar("T")


class StoreUnavailable(Exception):
    """A store refused a whole request for a reason of its own (busy, restarting): try again later."""


TRANSIENT: tuple[type[BaseException], ...] = (
    psycopg.OperationalError,
    PoolTimeout,
    OSError,
    redis.exceptions.ConnectionError,
    redis.exceptions.TimeoutError,
    redis.exceptions.BusyLoadingError,
    httpx.TransportError,
    StoreUnavailable,
)
MAX_BACKOFF_SECONDS = 5.0


async def until_done(what: str, attempt: Callable[[], Awaitable[T]]) -> T:
    backoff = 0.1
    while True:
        try:
            return await attempt()
        except TRANSIENT as exc:
            log.warning("%s: store unavailable (%s: %s); retrying in %.1fs", what, type(exc).__name__, exc, backoff)
            await asyncio.sleep(backoff)
            backoff = min(backoff * 2, MAX_BACKOFF_SECONDS)


def record_of(event: faust.EventT) -> RawRecord:
    message = event.message
    return RawRecord(message.key, message.value, SourcePosition(message.topic, message.partition, message.offset))
