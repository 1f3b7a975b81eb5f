"""What every stream worker shares: a Faust event as a `RawRecord`, and waiting out a store.

A store being away is not the events' fault: the batch waits for it (backoff 0.1 s doubling to 5 s,
the partition stays put) instead of being acked half-applied or dead-lettered.
"""

import asyncio
import logging
from collections.abc import Awaitable, Callable, Sequence
from typing import Protocol, TypeVar

import faust
import httpx
import psycopg
import redis.exceptions
from psycopg_pool import PoolTimeout

from streams.positions import RawRecord, SourcePosition

log = logging.getLogger("streams.batches")

T = TypeVar("T")
C = TypeVar("C", covariant=True)
R = TypeVar("R")


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


class Planned(Protocol[C]):
    """A change a projection planned, with the record it came from."""

    @property
    def change(self) -> C: ...

    @property
    def record(self) -> RawRecord: ...


async def apply_isolating_refusals(
    what: str,
    apply: Callable[[list[C], Sequence[SourcePosition]], Awaitable[list[R]]],
    planned: Sequence[Planned[C]],
    positions: Sequence[SourcePosition],
    dead_letter: Callable[[RawRecord, str], Awaitable[None]],
    holds: Callable[[RawRecord], bool] | None = None,
) -> list[R]:
    """Apply a batch in one transaction (`apply(changes, positions)` answers the rows it wrote). When
    Postgres refuses it for good (not a connection problem: those are waited out), apply its changes one
    by one, dead-letter the ones refused, and record the batch's positions: the refused events count as
    handled, they are on the dead-letter topic now. `holds` (a consumer that parks, `streams.parking`)
    says which later changes wait behind a refused one of their key instead of being applied."""
    try:
        return await until_done("postgres", lambda: apply([p.change for p in planned], positions))
    except psycopg.Error as exc:
        log.warning("%s batch refused (%s: %s); applying its events one by one", what, type(exc).__name__, exc)
    written: list[R] = []
    for one in planned:
        if holds is not None and holds(one.record):
            continue
        try:
            written += await until_done("postgres", lambda p=one: apply([p.change], [p.record.position]))
        except psycopg.Error as refused:
            await dead_letter(one.record, f"postgres refused the event: {refused}")
    written += await until_done("postgres", lambda: apply([], positions))
    return written


def record_of(event: faust.EventT) -> RawRecord:
    message = event.message
    return RawRecord(
        message.key, message.value, SourcePosition(message.topic, message.partition, message.offset), message.timestamp
    )
