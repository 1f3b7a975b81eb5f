"""Consumer lag as Kafka sees it, sampled every `HI_METRICS_INTERVAL_SECONDS` for a worker's metrics.

The group's committed offsets (OffsetFetch) against the log ends of its topics' partitions (ListOffsets):
the same numbers Kafka's consumer-groups tool shows, whatever the worker believes it has processed.
"""

import asyncio
import contextlib
import logging
from collections.abc import Callable, Iterable

from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient

from schemas.topics import by_name
from streams.metrics import COMMITTED, LAG, LOG_END

log = logging.getLogger("streams.consumer_lag")


class ConsumerLag:
    """Samples, for each group, its committed offsets against the log ends of its topics."""

    def __init__(self, bootstrap_servers: str, groups: Callable[[], dict[str, Iterable[str]]]) -> None:
        self._bootstrap = bootstrap_servers
        self._groups = groups  # group -> the topics it reads; asked each time (a worker's agents start late)

    async def run(self, every: float) -> None:
        admin = AIOKafkaAdminClient(bootstrap_servers=self._bootstrap)
        ends = AIOKafkaConsumer(bootstrap_servers=self._bootstrap, group_id=None, enable_auto_commit=False)
        started = False
        try:
            while True:
                try:
                    if not started:
                        await admin.start()
                        await ends.start()
                        started = True
                    await self.sample(admin, ends)
                except asyncio.CancelledError:
                    raise
                except Exception as exc:
                    log.warning("consumer lag not sampled (%s: %s); trying again", type(exc).__name__, exc)
                await asyncio.sleep(every)
        finally:
            if started:
                await ends.stop()
                await admin.close()

    async def sample(self, admin: AIOKafkaAdminClient, ends: AIOKafkaConsumer) -> None:
        for group, topics in self._groups().items():
            for tp, (at, end) in (await positions(admin, ends, group, topics)).items():
                labels = (group, tp.topic, str(tp.partition))
                COMMITTED.labels(*labels).set(at)
                LOG_END.labels(*labels).set(end)
                LAG.labels(*labels).set(lag(at, end))


async def positions(
    admin: AIOKafkaAdminClient, ends: AIOKafkaConsumer, group: str, topics: Iterable[str] = ()
) -> dict[TopicPartition, tuple[int, int]]:
    """(committed offset, log end) of every partition the group has committed on and of `topics`' (-1:
    nothing committed there yet)."""
    committed = await admin.list_consumer_group_offsets(group)
    partitions = {tp for tp in committed}
    for topic in topics:
        partitions.update(TopicPartition(topic, p) for p in await _partitions(admin, topic))
    if not partitions:
        return {}
    log_ends = await ends.end_offsets(sorted(partitions))
    return {tp: (committed[tp].offset if tp in committed else -1, end) for tp, end in log_ends.items()}


def lag(at: int, end: int) -> int:
    return max(0, end - max(at, 0))


async def _partitions(admin: AIOKafkaAdminClient, topic: str) -> list[int]:
    """From the catalogue; a topic outside it (a test's, a benchmark's) from Kafka's metadata."""
    with contextlib.suppress(KeyError):
        return list(range(by_name(topic).partitions))
    [described] = await admin.describe_topics([topic])
    return sorted(p["partition"] for p in described["partitions"])
