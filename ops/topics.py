"""Create the topics of the catalogue (`schemas/topics.py`), idempotently, and check what exists.

`python -m ops.topics create` makes what is missing; `python -m ops.topics check` exits non-zero when
the broker's topics differ from the catalogue (missing, extra, or a different partition count).
Brokers run with `auto.create.topics.enable=false`, so this is the only way a topic comes to be.
"""

import argparse
import asyncio
import sys

from aiokafka.admin import AIOKafkaAdminClient, NewTopic

from config import get_settings
from schemas.topics import ALL_TOPICS, Topic

# Kafka's own bookkeeping, never ours to declare.
_INTERNAL_PREFIXES = ("__",)


async def _admin(bootstrap: str) -> AIOKafkaAdminClient:
    # Generous: three brokers creating the catalogue with three copies each take a while on a busy machine.
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap, request_timeout_ms=60000)
    await admin.start()
    return admin


async def existing_partitions(admin: AIOKafkaAdminClient) -> dict[str, int]:
    names = [n for n in await admin.list_topics() if not n.startswith(_INTERNAL_PREFIXES)]
    if not names:
        return {}
    described = await admin.describe_topics(names)
    return {d["topic"]: len(d["partitions"]) for d in described}


async def create_topics(
    topics: tuple[Topic, ...] = ALL_TOPICS, bootstrap: str | None = None, replication: int | None = None
) -> list[str]:
    """Single mode: replication factor 1. Cluster mode (three brokers): 3 copies and min.insync.replicas 2,
    so with producers' acks=all an acknowledged event is on two brokers and one broker may go."""
    settings = get_settings()
    replication = replication or settings.kafka_replication_factor
    min_insync = str(min(settings.kafka_min_insync_replicas, replication))
    admin = await _admin(bootstrap or settings.kafka_bootstrap)
    try:
        have = await existing_partitions(admin)
        missing = [t for t in topics if t.name not in have]
        if missing:
            await admin.create_topics(
                [
                    NewTopic(
                        t.name,
                        num_partitions=t.partitions,
                        replication_factor=replication,
                        topic_configs={"min.insync.replicas": min_insync, **t.config},
                    )
                    for t in missing
                ]
            )
        return [t.name for t in missing]
    finally:
        await admin.close()


async def differences(topics: tuple[Topic, ...] = ALL_TOPICS, bootstrap: str | None = None) -> list[str]:
    admin = await _admin(bootstrap or get_settings().kafka_bootstrap)
    try:
        have = await existing_partitions(admin)
    finally:
        await admin.close()
    wanted = {t.name: t.partitions for t in topics}
    problems = [f"missing topic {name}" for name in wanted if name not in have]
    problems += [f"topic {name} is not in the catalogue" for name in have if name not in wanted]
    problems += [
        f"topic {name} has {have[name]} partitions, the catalogue says {wanted[name]}"
        for name in wanted
        if name in have and have[name] != wanted[name]
    ]
    return problems


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("action", choices=["create", "check"])
    args = parser.parse_args()
    if args.action == "create":
        created = asyncio.run(create_topics())
        print(f"topics: created {', '.join(created) if created else 'none (all present)'}")
        return
    problems = asyncio.run(differences())
    for problem in problems:
        print(problem)
    sys.exit(1 if problems else 0)


if __name__ == "__main__":
    main()
