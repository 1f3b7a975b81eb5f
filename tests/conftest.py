"""Fixtures shared by the suites. Unit tests need nothing; tests under integration/, e2e/ and chaos/
pull in `stack`, which starts the real Kafka, Postgres, Redis and OpenSearch (see tests/support/stack.py)."""

import os
import uuid
from collections.abc import AsyncIterator, Iterator
from contextlib import ExitStack

import psycopg
import pytest
from aiokafka import AIOKafkaProducer

from config import Settings, get_settings
from tests.support.stack import StackEndpoints, docker_engine_answers, prepare, start_native, start_testcontainers


@pytest.fixture(scope="session")
def stack() -> Iterator[StackEndpoints]:
    backend = os.environ.get("HI_TEST_BACKEND", "native")
    with ExitStack() as resources:
        if backend == "testcontainers":
            if not docker_engine_answers():
                raise RuntimeError("HI_TEST_BACKEND=testcontainers but no Docker engine answers `docker info`")
            endpoints = start_testcontainers(resources)
        else:
            endpoints = start_native()
        prepare(endpoints)
        yield endpoints


@pytest.fixture(scope="session")
def settings(stack: StackEndpoints) -> Settings:
    return get_settings()


@pytest.fixture(scope="session")
def run_id() -> str:
    """Marks what this test run produced, so assertions count only their own events."""
    return f"run-{uuid.uuid4().hex[:12]}"


@pytest.fixture
async def pg(settings: Settings) -> AsyncIterator[psycopg.AsyncConnection]:
    async with await psycopg.AsyncConnection.connect(settings.postgres_dsn, autocommit=True) as conn:
        yield conn


@pytest.fixture(scope="session")
async def producer(settings: Settings) -> AsyncIterator[AIOKafkaProducer]:
    producer = AIOKafkaProducer(bootstrap_servers=settings.kafka_bootstrap, acks="all", enable_idempotence=True)
    await producer.start()
    try:
        yield producer
    finally:
        await producer.stop()
