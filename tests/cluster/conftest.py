"""The cluster tests: three Kafka brokers, a Postgres primary and replica, two OpenSearch nodes
(`make test-cluster`, i.e. HI_CLUSTER=1: config/cluster.env). Every test here is marked `cluster`."""

import pytest


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if "tests/cluster/" in str(item.fspath):
            item.add_marker(pytest.mark.cluster)


@pytest.fixture(autouse=True, scope="session")
def _cluster_stack(stack, settings):
    """Run against the cluster or not at all: on one broker these tests would prove nothing."""
    if not settings.cluster or settings.kafka_replication_factor < 3 or not settings.postgres_replica_dsn:
        raise RuntimeError("tests/cluster need the cluster mode: run `make test-cluster` (HI_CLUSTER=1)")
    return stack
