"""Producing events, and the consistency token that tells a client where its events landed.

Commands answer with `X-Consistency-Token: properties:3:1042,users:1:7` (topic:partition:offset of
each event produced); a query given that token waits until its store has applied those positions.
"""

import asyncio
import logging
import re
from collections.abc import Iterable
from dataclasses import dataclass

from aiokafka import AIOKafkaProducer
from aiokafka.errors import KafkaError, KafkaTimeoutError

from api.common.errors import ApiError, DependencyUnavailable, field_error
from schemas.codec import UnstorableEvent, encode
from schemas.envelope import Envelope

logger = logging.getLogger("api.kafka")

# CloudEvents Kafka binding, structured mode: the value is the whole event as JSON.
CLOUDEVENTS_HEADERS = [("content-type", b"application/cloudevents+json")]


@dataclass(frozen=True, order=True)
class Position:
    topic: str
    partition: int
    offset: int


def _unavailable(exc: BaseException) -> bool:
    return isinstance(exc, KafkaTimeoutError | TimeoutError) or (isinstance(exc, KafkaError) and exc.retriable)


class EventProducer:
    """An idempotent, `acks=all` producer that tolerates Kafka being down.

    A service must start (and `/ready` report 503) while Kafka is away, so `start()` never fails:
    the client is (re)built on the next publish or readiness check. While Kafka is unreachable,
    `publish` raises `DependencyUnavailable("kafka")`, which answers 503.
    """

    def __init__(
        self,
        bootstrap_servers: str,
        *,
        client_id: str,
        connect_timeout: float = 5.0,
        request_timeout_ms: int = 10_000,
    ) -> None:
        self.bootstrap_servers = bootstrap_servers
        self.client_id = client_id
        self.connect_timeout = connect_timeout
        # Bounds how long a command waits on an unreachable broker before answering 503.
        self.request_timeout_ms = request_timeout_ms
        self._producer: AIOKafkaProducer | None = None
        self._lock = asyncio.Lock()

    async def start(self) -> None:
        try:
            await self._started()
        except DependencyUnavailable:
            logger.warning("kafka at %s is not reachable yet; will retry on use", self.bootstrap_servers)

    async def stop(self) -> None:
        producer, self._producer = self._producer, None
        if producer is not None:
            await producer.stop()  # flushes what is still batched

    async def publish(self, topic: str, envelope: Envelope, key: str | None = None) -> Position:
        try:
            value = encode(envelope)
        except UnstorableEvent as exc:
            # What no store could hold is the request's fault, whatever door it came in by: 422, not a
            # 201 for an event every projection then dead-letters.
            raise ApiError(422, f"Invalid request: check {exc.field}", [field_error(exc.field, exc.problem)]) from None
        producer = await self._started()
        try:
            metadata = await producer.send_and_wait(
                topic,
                value,
                key=(key or envelope.subject).encode(),
                headers=CLOUDEVENTS_HEADERS,
            )
        except Exception as exc:
            if _unavailable(exc):
                raise DependencyUnavailable("kafka", f"could not produce to {topic}") from exc
            raise
        return Position(metadata.topic, metadata.partition, metadata.offset)

    async def check(self) -> None:
        """A metadata round trip to a live broker; raises if none answers."""
        producer = await self._started()
        await producer.client.fetch_all_metadata()

    async def _started(self) -> AIOKafkaProducer:
        async with self._lock:
            if self._producer is None:
                producer = AIOKafkaProducer(
                    bootstrap_servers=self.bootstrap_servers,
                    client_id=self.client_id,
                    acks="all",
                    enable_idempotence=True,
                    linger_ms=5,  # a few ms lets events of concurrent requests share a batch
                    request_timeout_ms=self.request_timeout_ms,
                )
                try:
                    await asyncio.wait_for(producer.start(), self.connect_timeout)
                except BaseException as exc:
                    await producer.stop()
                    if _unavailable(exc):
                        raise DependencyUnavailable("kafka") from exc
                    raise
                self._producer = producer
            return self._producer


CONSISTENCY_HEADER = "X-Consistency-Token"
_TOKEN_PART = re.compile(r"^(?P<topic>[A-Za-z0-9._-]{1,249}):(?P<partition>\d{1,6}):(?P<offset>\d{1,19})$")
MAX_TOKEN_POSITIONS = 64


def consistency_token(positions: Iterable[Position]) -> str:
    """Only the highest offset per partition matters: a store that applied it applied the rest."""
    latest: dict[tuple[str, int], int] = {}
    for p in positions:
        latest[(p.topic, p.partition)] = max(p.offset, latest.get((p.topic, p.partition), -1))
    return ",".join(f"{topic}:{partition}:{offset}" for (topic, partition), offset in sorted(latest.items()))


def parse_consistency_token(token: str, limit: int | None = MAX_TOKEN_POSITIONS) -> list[Position]:
    """`limit` bounds what a client may send; a token merged with a session's own writes (already
    checked parts, one per partition) is parsed without it."""
    parts = token.split(",")
    matches = [_TOKEN_PART.match(part.strip()) for part in parts]
    if (limit is not None and len(parts) > limit) or not all(matches):
        raise ApiError(
            400,
            f"Invalid {CONSISTENCY_HEADER}",
            [field_error(CONSISTENCY_HEADER, "expected topic:partition:offset[,...] as returned by a command")],
        )
    return [Position(m["topic"], int(m["partition"]), int(m["offset"])) for m in matches if m]
