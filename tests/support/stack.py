"""The real stack for integration, e2e and chaos tests: one fixture, two back ends.

- native (default): `ops/stack.sh up` starts Kafka, Postgres, Redis and OpenSearch on this machine
  (installing what is missing); a second call with everything up returns at once. HI_STATE_DIR and the
  HI_*_PORT variables choose which stack (the script and the settings read the same ones).
- testcontainers (`HI_TEST_BACKEND=testcontainers`, needs a Docker engine): the images of
  docker-compose.yml, published on the same ports, so the code under test needs no other settings.
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


def native_endpoints() -> StackEndpoints:
    """Where `ops/stack.sh` puts the stack: the settings' endpoints, which follow the same HI_*_PORT
    variables the script reads (so a suite pointed at a second stack starts and uses that one)."""
    from config.settings import Settings

    settings = Settings()
    return StackEndpoints(
        settings.kafka_bootstrap,
        settings.postgres_host,
        settings.postgres_port,
        settings.redis_url,
        settings.opensearch_url,
    )


def start_native() -> StackEndpoints:
    subprocess.run([str(PROJECT_ROOT / "ops" / "stack.sh"), "up"], check=True)
    return native_endpoints()


def docker_engine_answers() -> bool:
    if shutil.which("docker") is None:
        return False
    return subprocess.run(["docker", "info"], capture_output=True, check=False).returncode == 0


def start_testcontainers(stack: ExitStack) -> StackEndpoints:
    """The images of docker-compose.yml on the native ports, so every setting stays the same.

    Generic containers rather than the per-product modules: each is configured exactly as in
    docker-compose.yml, and readiness is judged by the same probes the native path uses.
    Imported lazily: the native path never needs Docker.
    """
    from testcontainers.core.container import DockerContainer

    containers = [
        DockerContainer("apache/kafka:4.3.1")
        .with_env("KAFKA_NODE_ID", "1")
        .with_env("KAFKA_PROCESS_ROLES", "broker,controller")
        .with_env("KAFKA_LISTENERS", "PLAINTEXT://:9092,CONTROLLER://:9093")
        .with_env("KAFKA_ADVERTISED_LISTENERS", "PLAINTEXT://127.0.0.1:9092")
        .with_env("KAFKA_CONTROLLER_LISTENER_NAMES", "CONTROLLER")
        .with_env("KAFKA_CONTROLLER_QUORUM_VOTERS", "1@localhost:9093")
        .with_env("KAFKA_OFFSETS_TOPIC_REPLICATION_FACTOR", "1")
        .with_env("KAFKA_TRANSACTION_STATE_LOG_REPLICATION_FACTOR", "1")
        .with_env("KAFKA_TRANSACTION_STATE_LOG_MIN_ISR", "1")
        .with_env("KAFKA_GROUP_INITIAL_REBALANCE_DELAY_MS", "0")
        .with_env("KAFKA_OFFSETS_TOPIC_NUM_PARTITIONS", "10")
        .with_env("KAFKA_BROKER_HEARTBEAT_INTERVAL_MS", "1000")
        .with_env("KAFKA_BROKER_SESSION_TIMEOUT_MS", "4000")
        .with_env("KAFKA_AUTO_CREATE_TOPICS_ENABLE", "false")
        .with_bind_ports(9092, 9092),
        DockerContainer("postgres:15")
        .with_env("POSTGRES_USER", "hyderabad")
        .with_env("POSTGRES_PASSWORD", "hyderabad-local")
        .with_env("POSTGRES_DB", "hyderabad")
        .with_bind_ports(5432, NATIVE.postgres_port),
        DockerContainer("redis:7").with_bind_ports(6379, 6380),
        DockerContainer("opensearchproject/opensearch:2.19.1")
        .with_env("discovery.type", "single-node")
        .with_env("DISABLE_SECURITY_PLUGIN", "true")
        .with_env("OPENSEARCH_JAVA_OPTS", "-Xms1g -Xmx1g")
        .with_bind_ports(9200, 9200),
    ]
    for container in containers:
        stack.enter_context(container)
    asyncio.run(_wait_until_answering(NATIVE, within=180))
    return NATIVE


async def _wait_until_answering(endpoints: StackEndpoints, within: float) -> None:
    import httpx
    import psycopg
    import redis.asyncio as redis
    from aiokafka.admin import AIOKafkaAdminClient

    from config.settings import get_settings

    async def kafka() -> None:
        admin = AIOKafkaAdminClient(bootstrap_servers=endpoints.kafka_bootstrap)
        await admin.start()
        await admin.close()

    async def postgres() -> None:
        conn = await psycopg.AsyncConnection.connect(get_settings().postgres_dsn)
        await conn.close()

    async def redis_ping() -> None:
        await redis.from_url(endpoints.redis_url).ping()

    async def opensearch() -> None:
        async with httpx.AsyncClient() as client:
            (await client.get(f"{endpoints.opensearch_url}/_cluster/health?wait_for_status=yellow")).raise_for_status()

    deadline = asyncio.get_running_loop().time() + within
    for probe in (kafka, postgres, redis_ping, opensearch):
        while True:
            try:
                await probe()
                break
            except Exception:
                if asyncio.get_running_loop().time() > deadline:
                    raise
                await asyncio.sleep(1)


def prepare(endpoints: StackEndpoints) -> None:
    """Migrations, topics and the search index, with settings pointing at the stack just started."""
    from config.settings import get_settings
    from ops.migrate import migrate
    from ops.search_index import ensure_search_indices
    from ops.topics import create_topics

    os.environ.update(endpoints.as_env())
    get_settings.cache_clear()
    migrate()
    asyncio.run(create_topics(bootstrap=endpoints.kafka_bootstrap))
    ensure_search_indices()
