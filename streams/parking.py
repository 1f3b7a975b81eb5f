"""Dead letters that keep order per key.

Once a consumer dead-letters an event, the later events of the same key would otherwise be applied
out of order (an update over a listing that never got the update before it). So a consumer that parks
(`KeyOrder`) holds them back instead: it writes them, and the dead one, to Postgres `parked_events`
in the order it read them and goes on with every other key. `python -m ops.dead_letters redrive`
marks a key's rows and notifies the consumer (Postgres NOTIFY, see `KeyOrder.watch`), which runs the rows through the
same code as a batch from Kafka, deletes the ones it applied and leaves the rest parked behind the
first that fails again. The consumer stays the only writer of its stores, and its sinks, idempotent
and version-guarded, make a row applied twice (a kill between applying and deleting) harmless.

Parkings are committed before the batch returns, so before the runner commits the batch's offsets: a kill before
that redelivers the batch, which parks the same events again onto the same primary keys (the source
positions), never twice and never lost. Events of the key read before the dead one flow as usual.
"""

import asyncio
import logging
from collections.abc import Awaitable, Callable, Collection, Sequence
from dataclasses import dataclass, replace
from typing import Any, Protocol, TypeVar

import psycopg
from psycopg import sql
from psycopg_pool import AsyncConnectionPool

from schemas.topics import REDRIVE_CHANNEL
from streams.batches import MAX_BACKOFF_SECONDS, TRANSIENT, until_done
from streams.dead_letters import DeadLetter, or_dead_letter
from streams.positions import RawRecord, SourcePosition

log = logging.getLogger("streams.parking")

# Without a notification a worker still looks for redrive marks this often: marks made by hand in SQL,
# or on partitions it was given by a rebalance after the notification went by.
REDRIVE_CHECK_SECONDS = 60.0


def key_text(key: bytes | None) -> str:
    return "" if key is None else key.decode(errors="replace")


@dataclass(frozen=True)
class Parked:
    record: RawRecord
    dead: bool
    reason: str

    @property
    def key(self) -> str:
        return key_text(self.record.key)


def behind(head: SourcePosition) -> str:
    return f"parked behind {head.topic}[{head.partition}]@{head.offset}"


class BatchOrder:
    """What one batch (or one redrive) decided per key; pure. `heads` are the keys already blocked
    (the position of the first parked event of each), from `parked_events`."""

    def __init__(self, heads: dict[str, SourcePosition] | None = None) -> None:
        self._heads = dict(heads or {})
        self._parked: dict[SourcePosition, Parked] = {}

    def dead(self, letter: DeadLetter) -> None:
        """The letter's key is blocked from it on; a letter always wins over an earlier 'held'."""
        record = RawRecord(letter.key, letter.value, letter.position)
        self._parked[letter.position] = Parked(record, True, letter.error)
        key = key_text(letter.key)
        head = self._heads.get(key)
        if head is None or _before(letter.position, head):
            self._heads[key] = letter.position

    def holds(self, record: RawRecord) -> bool:
        """True (and the record is noted as parked) when its key is blocked by an event read before it.
        An event of the key on the same partition before the head came first, so it flows; the head
        itself is the dead one, it is not held behind itself."""
        head = self._heads.get(key_text(record.key))
        if head is None or record.position == head or _before(record.position, head):
            return False
        if record.position not in self._parked:
            self._parked[record.position] = Parked(record, False, behind(head))
        return True

    def flowing(self, records: Sequence[RawRecord]) -> list[RawRecord]:
        return [record for record in records if not self.holds(record)]

    def parked(self, order: Sequence[RawRecord]) -> list[Parked]:
        """Everything parked, in the order the records came (so `seq` keeps the reading order)."""
        index = {record.position: n for n, record in enumerate(order)}
        return sorted(self._parked.values(), key=lambda p: index.get(p.record.position, len(index)))

    @property
    def blocked(self) -> bool:
        return bool(self._parked)


def _before(position: SourcePosition, head: SourcePosition) -> bool:
    """Only the same partition orders events; a key's event elsewhere is held, to be safe."""
    return (position.topic, position.partition) == (head.topic, head.partition) and position.offset < head.offset


class Plan(Protocol):
    @property
    def dead_letters(self) -> Sequence[DeadLetter]: ...

    @property
    def positions(self) -> Sequence[SourcePosition]: ...


P = TypeVar("P", bound=Plan)


def plan_in_key_order(
    order: BatchOrder, records: Sequence[RawRecord], planner: Callable[[Sequence[RawRecord]], P]
) -> P:
    """Plan what is not held; when an event the planner cannot read has later events of its key in the
    batch, plan again without them (only then: a batch without poison is planned once). The plan keeps
    every record's position, so checkpoints pass the parked events too: they are handled."""
    flowing = order.flowing(records)
    plan = planner(flowing)
    if plan.dead_letters:
        for letter in plan.dead_letters:
            order.dead(letter)
        still = order.flowing(flowing)
        if len(still) < len(flowing):
            plan = planner(still)
    return replace(plan, positions=[record.position for record in records])


# ---- Postgres ----

_HEADS = """
SELECT DISTINCT ON (key) key, topic, partition, "offset" FROM parked_events
WHERE consumer = %s AND key = ANY(%s)
ORDER BY key, seq
"""

_PARK = """
INSERT INTO parked_events (consumer, key, topic, partition, "offset", record_key, payload, dead, reason)
VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s)
ON CONFLICT (consumer, topic, partition, "offset") DO NOTHING
"""

_REQUESTED = """
SELECT DISTINCT key, topic, partition FROM parked_events
WHERE consumer = %s AND redrive_requested_at IS NOT NULL
"""

_ROWS = """
SELECT record_key, payload, topic, partition, "offset" FROM parked_events
WHERE consumer = %s AND key = %s
ORDER BY seq
"""

_RELEASE = 'DELETE FROM parked_events WHERE consumer = %s AND topic = %s AND partition = %s AND "offset" = %s'

_STILL_PARKED = """
UPDATE parked_events SET dead = %s, reason = %s, redrive_requested_at = NULL
WHERE consumer = %s AND topic = %s AND partition = %s AND "offset" = %s
"""


class ParkingLot:
    """One consumer's rows of `parked_events`."""

    def __init__(self, pool: AsyncConnectionPool, consumer: str) -> None:
        self._pool = pool
        self.consumer = consumer

    async def heads(self, keys: Collection[str]) -> dict[str, SourcePosition]:
        async with self._pool.connection() as conn:
            cursor = await conn.execute(_HEADS, (self.consumer, sorted(keys)))
            return {key: SourcePosition(t, p, o) for key, t, p, o in await cursor.fetchall()}

    async def park(self, parked: Sequence[Parked]) -> None:
        if not parked:
            return
        async with self._pool.connection() as conn, conn.transaction(), conn.cursor() as cursor:
            await cursor.executemany(_PARK, [self._row(p) for p in parked])

    def _row(self, p: Parked) -> tuple[Any, ...]:
        where = p.record.position
        record = p.record
        return (
            self.consumer,
            p.key,
            where.topic,
            where.partition,
            where.offset,
            record.key,
            record.value,
            p.dead,
            p.reason,
        )

    async def listen(self) -> psycopg.AsyncConnection[Any]:
        """A connection of its own (the pool's are for batches), listening for redrives of any consumer."""
        conn = await psycopg.AsyncConnection.connect(self._pool.conninfo, autocommit=True, **(self._pool.kwargs or {}))
        await conn.execute(sql.SQL("LISTEN {}").format(sql.Identifier(REDRIVE_CHANNEL)))
        return conn

    async def requested(self, assigned: Collection[tuple[str, int]] | None) -> list[str]:
        """Keys a redrive was asked for, on partitions this worker reads (`None`: all of them)."""
        async with self._pool.connection() as conn:
            rows = await (await conn.execute(_REQUESTED, (self.consumer,))).fetchall()
        return sorted({key for key, topic, partition in rows if assigned is None or (topic, partition) in assigned})

    async def rows(self, key: str) -> list[RawRecord]:
        async with self._pool.connection() as conn:
            rows = await (await conn.execute(_ROWS, (self.consumer, key))).fetchall()
        return [RawRecord(k, v, SourcePosition(t, p, o)) for k, v, t, p, o in rows]

    async def settle(self, redriven: Sequence[RawRecord], still: Sequence[Parked]) -> None:
        """After a redrive, in one transaction: the applied rows go, the others say why they wait now."""
        kept = {p.record.position: p for p in still}
        async with self._pool.connection() as conn, conn.transaction(), conn.cursor() as cursor:
            gone = [r.position for r in redriven if r.position not in kept]
            if gone:
                await cursor.executemany(_RELEASE, [(self.consumer, w.topic, w.partition, w.offset) for w in gone])
            if kept:
                await cursor.executemany(
                    _STILL_PARKED,
                    [(p.dead, p.reason, self.consumer, w.topic, w.partition, w.offset) for w, p in kept.items()],
                )


Publish = Callable[[Sequence[DeadLetter]], Awaitable[None]]
Work = Callable[[Sequence[RawRecord]], Awaitable[None]]


class KeyOrder:
    """A consumer's batches and redrives, one at a time, in order per key. The runner hands each batch
    to `run` (`streams.runner.Context.in_key_order`, which runs `watch` beside it); the projector plans
    through `plan`, dead-letters through `dead_letters` and asks `holds` before applying an event one
    by one, so a key blocked mid-batch is blocked for the rest of it."""

    def __init__(self, lot: ParkingLot, publish: Publish, dead_letter_consumer: str) -> None:
        self._lot = lot
        self._publish = publish
        self._dead_letter_consumer = dead_letter_consumer
        self._lock = asyncio.Lock()
        self._order: BatchOrder | None = None

    async def run(self, records: Sequence[RawRecord], work: Work) -> None:
        async with self._lock:
            # Asked for every batch (one indexed query): after a rebalance another worker of the group
            # may have parked keys this one now reads.
            keys = {key_text(r.key) for r in records}
            heads = await until_done("parked events", lambda: self._lot.heads(keys))
            order = await self._through(records, BatchOrder(heads), work)
            if order.blocked:
                await until_done("parked events", lambda: self._lot.park(order.parked(records)))

    async def _through(self, records: Sequence[RawRecord], order: BatchOrder, work: Work) -> BatchOrder:
        self._order = order
        try:
            await or_dead_letter(None, self._dead_letter_consumer, records, work, publish=self.dead_letters)
        finally:
            self._order = None
        return order

    def _current(self) -> BatchOrder:
        """Only inside `run` or `redrive`: what is held elsewhere would never be parked."""
        if self._order is None:
            raise RuntimeError(f"{self._lot.consumer}: a batch planned outside KeyOrder.run")
        return self._order

    def plan(self, records: Sequence[RawRecord], planner: Callable[[Sequence[RawRecord]], P]) -> P:
        return plan_in_key_order(self._current(), records, planner)

    def holds(self, record: RawRecord) -> bool:
        return self._current().holds(record)

    async def dead_letters(self, letters: Sequence[DeadLetter]) -> None:
        order = self._current()
        for letter in letters:
            order.dead(letter)
        await self._publish(letters)

    async def redrive(self, assigned: Collection[tuple[str, int]] | None, work: Work) -> int:
        """Apply the parked rows of every key a redrive was asked for; answers how many were applied."""
        applied = 0
        async with self._lock:
            for key in await until_done("parked events", lambda: self._lot.requested(assigned)):
                records = await until_done("parked events", lambda k=key: self._lot.rows(k))
                order = await self._through(records, BatchOrder(), work)
                still = order.parked(records)
                await until_done("parked events", lambda r=records, s=still: self._lot.settle(r, s))
                applied += len(records) - len(still)
                log.info(
                    "%s: redrove %s, %d applied, %d still parked",
                    self._lot.consumer,
                    key,
                    len(records) - len(still),
                    len(still),
                )
        return applied

    async def watch(self, assigned: Callable[[], Collection[tuple[str, int]] | None], work: Work) -> None:
        """Runs beside the group's consumer for as long as it runs: asleep until a redrive of this consumer is
        notified (or `REDRIVE_CHECK_SECONDS` pass), so a worker with nothing parked asks Postgres nothing.
        Looping on a timer instead cost each parking worker two queries a second, forever."""
        backoff = 0.1
        while True:
            try:
                conn = await self._lot.listen()
            except TRANSIENT as exc:
                log.warning("%s: not listening for redrives (%s); again in %.1fs", self._lot.consumer, exc, backoff)
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, MAX_BACKOFF_SECONDS)
                continue
            backoff = 0.1
            try:
                async with conn:
                    while True:
                        # Also right after (re)connecting: a redrive asked while nobody listened.
                        await self._redrive_logged(assigned(), work)
                        await self._notified(conn)
            except TRANSIENT as exc:
                log.warning("%s: redrive listener lost (%s); listening again", self._lot.consumer, exc)

    async def _notified(self, conn: psycopg.AsyncConnection[Any]) -> None:
        """Until a redrive of this consumer is notified, or the check interval has passed."""
        deadline = asyncio.get_running_loop().time() + REDRIVE_CHECK_SECONDS
        while (left := deadline - asyncio.get_running_loop().time()) > 0:
            async for notice in conn.notifies(timeout=left, stop_after=1):
                if notice.payload == self._lot.consumer:
                    return

    async def _redrive_logged(self, assigned: Collection[tuple[str, int]] | None, work: Work) -> None:
        try:
            await self.redrive(assigned, work)
        except Exception:
            # A bug in one redrive must not stop the next one nor the batches; the rows stay parked.
            log.exception("%s: redrive failed", self._lot.consumer)
