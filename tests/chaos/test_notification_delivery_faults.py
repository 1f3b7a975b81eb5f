"""Fault tests of email delivery against the real stack: the SMTP server goes away while notifications are
requested (the reactor retries with backoff, nothing is lost, each arrives exactly once when the server
returns); an address the server refuses for good ends on the dead-letter topic with its error; the
reactor is killed mid-batch and restarted (nothing lost, only in-flight messages may arrive twice)."""

import asyncio
import uuid

import orjson
import pytest

from schemas.codec import encode
from schemas.envelope import new_event
from schemas.ids import new_id
from schemas.notifications import Content, Kind, NotificationRequested, RequestedChannel
from schemas.topics import DLQ_CONSUMER_HEADER, DLQ_ERROR_HEADER, DLQ_SOURCE_TOPIC_HEADER, NOTIFICATIONS
from tests.support.notifications import (
    SUITE_TOKEN_TTL_SECONDS,
    bearer,
    dead_letters_from_end,
    notification_ends,
    notification_events,
    running_notification_slice,
)
from tests.support.waiting import eventually

ADMIN = bearer(f"user-admin-{uuid.uuid4().hex[:8]}", "ADMIN", ttl=SUITE_TOKEN_TTL_SECONDS)


@pytest.fixture(scope="module")
async def notifications(stack, tmp_path_factory):
    directory = tmp_path_factory.mktemp("notification-outage")
    # A short lease: the killed reactor's claimed rows are taken over seconds after the restart, not a minute.
    env = {**stack.as_env(), "HI_NOTIFICATION_LEASE_SECONDS": "3"}
    async with running_notification_slice(directory, env, with_users=False, projection=False) as slice_:
        yield slice_


@pytest.fixture(scope="module")
async def api(notifications):
    async with notifications.client() as client:
        yield client


async def pending_attempts(pg, group: str, ids: list[str]) -> list[int]:
    cursor = await pg.execute(
        "SELECT attempts FROM notification_deliveries WHERE dispatcher = %s AND notification_id = ANY(%s)"
        " AND state IN ('pending', 'sending')",
        (group, ids),
    )
    return [row[0] for row in await cursor.fetchall()]


async def test_smtp_down_for_a_while_then_every_email_arrives_exactly_once(notifications, api, pg, settings):
    before = await notification_ends(settings.kafka_bootstrap)
    notifications.mailbox.stop()
    ids = []
    for n in range(8):
        body = {"to": f"buyer.{n}.{uuid.uuid4().hex[:6]}@example.in", "subject": f"Site visit {n}", "text": "See you."}
        answer = await api.post("/api/notifications/email", json=body, headers=ADMIN)
        assert answer.status_code == 202, answer.text
        ids.append(answer.json()["data"]["id"])

    # The server stays away for a while: the reactor keeps trying with backoff (0.2 s doubling to 1 s
    # here), and the server comes back only once every message has failed at least four times.
    await eventually(
        lambda: pending_attempts(pg, notifications.delivery_group, ids),
        lambda found: len(found) == len(ids) and min(found) >= 4,
        within=30,
    )
    assert notifications.mail() == [] or all(m.message["X-Notification-Id"] not in ids for m in notifications.mail())

    await notifications.mailbox.start()
    await eventually(lambda: asyncio.sleep(0, [notifications.mail(i) for i in ids]), lambda f: all(f), within=30)
    # Nothing more arrives later: give the dispatcher more rounds than its retry interval, then count.
    await eventually(
        lambda: pending_attempts(pg, notifications.delivery_group, ids), lambda found: found == [], within=15
    )
    for notification in ids:
        assert len(notifications.mail(notification)) == 1, notification

    sent = []
    for notification in ids:
        events = await notification_events(settings.kafka_bootstrap, notification, before)
        sent += [e for e in events if e["type"] == "notification.sent.v1"]
    assert len({e["data"]["notificationId"] for e in sent}) == len(ids)
    assert min(e["data"]["attempts"] for e in sent) >= 5


async def test_a_permanently_refused_address_ends_on_the_dead_letter_topic_with_its_error(api, settings, notifications):
    dlq = await dead_letters_from_end(settings.kafka_bootstrap)
    try:
        body = {"to": f"nobody.{uuid.uuid4().hex[:6]}@bounce.invalid", "subject": "Hello", "text": "Anyone?"}
        answer = await api.post("/api/notifications/email", json=body, headers=ADMIN)
        assert answer.status_code == 202
        notification = answer.json()["data"]["id"]

        async def letters():
            batch = await dlq.getmany(timeout_ms=500)
            return [m for messages in batch.values() for m in messages if m.key == notification.encode()]

        found = []
        await eventually(lambda: letters(), lambda got: found.extend(got) or bool(found), within=30)
        [letter] = found
        headers = dict(letter.headers)
        assert b"550" in headers[DLQ_ERROR_HEADER] and b"permanent" in headers[DLQ_ERROR_HEADER]
        assert headers[DLQ_CONSUMER_HEADER] == b"notification-delivery"
        assert headers[DLQ_SOURCE_TOPIC_HEADER] == b"notifications"
        # The dead letter is the request itself, untouched, so it can be put back once the cause is fixed.
        request = orjson.loads(letter.value)
        assert request["type"] == "notification.requested.v1" and request["data"]["notificationId"] == notification
        assert notifications.mail(notification) == []
    finally:
        await dlq.stop()


async def test_a_reactor_killed_mid_batch_loses_nothing_and_resends_only_what_was_in_flight(
    notifications, settings, pg, producer
):
    """SIGKILL while a batch is being sent: the restarted reactor takes over the killed one's claimed rows
    once their lease ends. Every message arrives; a message can arrive twice only if it was among the
    rows claimed at the moment of the kill (sent, but not yet recorded as sent)."""
    ids = [new_id("notif") for _ in range(400)]
    for n, notification in enumerate(ids):
        request = NotificationRequested(
            notification_id=notification,
            address=f"buyer.{n}@example.in",
            channel=RequestedChannel.EMAIL,
            kind=Kind.DIRECT,
            content=Content(subject=f"Visit #{n}", text="Confirmed."),
        )
        event = new_event(type="notification.requested.v1", subject=notification, data=request.to_wire(), service="t")
        await producer.send(NOTIFICATIONS.name, encode(event), key=notification.encode())
    await producer.flush()

    def arrived() -> list[str]:
        wanted = set(ids)
        return [
            m.message["X-Notification-Id"] for m in notifications.mail() if m.message["X-Notification-Id"] in wanted
        ]

    await eventually(lambda: asyncio.sleep(0, arrived()), lambda got: len(got) >= 60, within=60, every=0.05)
    worker = notifications.workers[0]
    worker.kill()
    cursor = await pg.execute(
        "SELECT notification_id FROM notification_deliveries WHERE dispatcher = %s AND state = 'sending'",
        (notifications.delivery_group,),
    )
    in_flight = {row[0] for row in await cursor.fetchall()}
    assert len(set(arrived())) < len(ids), "the kill came too late to test anything"

    worker.start()

    async def recorded_as_sent() -> int:
        cursor = await pg.execute(
            "SELECT count(*) FROM notification_deliveries WHERE dispatcher = %s AND notification_id = ANY(%s)"
            " AND state = 'sent'",
            (notifications.delivery_group, ids),
        )
        return (await cursor.fetchone())[0]

    # Every row recorded as sent, after its message was accepted: nothing is left to send, so no late
    # duplicate can come after this.
    await eventually(recorded_as_sent, lambda sent: sent == len(ids), within=120)
    got = arrived()
    duplicated = {n for n in got if got.count(n) > 1}
    assert set(got) == set(ids)
    assert duplicated <= in_flight, (len(duplicated), len(in_flight))
