"""The notification slice running for real: the local mailbox (SMTP) and SMS sink, the delivery reactor
and the projection under groups of their own (started at the topics' ends, so they act only on what
the test produces), and the notification service; optionally the user slice's workers and service,
so recipients are real registered users resolved from the users read model.
"""

import asyncio
import subprocess
import sys
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import orjson
import psycopg
from aiokafka import AIOKafkaConsumer, TopicPartition

from api.common.auth import issue_access_token
from api.services import by_name
from config import get_settings
from config.settings import PROJECT_ROOT
from ops.mailbox import Stored, read_mailbox
from ops.sms_sink import read_messages
from schemas.topics import NOTIFICATIONS, SEARCHES, USERS
from tests.support.processes import WorkerProcess, stop_process_group
from tests.support.property_projection import start_group_at_end
from tests.support.services import ServiceProcess, free_port
from tests.support.users import TEST_SERVICE_ENV, registration, user_workers
from tests.support.waiting import eventually

# A token made when pytest collects a module can be used most of a suite run later: it must outlive the
# run, not only the 15 minutes a login's token lives.
SUITE_TOKEN_TTL_SECONDS = 4 * 60 * 60


def bearer(user_id: str, role: str = "USER", ttl: int | None = None) -> dict[str, str]:
    return {"Authorization": f"Bearer {issue_access_token(user_id, role, ttl=ttl)}"}


def a_phone() -> str:
    return "+9198" + f"{uuid.uuid4().int % 10**8:08d}"


async def _port_open(port: int) -> bool:
    try:
        _, writer = await asyncio.open_connection("127.0.0.1", port)
    except OSError:
        return False
    writer.close()
    return True


class ServerProcess:
    """`python -m ops.mailbox serve` or `python -m ops.sms_sink serve` on a port of this test run."""

    def __init__(self, module: str, port: int, directory: Path, log_path: Path, *extra: str) -> None:
        self.module, self.port, self.directory, self.log_path, self.extra = module, port, directory, log_path, extra
        self.process: subprocess.Popen[bytes] | None = None

    async def start(self) -> None:
        self.launch()
        await eventually(lambda: _port_open(self.port), bool, within=20, every=0.1)

    def launch(self) -> None:
        command = [sys.executable, "-m", self.module, "serve", "--port", str(self.port), "--dir", str(self.directory)]
        with self.log_path.open("ab") as log:
            self.process = subprocess.Popen(
                [*command, *self.extra],
                cwd=PROJECT_ROOT,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )

    def stop(self) -> None:
        stop_process_group(self.process, grace_seconds=5)


@dataclass
class NotificationSlice:
    service: ServiceProcess
    mailbox: ServerProcess
    sms: ServerProcess
    workers: list[WorkerProcess]
    delivery_group: str
    user_service: ServiceProcess | None = None
    env: dict[str, str] = field(default_factory=dict)

    def client(self) -> httpx.AsyncClient:
        return httpx.AsyncClient(base_url=self.service.url, timeout=30)

    def users(self) -> httpx.AsyncClient:
        assert self.user_service is not None
        return httpx.AsyncClient(base_url=self.user_service.url, timeout=30)

    def mail(self, notification_id: str | None = None) -> list[Stored]:
        messages = read_mailbox(self.mailbox.directory)
        if notification_id is None:
            return messages
        return [m for m in messages if m.message["X-Notification-Id"] == notification_id]

    def texts(self, notification_id: str | None = None) -> list[dict[str, Any]]:
        messages = read_messages(self.sms.directory)
        return [m for m in messages if notification_id is None or m.get("reference") == notification_id]

    async def register(self, **overrides: str) -> tuple[str, dict[str, str]]:
        """A real user through the user service; returns (user id, the registration body)."""
        body = registration(**{"phone": a_phone(), **overrides})
        async with self.users() as users:
            answer = await users.post("/api/auth/register", json=body)
            assert answer.status_code == 201, answer.text
            user_id = answer.json()["data"]["id"]
            token = {"X-Consistency-Token": answer.headers["X-Consistency-Token"]}
            # The reactor reads addresses from the users read model: wait until the user is in it.
            await eventually(
                lambda: users.get(f"/api/users/{user_id}", headers={**token, **bearer(user_id)}),
                lambda r: r.status_code == 200,
                within=30,
            )
        return user_id, body


def slice_env(base: dict[str, str], run: str, smtp_port: int, sms_port: int, tmp: Path) -> dict[str, str]:
    return {
        **base,
        "HI_NOTIFICATION_DELIVERY_GROUP": f"notification-delivery-{run}",
        "HI_NOTIFICATION_PROJECTION_GROUP": f"notification-projection-{run}",
        "HI_SMTP_PORT": str(smtp_port),
        "HI_SMS_API_URL": f"http://127.0.0.1:{sms_port}/v1/messages",
        "HI_MAILBOX_DIR": str(tmp / "mailbox"),
        "HI_SMS_SINK_DIR": str(tmp / "sms"),
        # Retries in fractions of a second, so an outage of a few seconds is many attempts, not minutes.
        "HI_NOTIFICATION_RETRY_BASE_SECONDS": "0.2",
        "HI_NOTIFICATION_RETRY_MAX_SECONDS": "1.0",
        "HI_NOTIFICATION_MAX_ATTEMPTS": "40",
        "HI_NOTIFICATION_POLL_SECONDS": "0.1",
        # A sender's sixth message within the hour is refused (the rate-limit test writes six).
        "HI_NOTIFICATION_MESSAGE_LIMIT": "5",
    }


@asynccontextmanager
async def running_notification_slice(
    log_dir: Path, env: dict[str, str], *, with_users: bool = True, projection: bool = True
) -> AsyncIterator[NotificationSlice]:
    run = uuid.uuid4().hex[:10]
    smtp_port, sms_port = free_port(), free_port()
    env = slice_env(env, run, smtp_port, sms_port, log_dir)
    delivery_group = env["HI_NOTIFICATION_DELIVERY_GROUP"]
    bootstrap = env.get("HI_KAFKA_BOOTSTRAP") or get_settings().kafka_bootstrap
    await start_group_at_end(bootstrap, delivery_group, (NOTIFICATIONS.name, SEARCHES.name, USERS.name))
    await start_group_at_end(bootstrap, env["HI_NOTIFICATION_PROJECTION_GROUP"], (NOTIFICATIONS.name, USERS.name))
    mailbox = ServerProcess("ops.mailbox", smtp_port, log_dir / "mailbox", log_dir / "mailbox.log")
    sms = ServerProcess("ops.sms_sink", sms_port, log_dir / "sms", log_dir / "sms-sink.log")
    workers = [WorkerProcess("streams.notifications.delivery_worker", env, log_dir / "notification-delivery.log")]
    if projection:
        workers.append(
            WorkerProcess("streams.notifications.projection_worker", env, log_dir / "notification-projection.log")
        )
    service = ServiceProcess(by_name("notification"), log_dir / "notification-service.log", env)
    user_service = None
    if with_users:
        workers += user_workers(log_dir)
        user_service = ServiceProcess(by_name("user"), log_dir / "user-service.log", {**env, **TEST_SERVICE_ENV})
    try:
        await mailbox.start()
        await sms.start()
        for worker in workers:
            worker.start()
        await service.start()
        if user_service is not None:
            await user_service.start()
        slice_ = NotificationSlice(service, mailbox, sms, workers, delivery_group, user_service, env)
        await _until_reactor_delivers(slice_)
        yield slice_
    finally:
        for process in (service, user_service):
            if process is not None:
                process.stop()
        for worker in workers:
            worker.stop()
        mailbox.stop()
        sms.stop()
        await _forget_schedule(env, delivery_group)


async def _forget_schedule(env: dict[str, str], group: str) -> None:
    """The run's reactor rows are its own (`dispatcher` = its group): nothing else will ever claim them."""
    settings = get_settings()
    async with await psycopg.AsyncConnection.connect(settings.postgres_dsn, autocommit=True) as conn:
        await conn.execute("DELETE FROM notification_deliveries WHERE dispatcher = %s", (group,))


async def _until_reactor_delivers(slice_: NotificationSlice) -> None:
    """The workers need a moment to join their groups: an email to an outside address that reaches the
    mailbox proves the reactor is in (and, with the projection, a state readable with its token)."""
    admin = bearer(f"user-admin-{uuid.uuid4().hex[:8]}", "ADMIN")
    body = {"to": "warm-up@example.in", "subject": "Warm-up", "text": "Warming up."}
    async with slice_.client() as client:
        answer = await eventually(
            lambda: client.post("/api/notifications/email", json=body, headers=admin),
            lambda r: r.status_code == 202,
            within=60,
        )
        notification = answer.json()["data"]["id"]
        await eventually(lambda: _async(slice_.mail(notification)), bool, within=90)


async def _async(value: Any) -> Any:
    return value


async def dead_letters_from_end(bootstrap: str) -> AIOKafkaConsumer:
    """A consumer of `dead-letters` positioned at its end now: it sees only what comes later."""
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, group_id=None, enable_auto_commit=False)
    await consumer.start()
    partition = TopicPartition("dead-letters", 0)
    consumer.assign([partition])
    await consumer.seek_to_end(partition)
    await consumer.position(partition)
    return consumer


async def notification_events(bootstrap: str, notification_id: str, since: dict[int, int]) -> list[dict[str, Any]]:
    """Events of one notification on `notifications` after the given offsets (by partition)."""
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, group_id=None, enable_auto_commit=False)
    await consumer.start()
    try:
        partitions = [TopicPartition(NOTIFICATIONS.name, p) for p in range(NOTIFICATIONS.partitions)]
        consumer.assign(partitions)
        ends = await consumer.end_offsets(partitions)
        found = []
        for tp in partitions:
            start = since.get(tp.partition, 0)
            if ends[tp] <= start:
                continue
            consumer.seek(tp, start)
            while await consumer.position(tp) < ends[tp]:
                batch = await consumer.getmany(tp, timeout_ms=1000)
                for message in batch.get(tp, []):
                    if message.key == notification_id.encode():
                        found.append(orjson.loads(message.value))
        return found
    finally:
        await consumer.stop()


async def notification_ends(bootstrap: str) -> dict[int, int]:
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, group_id=None)
    await consumer.start()
    try:
        partitions = [TopicPartition(NOTIFICATIONS.name, p) for p in range(NOTIFICATIONS.partitions)]
        ends = await consumer.end_offsets(partitions)
        return {tp.partition: offset for tp, offset in ends.items()}
    finally:
        await consumer.stop()
