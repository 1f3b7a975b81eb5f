"""The container healthchecks (ops/healthcheck.py) against the real broker: a worker is healthy once its
consumer group has settled with it as a member, and not before it joins nor after it leaves."""

import socket
import threading
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from aiokafka import AIOKafkaConsumer

from ops.healthcheck import group_is_stable, groups_are_stable, http_answers, tcp_accepts
from schemas.topics import PROPERTIES
from tests.support.waiting import eventually


async def test_a_group_is_healthy_only_while_a_member_holds_it(settings):
    group = f"healthcheck-{uuid.uuid4().hex[:8]}"
    assert not await group_is_stable(settings.kafka_bootstrap, group)
    consumer = AIOKafkaConsumer(PROPERTIES.name, bootstrap_servers=settings.kafka_bootstrap, group_id=group)
    await consumer.start()
    try:
        await eventually(lambda: consumer.getmany(timeout_ms=200), lambda _: bool(consumer.assignment()))
        assert await group_is_stable(settings.kafka_bootstrap, group)
    finally:
        await consumer.stop()
    assert not await group_is_stable(settings.kafka_bootstrap, group)


async def test_the_projection_host_is_healthy_only_once_every_group_it_hosts_has_settled(settings):
    held, missing = (f"healthcheck-{uuid.uuid4().hex[:8]}" for _ in range(2))
    consumer = AIOKafkaConsumer(PROPERTIES.name, bootstrap_servers=settings.kafka_bootstrap, group_id=held)
    await consumer.start()
    try:
        await eventually(lambda: consumer.getmany(timeout_ms=200), lambda _: bool(consumer.assignment()))
        assert await groups_are_stable(settings.kafka_bootstrap, [held])
        assert not await groups_are_stable(settings.kafka_bootstrap, [held, missing])
    finally:
        await consumer.stop()


async def test_an_unreachable_broker_is_not_healthy():
    with socket.socket() as unused:
        unused.bind(("127.0.0.1", 0))
        port = unused.getsockname()[1]
    assert not await group_is_stable(f"127.0.0.1:{port}", "any")


def test_a_port_is_healthy_while_it_accepts():
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        port = listener.getsockname()[1]
        assert tcp_accepts("127.0.0.1", port)
    assert not tcp_accepts("127.0.0.1", port)


class _Probes(BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        self.send_response(200 if self.path == "/ready" else 503)
        self.end_headers()

    def log_message(self, format: str, *args: object) -> None:
        pass


def test_a_service_is_healthy_while_it_answers_2xx():
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Probes)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    url = f"http://127.0.0.1:{server.server_address[1]}"
    try:
        assert http_answers(f"{url}/ready")
        assert not http_answers(f"{url}/not-ready")
    finally:
        server.shutdown()
        server.server_close()
    assert not http_answers(f"{url}/ready")
