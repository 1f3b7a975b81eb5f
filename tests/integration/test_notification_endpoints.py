"""The notification endpoints and deliveries against the real stack: registered users (the user slice),
the delivery reactor and projection under groups of this run, the local SMTP mailbox and SMS sink.
Saved-search matches are produced to `searches` the way the saved-search matcher does."""

import asyncio
import uuid
from datetime import UTC, datetime, timedelta
from email.utils import parsedate_to_datetime
from zoneinfo import ZoneInfo

import pytest
from aiokafka import AIOKafkaProducer

from schemas.codec import encode
from schemas.envelope import new_event
from schemas.ids import new_id
from schemas.notifications import (
    NOTIFICATION_REQUESTED,
    Content,
    Kind,
    NotificationRequested,
    RequestedChannel,
    listing_alert_id,
    welcome_id,
)
from schemas.topics import DLQ_ERROR_HEADER, NOTIFICATIONS
from tests.support.notifications import (
    SUITE_TOKEN_TTL_SECONDS,
    bearer,
    dead_letters_from_end,
    notification_ends,
    notification_events,
    running_notification_slice,
)
from tests.support.waiting import eventually

CONSISTENCY = "X-Consistency-Token"
ADMIN = bearer(f"user-admin-{uuid.uuid4().hex[:8]}", "ADMIN", ttl=SUITE_TOKEN_TTL_SECONDS)


@pytest.fixture(scope="module")
async def notifications(stack, tmp_path_factory):
    async with running_notification_slice(tmp_path_factory.mktemp("notification-slice"), stack.as_env()) as slice_:
        yield slice_


@pytest.fixture(scope="module")
async def api(notifications):
    async with notifications.client() as client:
        yield client


@pytest.fixture(scope="module")
async def searches_producer(settings):
    producer = AIOKafkaProducer(bootstrap_servers=settings.kafka_bootstrap, acks="all", enable_idempotence=True)
    await producer.start()
    yield producer
    await producer.stop()


async def match(producer, user_id: str, property_id: str, saved_search: str | None = None, **listing) -> None:
    """What the saved-search matcher produces when a new listing matches a saved search."""
    saved_search = saved_search or f"search-{uuid.uuid4().hex}"
    data = {
        "savedSearchId": saved_search,
        "userId": user_id,
        "propertyId": property_id,
        "searchName": "3BHK near Gachibowli",
        "title": listing.get("title", "3BHK Apartment with a lake view"),
        "location": "Gachibowli",
        "price": 9_500_000,
        "bedrooms": 3,
    }
    event = new_event(type="search.saved_match.v1", subject=saved_search, data=data, service="tests", userid=user_id)
    await producer.send_and_wait("searches", encode(event), key=saved_search.encode())


async def inbox(api, user_id, **params):
    answer = await api.get(f"/api/notifications/{user_id}", params=params, headers=bearer(user_id))
    assert answer.status_code == 200, answer.text
    return answer.json()["data"]


async def in_inbox(api, user_id, notification_id):
    return await eventually(
        lambda: inbox(api, user_id), lambda data: notification_id in [i["id"] for i in data["items"]], within=30
    )


async def state(api, notification_id, headers):
    answer = await api.get(f"/api/notifications/{notification_id}/state", headers=headers)
    return answer.json()["data"] if answer.status_code == 200 else None


def channel(state_data, name):
    return next((c for c in (state_data or {}).get("channels", []) if c["channel"] == name), None)


async def until_email_sent(api, notification_id, headers):
    """The email recorded as sent, which the reactor does only after the server accepted it: once it is,
    nothing sends it again, so a count of the mailbox taken after this is final."""
    return await eventually(
        lambda: state(api, notification_id, headers),
        lambda s: (channel(s, "email") or {}).get("state") == "sent",
        within=30,
    )


async def mail_of(notifications, notification_id, within=30):
    found = await eventually(lambda: asyncio.sleep(0, notifications.mail(notification_id)), bool, within=within)
    return found


async def set_preferences(api, user_id, body):
    answer = await api.put("/api/notifications/preferences", json=body, headers=bearer(user_id))
    assert answer.status_code == 200, answer.text
    # Read it back with the token: the reactor reads preferences from the store this waits for.
    token = {CONSISTENCY: answer.headers[CONSISTENCY], **bearer(user_id)}
    back = await api.get(f"/api/notifications/preferences/{user_id}", headers=token)
    assert back.status_code == 200 and "X-Consistency" not in back.headers
    return back.json()["data"]


# ---- email and SMS through the API ----


async def test_a_message_by_email_arrives_labelled_with_its_sender_in_plain_text(notifications, api):
    recipient, registered = await notifications.register()
    sender, written = await notifications.register()
    # Messages from other users come by email only to those who ask for it.
    await set_preferences(api, recipient, {"channels": {"message": {"email": True}}})
    body = {"userId": recipient, "subject": "About your villa in Kokapet", "text": "Is it <b>still</b> available?"}
    answer = await api.post("/api/notifications/email", json=body, headers=bearer(sender))
    assert answer.status_code == 202, answer.text
    data = answer.json()["data"]
    assert data["id"].startswith("notif-") and answer.headers["Location"] == data["stateUrl"]

    [stored] = await mail_of(notifications, data["id"])
    message = stored.message
    assert message["To"] == registered["email"] and stored.delivered_to == [registered["email"]]
    assert message["Subject"] == "About your villa in Kokapet"
    assert message["Message-ID"] == f"<{data['id']}@hyderabad-infra>"
    assert message["From"].addresses[0].display_name == f"{written['name']} via Hyderabad Infra"
    text = stored.part("text/plain")
    assert text.startswith(f"Message from {written['name']} via Hyderabad Infra:")
    assert "Is it <b>still</b> available?" in text and "never asks for your password" in text
    # The HTML part is the text, escaped: what a user writes never becomes markup.
    assert "Is it &lt;b&gt;still&lt;/b&gt; available?" in stored.part("text/html")
    assert "<b>still</b>" not in stored.part("text/html")
    entry = next(i for i in (await in_inbox(api, recipient, data["id"]))["items"] if i["id"] == data["id"])
    assert entry["kind"] == "message" and entry["senderId"] == sender
    assert entry["title"] == "About your villa in Kokapet" and entry["body"] == body["text"]

    # The sender may follow it; the request and outcome name the recipient by id only.
    token = {CONSISTENCY: answer.headers[CONSISTENCY], **bearer(sender)}
    followed = await until_email_sent(api, data["id"], token)
    assert followed["userId"] == recipient and registered["email"] not in str(followed)
    assert channel(followed, "email")["attempts"] == 1


async def test_a_message_is_in_app_only_unless_the_recipient_allows_more(notifications, api):
    recipient, _ = await notifications.register()
    sender, written = await notifications.register()
    mailed = await api.post(
        "/api/notifications/email",
        json={"userId": recipient, "subject": "Your flat", "text": "Call me on my number."},
        headers=bearer(sender),
    )
    texted = await api.post(
        "/api/notifications/sms", json={"userId": recipient, "text": "Call me back."}, headers=bearer(sender)
    )
    assert mailed.status_code == texted.status_code == 202, (mailed.text, texted.text)
    for answer in (mailed, texted):
        notification = answer.json()["data"]["id"]
        await in_inbox(api, recipient, notification)
        token = {CONSISTENCY: answer.headers[CONSISTENCY], **bearer(sender)}
        asked = "email" if answer is mailed else "sms"
        followed = await eventually(
            lambda n=notification, t=token: state(api, n, t), lambda s, c=asked: channel(s, c) is not None
        )
        assert channel(followed, asked)["state"] == "suppressed", followed
        assert channel(followed, "in_app")["state"] == "sent"
        assert notifications.mail(notification) == [] and notifications.texts(notification) == []

    # Allowing SMS from other users: the next one comes by SMS too, labelled.
    await set_preferences(api, recipient, {"channels": {"message": {"sms": True}}})
    answer = await api.post(
        "/api/notifications/sms", json={"userId": recipient, "text": "Visit at 5?"}, headers=bearer(sender)
    )
    [sms] = await eventually(
        lambda: asyncio.sleep(0, notifications.texts(answer.json()["data"]["id"])), bool, within=30
    )
    assert sms["body"] == f"Message from {written['name']} via Hyderabad Infra: Visit at 5?"


async def test_html_and_templates_are_the_platforms_and_messages_are_rate_limited_per_sender(notifications, api):
    recipient, _ = await notifications.register()
    sender, _ = await notifications.register()
    html = {"userId": recipient, "subject": "Verify", "text": "t", "html": '<form action="https://x.in">'}
    answer = await api.post("/api/notifications/email", json=html, headers=bearer(sender))
    assert answer.status_code == 403 and answer.json()["errors"][0]["field"] == "html", answer.text
    for kind in ("direct", "account"):
        answer = await api.post(
            "/api/notifications/email",
            json={"userId": recipient, "kind": kind, "subject": "s", "text": "t"},
            headers=bearer(sender),
        )
        assert answer.status_code == 403 and answer.json()["errors"][0]["field"] == "kind", answer.text
    assert (await api.post("/api/notifications/email", json=html, headers=ADMIN)).status_code == 202

    # The slice allows five messages per sender per hour; the sixth is 429 with the seconds to wait.
    answers = [
        await api.post("/api/notifications/sms", json={"userId": recipient, "text": f"#{n}"}, headers=bearer(sender))
        for n in range(6)
    ]
    assert [a.status_code for a in answers] == [202] * 5 + [429], [a.text for a in answers]
    assert answers[-1].json()["success"] is False and 3500 <= int(answers[-1].headers["Retry-After"]) <= 3600
    # Another sender is not held back by the first.
    other, _ = await notifications.register()
    answer = await api.post("/api/notifications/sms", json={"userId": recipient, "text": "hi"}, headers=bearer(other))
    assert answer.status_code == 202, answer.text


async def test_a_blocked_sender_is_refused_until_unblocked(notifications, api):
    recipient, _ = await notifications.register()
    sender, _ = await notifications.register()
    body = {"userId": recipient, "text": "Still interested?"}
    blocked = await api.put(f"/api/notifications/blocks/{sender}", headers=bearer(recipient))
    assert blocked.status_code == 200 and blocked.json()["data"]["blocked"] is True, blocked.text
    token = {CONSISTENCY: blocked.headers[CONSISTENCY], **bearer(recipient)}
    listed = await api.get("/api/notifications/blocks", headers=token)
    assert listed.status_code == 200 and listed.json()["data"]["blocked"] == [sender]

    answer = await api.post("/api/notifications/sms", json=body, headers=bearer(sender))
    assert answer.status_code == 403 and answer.json()["errors"][0]["field"] == "userId", answer.text
    # Blocks stop messages only: the platform's own still reach the recipient.
    platform = await api.post("/api/notifications/sms", json={"userId": recipient, "text": "Visit ok"}, headers=ADMIN)
    assert platform.status_code == 202

    unblocked = await api.delete(f"/api/notifications/blocks/{sender}", headers=bearer(recipient))
    assert unblocked.status_code == 200 and unblocked.json()["data"]["blocked"] is False
    token = {CONSISTENCY: unblocked.headers[CONSISTENCY], **bearer(recipient)}
    assert (await api.get("/api/notifications/blocks", headers=token)).json()["data"]["blocked"] == []
    answer = await api.post("/api/notifications/sms", json=body, headers=bearer(sender))
    assert answer.status_code == 202, answer.text
    await in_inbox(api, recipient, answer.json()["data"]["id"])

    for method, path, who in [
        ("PUT", f"/api/notifications/blocks/{recipient}", recipient),
        ("PUT", f"/api/notifications/blocks/user-{uuid.uuid4().hex}", recipient),
    ]:
        answer = await api.request(method, path, headers=bearer(who))
        assert answer.status_code in (404, 422), answer.text


async def test_a_message_queued_before_the_block_is_not_delivered(notifications, api):
    recipient, _ = await notifications.register()
    sender, _ = await notifications.register()
    # Quiet hours ending in a few seconds hold the email meanwhile; the recipient blocks the sender.
    now = datetime.now(UTC)
    start, end = now - timedelta(seconds=2), now + timedelta(seconds=8)
    quiet = {"start": start.strftime("%H:%M:%S"), "end": end.strftime("%H:%M:%S")}
    await set_preferences(
        api, recipient, {"channels": {"message": {"email": True}}, "quietHours": quiet, "timeZone": "UTC"}
    )
    answer = await api.post(
        "/api/notifications/email", json={"userId": recipient, "subject": "s", "text": "t"}, headers=bearer(sender)
    )
    notification = answer.json()["data"]["id"]
    token = {CONSISTENCY: answer.headers[CONSISTENCY], **bearer(sender)}
    await eventually(
        lambda: state(api, notification, token), lambda s: (channel(s, "email") or {}).get("state") == "deferred"
    )
    blocked = await api.put(f"/api/notifications/blocks/{sender}", headers=bearer(recipient))
    token_b = {CONSISTENCY: blocked.headers[CONSISTENCY], **bearer(recipient)}
    seen = await api.get("/api/notifications/blocks", headers=token_b)
    assert seen.json()["data"]["blocked"] == [sender] and "X-Consistency" not in seen.headers
    followed = await eventually(
        lambda: state(api, notification, token),
        lambda s: (channel(s, "email") or {}).get("state") == "suppressed",
        within=30,
    )
    assert "does not take messages" in channel(followed, "email")["detail"]
    assert notifications.mail(notification) == []


async def test_an_admin_email_with_a_template_and_html_to_an_outside_address(notifications, api):
    body = {
        "to": f"Partner.{uuid.uuid4().hex[:6]}@Example.in",
        "kind": "listing_alert",
        "template": "listing_alert",
        "variables": {
            "searchName": "Villas in Kokapet",
            "title": "4BHK Villa",
            "location": "Kokapet",
            "price": 32_500_000,
            "bedrooms": 4,
            "propertyId": "prop-123",
        },
    }
    answer = await api.post("/api/notifications/email", json=body, headers=ADMIN)
    assert answer.status_code == 202, answer.text
    [stored] = await mail_of(notifications, answer.json()["data"]["id"])
    assert stored.message["To"] == body["to"].lower()
    assert stored.message["Subject"] == "New match for \u201cVillas in Kokapet\u201d: 4BHK Villa"
    assert "\u20b93,25,00,000" in stored.part("text/plain")
    assert "/properties/prop-123" in stored.part("text/html")


async def test_marketing_email_carries_an_unsubscribe_link(notifications, api):
    body = {
        "to": f"lead.{uuid.uuid4().hex[:6]}@example.in",
        "kind": "marketing",
        "subject": "Diwali offers",
        "text": "New launches in Tellapur.",
    }
    answer = await api.post("/api/notifications/email", json=body, headers=ADMIN)
    assert answer.status_code == 202, answer.text
    [stored] = await mail_of(notifications, answer.json()["data"]["id"])
    assert "unsubscribe" in stored.message["List-Unsubscribe"]
    assert "unsubscribe" in stored.part("text/plain").lower() and "Unsubscribe</a>" in stored.part("text/html")


async def test_an_sms_through_the_api_arrives_at_the_sink(notifications, api):
    recipient, registered = await notifications.register()
    answer = await api.post(
        "/api/notifications/sms", json={"userId": recipient, "text": "Site visit at 11:00 tomorrow"}, headers=ADMIN
    )
    assert answer.status_code == 202, answer.text
    notification = answer.json()["data"]["id"]
    [text] = await eventually(lambda: asyncio.sleep(0, notifications.texts(notification)), bool, within=30)
    assert text["to"] == registered["phone"] and text["body"] == "Site visit at 11:00 tomorrow"

    # An admin's SMS to a registered user's number goes to the account: the event names the user id.
    answer = await api.post(
        "/api/notifications/sms", json={"to": registered["phone"], "text": "Your visit is confirmed"}, headers=ADMIN
    )
    token = {CONSISTENCY: answer.headers[CONSISTENCY], **ADMIN}
    followed = await eventually(lambda: state(api, answer.json()["data"]["id"], token), bool)
    assert followed["userId"] == recipient


async def test_an_idempotent_retry_queues_one_email(notifications, api):
    recipient, _ = await notifications.register()
    key = {"Idempotency-Key": uuid.uuid4().hex, **ADMIN}
    body = {"userId": recipient, "subject": "Once", "text": "Only once."}
    first = await api.post("/api/notifications/email", json=body, headers=key)
    again = await api.post("/api/notifications/email", json=body, headers=key)
    assert first.status_code == again.status_code == 202
    assert first.json()["data"]["id"] == again.json()["data"]["id"]
    await mail_of(notifications, first.json()["data"]["id"])
    await until_email_sent(api, first.json()["data"]["id"], ADMIN)
    assert len(notifications.mail(first.json()["data"]["id"])) == 1


async def test_a_message_that_cannot_be_built_fails_alone_and_the_rest_of_its_connection_goes_out(
    notifications, settings, producer
):
    """Requests produced straight to `notifications`, past the door that refuses such subjects: each
    poison subject fails at once, for good, to the dead letters; the emails around it on the same SMTP
    connections are sent at their first attempt."""
    poison = {"Visit\r\nBcc: everyone@example.in", "Visit\u2028tomorrow", "Visit\ntomorrow"}
    subjects = [s for bad in sorted(poison) for s in (bad, *(f"Site visit {n}" for n in range(4)))]
    ids = [new_id("notif") for _ in subjects]
    before = await notification_ends(settings.kafka_bootstrap)
    dlq = await dead_letters_from_end(settings.kafka_bootstrap)
    try:
        for notification, subject in zip(ids, subjects, strict=True):
            request = NotificationRequested(
                notification_id=notification,
                address=f"buyer.{uuid.uuid4().hex[:8]}@example.in",
                channel=RequestedChannel.EMAIL,
                kind=Kind.DIRECT,
                content=Content(subject=subject, text="See you there."),
            )
            event = new_event(type=NOTIFICATION_REQUESTED, subject=notification, data=request.to_wire(), service="t")
            await producer.send(NOTIFICATIONS.name, encode(event), key=notification.encode())
        await producer.flush()
        bad = {n for n, s in zip(ids, subjects, strict=True) if s in poison}
        good = [n for n in ids if n not in bad]

        letters: dict[bytes, dict[str, bytes]] = {}

        async def dead() -> set[str]:
            batch = await dlq.getmany(timeout_ms=500)
            letters.update({m.key: dict(m.headers) for messages in batch.values() for m in messages})
            return {n for n in bad if n.encode() in letters}

        await eventually(dead, lambda found: found == bad, within=30)
        for notification in bad:
            assert b"cannot be built" in letters[notification.encode()][DLQ_ERROR_HEADER]
            assert notifications.mail(notification) == []
        await eventually(lambda: asyncio.sleep(0, [notifications.mail(n) for n in good]), all, within=30)
        for notification in ids:
            events = await notification_events(settings.kafka_bootstrap, notification, before)
            outcomes = [e for e in events if e["type"] in ("notification.sent.v1", "notification.failed.v1")]
            [outcome] = outcomes
            if notification in bad:
                assert outcome["type"] == "notification.failed.v1" and outcome["data"]["permanent"] is True
            else:
                assert outcome["type"] == "notification.sent.v1"
            assert outcome["data"]["attempts"] == 1, (subjects[ids.index(notification)], outcome)
    finally:
        await dlq.stop()


# ---- welcome, listing alerts, preferences, quiet hours ----


async def test_registration_brings_a_welcome_in_the_inbox_and_by_email(notifications, api):
    user_id, registered = await notifications.register()
    notification = welcome_id(user_id)
    data = await in_inbox(api, user_id, notification)
    entry = next(i for i in data["items"] if i["id"] == notification)
    assert entry["kind"] == "account" and entry["read"] is False and entry["title"] == "Welcome to Hyderabad Infra"
    # The inbox holds nothing personal: the name is only in the email, filled in at sending time.
    assert registered["name"] not in str(entry)
    [stored] = await mail_of(notifications, notification)
    assert stored.message["To"] == registered["email"] and registered["name"] in stored.part("text/plain")


async def test_a_listing_alert_reaches_inbox_and_email_once_per_listing(notifications, api, searches_producer):
    user_id, registered = await notifications.register()
    property_id = f"prop-{uuid.uuid4().hex}"
    # Two of the user's saved searches match the same listing, and one match is redelivered.
    first, second = f"search-{uuid.uuid4().hex}", f"search-{uuid.uuid4().hex}"
    for saved in (first, second, first):
        await match(searches_producer, user_id, property_id, saved)
    notification = listing_alert_id(user_id, property_id)
    data = await in_inbox(api, user_id, notification)
    assert [i["id"] for i in data["items"]].count(notification) == 1
    entry = next(i for i in data["items"] if i["id"] == notification)
    assert entry["kind"] == "listing_alert" and entry["data"]["propertyId"] == property_id
    assert "\u20b995,00,000" in entry["body"]
    [stored] = await mail_of(notifications, notification)
    assert stored.message["To"] == registered["email"]
    await until_email_sent(api, notification, bearer(user_id))
    assert len(notifications.mail(notification)) == 1
    # SMS is off for listing alerts by default: suppressed, and the state says why.
    followed = await eventually(
        lambda: state(api, notification, bearer(user_id)), lambda s: channel(s, "sms") is not None
    )
    assert channel(followed, "sms")["state"] == "suppressed" and "turned off" in channel(followed, "sms")["detail"]
    assert notifications.texts(notification) == []


async def test_email_off_for_listing_alerts_gives_an_in_app_alert_and_no_email(notifications, api, searches_producer):
    user_id, _ = await notifications.register()
    prefs = await set_preferences(api, user_id, {"channels": {"listingAlert": {"email": False}}})
    assert prefs["channels"]["listingAlert"] == {"email": False, "sms": False, "inApp": True}
    property_id = f"prop-{uuid.uuid4().hex}"
    await match(searches_producer, user_id, property_id)
    notification = listing_alert_id(user_id, property_id)
    await in_inbox(api, user_id, notification)
    followed = await eventually(
        lambda: state(api, notification, bearer(user_id)), lambda s: channel(s, "email") is not None
    )
    assert channel(followed, "email")["state"] == "suppressed"
    assert channel(followed, "inApp") is None and channel(followed, "in_app")["state"] == "sent"
    assert notifications.mail(notification) == []


async def test_an_alert_due_in_quiet_hours_is_emailed_when_they_end(notifications, api, searches_producer):
    user_id, registered = await notifications.register()
    zone = ZoneInfo("Asia/Kolkata")
    now = datetime.now(zone)
    start, end = now - timedelta(seconds=2), now + timedelta(seconds=6)
    await set_preferences(
        api,
        user_id,
        {
            "quietHours": {"start": start.strftime("%H:%M:%S"), "end": end.strftime("%H:%M:%S")},
            "timeZone": "Asia/Kolkata",
        },
    )
    property_id = f"prop-{uuid.uuid4().hex}"
    await match(searches_producer, user_id, property_id)
    notification = listing_alert_id(user_id, property_id)

    # In-app is silent and comes at once; the email waits for the end of the quiet hours.
    await in_inbox(api, user_id, notification)
    followed = await eventually(
        lambda: state(api, notification, bearer(user_id)), lambda s: channel(s, "email") is not None
    )
    email_state = channel(followed, "email")
    assert email_state["state"] == "deferred", followed
    until = datetime.fromisoformat(email_state["until"].replace("Z", "+00:00"))
    assert abs((until - end.astimezone(UTC).replace(microsecond=0)).total_seconds()) < 1
    assert datetime.now(UTC) < until and notifications.mail(notification) == []

    [stored] = await mail_of(notifications, notification, within=30)
    assert stored.message["To"] == registered["email"]
    assert parsedate_to_datetime(stored.message["Date"]) >= until - timedelta(seconds=1)


# ---- inbox: list, unread, read, delete ----


async def test_inbox_pages_newest_first_counts_unread_and_marks_read_and_deletes(notifications, api, searches_producer):
    user_id, _ = await notifications.register()
    properties = [f"prop-{uuid.uuid4().hex}" for _ in range(3)]
    for property_id in properties:
        await match(searches_producer, user_id, property_id)
        await asyncio.sleep(0.01)
    expected = [listing_alert_id(user_id, p) for p in reversed(properties)] + [welcome_id(user_id)]
    data = await eventually(lambda: inbox(api, user_id), lambda d: [i["id"] for i in d["items"]] == expected, within=30)
    assert data["unreadCount"] == 4

    first = await inbox(api, user_id, limit=2)
    assert [i["id"] for i in first["items"]] == expected[:2] and first["nextCursor"]
    rest = await inbox(api, user_id, limit=2, cursor=first["nextCursor"])
    assert [i["id"] for i in rest["items"]] == expected[2:] and rest["nextCursor"] is None

    read = await api.put(f"/api/notifications/{expected[0]}/read", headers=bearer(user_id))
    assert read.status_code == 200 and read.json()["data"]["read"] is True
    token = {CONSISTENCY: read.headers[CONSISTENCY], **bearer(user_id)}
    after = await api.get(f"/api/notifications/{user_id}", headers=token)
    assert after.json()["data"]["unreadCount"] == 3
    assert next(i for i in after.json()["data"]["items"] if i["id"] == expected[0])["read"] is True
    unread = await api.get(f"/api/notifications/{user_id}", params={"unread": "true"}, headers=token)
    assert expected[0] not in [i["id"] for i in unread.json()["data"]["items"]]
    # Idempotent: marking it read again is fine and changes nothing.
    again = await api.put(f"/api/notifications/{expected[0]}/read", headers=token)
    assert again.status_code == 200 and again.json()["data"]["readAt"]

    deleted = await api.delete(f"/api/notifications/{expected[1]}", headers=token)
    assert deleted.status_code == 200
    token = {CONSISTENCY: deleted.headers[CONSISTENCY], **bearer(user_id)}
    after = (await api.get(f"/api/notifications/{user_id}", headers=token)).json()["data"]
    assert expected[1] not in [i["id"] for i in after["items"]] and after["unreadCount"] == 2
    gone = await api.delete(f"/api/notifications/{expected[1]}", headers=token)
    assert gone.status_code == 404


async def test_preferences_defaults_partial_update_and_validation(notifications, api):
    user_id, _ = await notifications.register()
    answer = await api.get(f"/api/notifications/preferences/{user_id}", headers=bearer(user_id))
    assert answer.status_code == 200
    defaults = answer.json()["data"]
    assert defaults["isDefault"] is True and defaults["timeZone"] == "Asia/Kolkata" and defaults["quietHours"] is None
    assert defaults["channels"]["marketing"] == {"email": False, "sms": False, "inApp": False}
    assert defaults["channels"]["message"] == {"email": False, "sms": False, "inApp": True}

    prefs = await set_preferences(
        api, user_id, {"channels": {"marketing": {"email": True}}, "quietHours": {"start": "22:00", "end": "07:00"}}
    )
    assert prefs["channels"]["marketing"] == {"email": True, "sms": False, "inApp": False}
    assert prefs["channels"]["listingAlert"] == defaults["channels"]["listingAlert"]
    assert prefs["quietHours"] == {"start": "22:00", "end": "07:00"} and prefs["isDefault"] is False
    prefs = await set_preferences(api, user_id, {"quietHours": None})
    assert prefs["quietHours"] is None and prefs["channels"]["marketing"]["email"] is True
    # An admin may read them.
    assert (await api.get(f"/api/notifications/preferences/{user_id}", headers=ADMIN)).status_code == 200


# ---- errors: 401, 403, 404, 422 ----


async def test_every_endpoint_needs_a_token(api):
    calls = [
        ("POST", "/api/notifications/email", {"userId": "user-x", "subject": "s", "text": "t"}),
        ("POST", "/api/notifications/sms", {"userId": "user-x", "text": "t"}),
        ("GET", "/api/notifications/user-x", None),
        ("PUT", "/api/notifications/notif-x/read", None),
        ("DELETE", "/api/notifications/notif-x", None),
        ("GET", "/api/notifications/preferences/user-x", None),
        ("PUT", "/api/notifications/preferences", {"timeZone": "Asia/Kolkata"}),
        ("GET", "/api/notifications/notif-x/state", None),
        ("PUT", "/api/notifications/blocks/user-x", None),
        ("DELETE", "/api/notifications/blocks/user-x", None),
        ("GET", "/api/notifications/blocks", None),
    ]
    for method, path, body in calls:
        answer = await api.request(method, path, json=body)
        assert answer.status_code == 401, (method, path, answer.text)
        assert answer.json()["success"] is False and answer.headers["WWW-Authenticate"] == "Bearer"


async def test_another_users_inbox_preferences_and_notifications_are_403(notifications, api):
    owner, _ = await notifications.register()
    stranger, _ = await notifications.register()
    notification = welcome_id(owner)
    await in_inbox(api, owner, notification)
    for method, path in [
        ("GET", f"/api/notifications/{owner}"),
        ("GET", f"/api/notifications/preferences/{owner}"),
        ("PUT", f"/api/notifications/{notification}/read"),
        ("DELETE", f"/api/notifications/{notification}"),
        ("GET", f"/api/notifications/{notification}/state"),
    ]:
        answer = await api.request(method, path, headers=bearer(stranger))
        assert answer.status_code == 403, (method, path, answer.text)
        assert answer.json()["success"] is False
    # Even an admin may not mark someone else's notification read: it is its recipient's.
    assert (await api.put(f"/api/notifications/{notification}/read", headers=ADMIN)).status_code == 403
    assert (await api.get(f"/api/notifications/{owner}", headers=ADMIN)).status_code == 200
    # Only admins send system kinds or to addresses.
    answer = await api.post(
        "/api/notifications/email", json={"to": "x@example.in", "subject": "s", "text": "t"}, headers=bearer(stranger)
    )
    assert answer.status_code == 403 and answer.json()["errors"][0]["field"] == "to"
    answer = await api.post(
        "/api/notifications/email",
        json={"userId": owner, "kind": "marketing", "subject": "s", "text": "t"},
        headers=bearer(stranger),
    )
    assert answer.status_code == 403 and answer.json()["errors"][0]["field"] == "kind"
    # X-User-Id must agree with the token.
    answer = await api.get(f"/api/notifications/{owner}", headers={**bearer(owner), "X-User-Id": stranger})
    assert answer.status_code == 403


async def test_unknown_notifications_and_users_are_404(notifications, api):
    user_id, _ = await notifications.register()
    missing = f"notif-{uuid.uuid4().hex}"
    for method, path in [
        ("PUT", f"/api/notifications/{missing}/read"),
        ("DELETE", f"/api/notifications/{missing}"),
        ("GET", f"/api/notifications/{missing}/state"),
    ]:
        answer = await api.request(method, path, headers=bearer(user_id))
        assert answer.status_code == 404, (method, path, answer.text)
    nobody = f"user-{uuid.uuid4().hex}"
    assert (await api.get(f"/api/notifications/{nobody}", headers=ADMIN)).status_code == 404
    assert (await api.get(f"/api/notifications/preferences/{nobody}", headers=ADMIN)).status_code == 404
    answer = await api.post(
        "/api/notifications/email", json={"userId": nobody, "subject": "s", "text": "t"}, headers=bearer(user_id)
    )
    assert answer.status_code == 404 and answer.json()["errors"][0]["field"] == "userId"


@pytest.mark.parametrize(
    ("method", "path", "body", "field"),
    [
        ("POST", "/api/notifications/email", {"userId": "{me}", "text": "no subject"}, "subject"),
        ("POST", "/api/notifications/email", {"userId": "{me}", "subject": "no text"}, "text"),
        ("POST", "/api/notifications/email", {"subject": "to nobody", "text": "t"}, "userId"),
        ("POST", "/api/notifications/email", {"userId": "bob", "subject": "s", "text": "t"}, "userId"),
        ("POST", "/api/notifications/email", {"to": "not-an-email", "subject": "s", "text": "t"}, "to"),
        ("POST", "/api/notifications/email", {"to": "a@example.in", "template": "nope"}, "template"),
        ("POST", "/api/notifications/email", {"to": "a@example.in", "template": "listing_alert"}, "variables.title"),
        ("POST", "/api/notifications/email", {"userId": "{me}", "subject": "s", "text": "t", "cc": "x"}, "cc"),
        ("POST", "/api/notifications/email", {"userId": "{me}", "subject": "Hi\r\nBcc: a@x", "text": "t"}, "subject"),
        ("POST", "/api/notifications/email", {"userId": "{me}", "subject": "Hi\nthere", "text": "t"}, "subject"),
        ("POST", "/api/notifications/email", {"userId": "{me}", "subject": "Hi\u2028there", "text": "t"}, "subject"),
        ("POST", "/api/notifications/email", {"userId": "{me}", "subject": "Hi\u0085there", "text": "t"}, "subject"),
        ("POST", "/api/notifications/email", {"userId": "{me}", "subject": "Hi\u001bthere", "text": "t"}, "subject"),
        ("POST", "/api/notifications/sms", {"userId": "{me}", "text": "x" * 481}, "text"),
        ("POST", "/api/notifications/sms", {"to": "98765 43210", "text": "hi"}, "to"),
        ("POST", "/api/notifications/sms", {"userId": "{me}", "text": "hi", "kind": "spam"}, "kind"),
        ("PUT", "/api/notifications/preferences", {"timeZone": "Mars/Olympus"}, "timeZone"),
        (
            "PUT",
            "/api/notifications/preferences",
            {"quietHours": {"start": "25:00", "end": "07:00"}},
            "quietHours.start",
        ),
        ("PUT", "/api/notifications/preferences", {"quietHours": {"start": "07:00", "end": "07:00"}}, "quietHours.end"),
        (
            "PUT",
            "/api/notifications/preferences",
            {"channels": {"listingAlert": {"email": "maybe"}}},
            "channels.listingAlert.email",
        ),
        ("PUT", "/api/notifications/preferences", {"channels": {"pigeon": {"email": True}}}, "channels.pigeon"),
        ("PUT", "/api/notifications/preferences", {}, "body"),
        ("GET", "/api/notifications/{me}?limit=0", None, "limit"),
        ("GET", "/api/notifications/not-a-user", None, "userId"),
        ("PUT", "/api/notifications/not-a-notification/read", None, "notificationId"),
    ],
)
async def test_invalid_input_is_422_naming_the_field(notifications, api, method, path, body, field):
    me = f"user-{uuid.uuid4().hex[:12]}"
    if body is not None:
        body = {k: (me if v == "{me}" else v) for k, v in body.items()}
    headers = ADMIN if body and "to" in body else bearer(me)
    answer = await api.request(method, path.replace("{me}", me), json=body, headers=headers)
    assert answer.status_code == 422, answer.text
    assert field in [error["field"] for error in answer.json()["errors"]], answer.text


# ---- erasure ----


async def test_closing_the_account_erases_inbox_preferences_and_pending_deliveries(notifications, api, pg):
    user_id, _ = await notifications.register()
    await in_inbox(api, user_id, welcome_id(user_id))
    await set_preferences(api, user_id, {"quietHours": {"start": "00:00", "end": "23:59:59"}, "timeZone": "UTC"})
    # A direct email now waits for the end of the (day-long) quiet hours: pending in the schedule.
    answer = await api.post(
        "/api/notifications/email", json={"userId": user_id, "subject": "Later", "text": "t"}, headers=ADMIN
    )
    pending_id = answer.json()["data"]["id"]
    await eventually(
        lambda: state(api, pending_id, ADMIN), lambda s: (channel(s, "email") or {}).get("state") == "deferred"
    )
    # A message they wrote to someone else, in that person's inbox.
    correspondent, _ = await notifications.register()
    wrote = await api.post(
        "/api/notifications/sms",
        json={"userId": correspondent, "text": "My flat's keys are with me"},
        headers=bearer(user_id),
    )
    assert wrote.status_code == 202, wrote.text
    await in_inbox(api, correspondent, wrote.json()["data"]["id"])

    async with notifications.users() as users:
        closed = await users.delete(f"/api/users/{user_id}", headers=bearer(user_id))
        assert closed.status_code == 200, closed.text

    async def held() -> tuple[int, int, int]:
        counts = []
        for sql in (
            "SELECT count(*) FROM notifications WHERE user_id = %s",
            "SELECT count(*) FROM notification_preferences WHERE user_id = %s",
            "SELECT count(*) FROM notification_deliveries WHERE user_id = %s",
        ):
            cursor = await pg.execute(sql, (user_id,))
            counts.append((await cursor.fetchone())[0])
        return tuple(counts)

    await eventually(held, lambda counts: counts == (0, 0, 0), within=30)
    assert notifications.mail(pending_id) == []
    # The message stays in its recipient's inbox, without its words.
    [kept] = [i for i in (await inbox(api, correspondent))["items"] if i["id"] == wrote.json()["data"]["id"]]
    assert kept["title"].startswith("A message that can no longer be read") and kept["body"] == ""
