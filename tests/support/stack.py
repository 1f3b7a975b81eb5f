"""The real stack for integration, e2e and chaos tests: one fixture, two back ends.

- native (default): `ops/stack.sh up` starts Kafka, Postgres, Redis and OpenSearch on this machine
  (installing what is missing); a second call with everything up returns at once.
- testcontainers (`HI_TEST_BACKEND=testcontainers`, needs a Docker engine): the images of
  docker-compose.yml, on random ports, exported as HI_* settings for the code under test.
Either way, migrations and topics are applied before the first test.
"""

import asyncio
import os
import shutil
import subprocess
from contextlib import ExitStack
from dataclasses import dataclass

from config.settings import PROJECT_ROOT


@dataclass(frozen=True)
class StackEndpoints:
    kafka_bootstrap: str
    postgres_host: str
    postgres_port: int
    redis_url: str
    opensearch_url: str

    def as_env(self) -> dict[str, str]:
        return {
            "HI_KAFKA_BOOTSTRAP": self.kafka_bootstrap,
            "HI_POSTGRES_HOST": self.postgres_host,
            "HI_POSTGRES_PORT": str(self.postgres_port),
            "HI_REDIS_URL": self.redis_url,
            "HI_OPENSEARCH_URL": self.opensearch_url,
        }


NATIVE = StackEndpoints("127.0.0.1:9092", "127.0.0.1", 5433, "redis://127.0.0.1:6380/0", "http://127.0.0.1:9200")


def start_native() -> StackEndpoints:
    subprocess.run([str(PROJECT_ROOT / "ops" / "stack.sh"), "up"], check=True)
    return NATIVE


def docker_engine_answers() -> bool:
    if shutil.which("docker") is None:
        return False
    return subprocess.run(["docker", "info"], capture_output=True, check=False).returncode == 0


def start_testcontainers(stack: ExitStack) -> StackEndpoints:
    """Same images as docker-compose.yml. Imported lazily: the native path never needs Docker."""
    from testcontainers.core.container import DockerContainer
    from testcontainers.core.waiting_utils import wait_for_logs
    from testcontainers.kafka import KafkaContainer
    from testcontainers.postgres import PostgresContainer
    from testcontainers.redis import RedisContainer

    kafka = stack.enter_context(KafkaContainer("apache/kafka:4.1.1").with_kraft())
    kafka.with_env("KAFKA_AUTO_CREATE_TOPICS_ENABLE", "false")
    postgres = stack.enter_context(
        PostgresContainer("postgres:15", username="hyderabad", password="hyderabad-local", dbname="hyderabad")
    )
    redis = stack.enter_context(RedisContainer("redis:7"))
    opensearch = (
        DockerContainer("opensearchproject/opensearch:2.19.1")
        .with_env("discovery.type", "single-node")
        .with_env("DISABLE_SECURITY_PLUGIN", "true")
        .with_env("OPENSEARCH_JAVA_OPTS", "-Xms1g -Xmx1g")
        .with_exposed_ports(9200)
    )
    stack.enter_context(opensearch)
    wait_for_logs(opensearch, "started", timeout=180)
    return StackEndpoints(
        kafka.get_bootstrap_server(),
        postgres.get_container_host_ip(),
        int(postgres.get_exposed_port(5432)),
        f"redis://{redis.get_container_host_ip()}:{redis.get_exposed_port(6379)}/0",
        f"http://{opensearch.get_container_host_ip()}:{opensearch.get_exposed_port(9200)}",
    )


def prepare(endpoints: StackEndpoints) -> None:
    """Migrations and topics, with settings pointing at the stack just started."""
    from config.settings import get_settings
    from ops.migrate import migrate
    from ops.topics import create_topics

    os.environ.update(endpoints.as_env())
    get_settings.cache_clear()
    migrate()
    asyncio.run(create_topics(bootstrap=endpoints.kafka_bootstrap))
