"""What every stream worker shares: batches of Faust events that cost nothing while none arrive, a
Faust event as a `RawRecord`, and waiting out a store.

A store being away is not the events' fault: the batch waits for it (backoff 0.1 s doubling to 5 s,
the partition stays put) instead of being acked half-applied or dead-lettered.
"""

import asyncio
import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from typing import Any, Protocol, TypeVar

import faust
import httpx
import psycopg
import redis.exceptions
from mode.utils.aiter import aiter
from mode.utils.futures import notify
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


async def until_done(
    what: str, attempt: Callable[[], Awaitable[T]], transient: tuple[type[BaseException], ...] = TRANSIENT
) -> T:
    """`attempt()` again (0.1 s doubling to 5 s) for as long as it fails for a reason in `transient`."""
    backoff = 0.1
    while True:
        try:
            return await attempt()
        except transient as exc:
            log.warning("%s: unavailable (%s: %s); retrying in %.1fs", what, type(exc).__name__, exc, backoff)
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


async def take_batches(stream: faust.StreamT[Any], max_: int, within: float) -> AsyncIterator[list[faust.EventT[Any]]]:
    """Batches of up to `max_` events, each yielded `within` seconds after its first event arrived (or
    at once when full); the events are acked once the loop body that took them returns.

    Faust's `take_events` does the same on a timer that fires every `within` whether or not anything
    arrived: a decider at 3 ms woke 333 times a second, a projection at 20 ms 50 times, about 2 % of a
    core each doing nothing. Here the loop sleeps until an event comes. The buffering is Faust's own
    (a stream processor fills the batch and waits while one is being handled), only the wait differs."""
    loop = asyncio.get_running_loop()
    events: list[faust.EventT[Any]] = []
    arrived, full, consumed = asyncio.Event(), asyncio.Event(), asyncio.Event()
    consuming: asyncio.Future[None] | None = None
    channel = aiter(stream.channel)
    real = stream  # the Stream class: its processors and passive drainer are not on StreamT

    async def add_to_buffer(value: Any) -> Any:
        nonlocal consuming
        if consuming is not None:
            try:
                await consuming
            finally:
                consuming = None
        event = stream.current_event
        if event is None:
            raise RuntimeError("a batched stream's value without its event")
        events.append(event)
        arrived.set()
        if len(events) >= max_:
            # Never more than max_: the processor waits until the batch has been handled.
            full.set()
            consumed.clear()
            await real.wait(consumed)
        return value

    acks = stream.enable_acks
    stream.enable_acks = False  # acked here, after the batch's body, not as Faust hands each one over
    stream.add_processor(add_to_buffer)
    real._enable_passive(channel)
    try:
        while not stream.should_stop:
            await real.wait_for_stopped(arrived)
            await real.wait_for_stopped(full, timeout=within)
            if not events:
                continue
            consuming = loop.create_future()
            try:
                yield list(events)
            finally:
                batch = list(events)
                events.clear()
                for event in batch:
                    await stream.ack(event)
                arrived.clear()
                full.clear()
                notify(consuming)
                consumed.set()
    finally:
        stream.enable_acks = acks
        real._processors.remove(add_to_buffer)
