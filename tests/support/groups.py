"""What Kafka says about a consumer group: its members and the partitions each is assigned."""

from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.coordinator.protocol import ConsumerProtocolMemberAssignment


async def assignments(bootstrap: str, group: str) -> dict[str, set[tuple[str, int]]]:
    """Member id -> its (topic, partition)s, as the group coordinator has them; empty while rebalancing."""
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap, request_timeout_ms=10000)
    await admin.start()
    try:
        members: dict[str, set[tuple[str, int]]] = {}
        for response in await admin.describe_consumer_groups([group]):
            for error_code, group_id, state, _type, _protocol, described, *_ in response.groups:
                if group_id != group or error_code != 0 or state != "Stable":
                    continue
                for member_id, _client, _host, _metadata, assignment in described:
                    decoded = ConsumerProtocolMemberAssignment.decode(assignment) if assignment else None
                    members[member_id] = {
                        (topic, partition)
                        for topic, partitions in (decoded.assignment if decoded else [])
                        for partition in partitions
                    }
        return members
    finally:
        await admin.close()
