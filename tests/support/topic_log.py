"""Reading a topic as it is: every record from given offsets to its end, decoded (a consumer of no group)."""

import orjson
from aiokafka import AIOKafkaConsumer, TopicPartition


async def read_all(bootstrap: str, topic: str, partitions: int, since: dict[int, int] | None = None) -> list[dict]:
    """Every record of `topic` (from `since`, per partition, when given), decoded."""
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, group_id=None, enable_auto_commit=False)
    await consumer.start()
    found = []
    try:
        every = [TopicPartition(topic, p) for p in range(partitions)]
        consumer.assign(every)
        await consumer.seek_to_beginning(*every)
        for tp in every:
            if since:
                consumer.seek(tp, since[tp.partition])
        ends = await consumer.end_offsets(every)
        while any([await consumer.position(p) < ends[p] for p in every]):
            for messages in (await consumer.getmany(timeout_ms=1000)).values():
                found += [orjson.loads(message.value) for message in messages]
    finally:
        await consumer.stop()
    return found


async def end_offsets(bootstrap: str, topic: str, partitions: int) -> dict[int, int]:
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, group_id=None, enable_auto_commit=False)
    await consumer.start()
    try:
        ends = await consumer.end_offsets([TopicPartition(topic, p) for p in range(partitions)])
        return {tp.partition: offset for tp, offset in ends.items()}
    finally:
        await consumer.stop()
