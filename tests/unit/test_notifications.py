"""Pure parts of notifications: quiet hours, preferences, the delivery decision, backoff, templates, the
email message, triggers, intake and the projection's changes. No Kafka, no database."""

from datetime import UTC, datetime, timedelta
from email import policy
from email.parser import BytesParser

import aiosmtplib
import pytest
from pydantic import ValidationError

from config import Settings
from schemas.codec import encode
from schemas.envelope import new_event
from schemas.notifications import (
    DEFAULT_PREFERENCES,
    Channel,
    ChannelChoice,
    Content,
    Kind,
    NotificationRequested,
    Preferences,
    QuietHours,
    RequestedChannel,
    header_problem,
    in_app,
    indian_rupees,
    listing_alert_id,
    open_message,
    quiet_until,
    render,
    seal_message,
    sms_text,
    welcome_id,
)
from schemas.personal import UnreadablePersonalData, new_personal_key
from streams.notifications.delivery import DeliveryReactor
from streams.notifications.policy import (
    Defer,
    Fail,
    NotYet,
    Recipient,
    SendNow,
    Suppress,
    channels_of,
    decide,
    plan_intake,
    retry_delay,
    scrub,
)
from streams.notifications.projection import (
    BlockSet,
    ChannelState,
    EnteredInbox,
    Erased,
    Recorded,
    plan_notifications,
)
from streams.notifications.reports import FAILED, SENT, Outcome, dead_letter, outcome_event
from streams.notifications.senders import (
    Email,
    PermanentSendError,
    TransientSendError,
    _classify,
    build_message,
)
from streams.notifications.store import Claimed
from streams.notifications.triggers import plan_triggers
from streams.positions import RawRecord, SourcePosition

KOLKATA = "Asia/Kolkata"


def prefs(
    start: str | None = None, end: str | None = None, zone: str = KOLKATA, **channels: ChannelChoice
) -> Preferences:
    quiet = QuietHours(start=start, end=end) if start and end else None
    chosen = DEFAULT_PREFERENCES.channels.model_copy(update=channels)
    return Preferences(channels=chosen, quiet_hours=quiet, time_zone=zone)


def at_ist(hour: int, minute: int = 0, second: int = 0) -> datetime:
    # 2024-01-15 in Hyderabad (UTC+05:30)
    return datetime(2024, 1, 15, hour, minute, second, tzinfo=UTC) - timedelta(hours=5, minutes=30)


def request(kind: Kind = Kind.LISTING_ALERT, user_id: str | None = "user-1", **extra) -> NotificationRequested:
    return NotificationRequested(
        notification_id="notif-1",
        user_id=user_id,
        address=extra.pop("address", None),
        channel=extra.pop("channel", RequestedChannel.PREFERRED),
        kind=kind,
        content=Content(subject="s", text="t"),
        **extra,
    )


RECIPIENT = Recipient("user-1", "priya@example.in", "+919876543210", "Priya", deleted=False)


# ---- quiet hours ----


def test_quiet_hours_across_midnight_end_the_next_morning_in_the_users_zone():
    p = prefs("22:00", "07:00")
    assert quiet_until(p, at_ist(23, 30)) == datetime(2024, 1, 16, 1, 30, tzinfo=UTC)  # 07:00 IST next day
    assert quiet_until(p, at_ist(3)) == datetime(2024, 1, 15, 1, 30, tzinfo=UTC)
    assert quiet_until(p, at_ist(7)) is None
    assert quiet_until(p, at_ist(12)) is None
    assert quiet_until(p, at_ist(21, 59, 59)) is None


def test_quiet_hours_within_a_day_and_to_the_second():
    p = prefs("13:00:05", "13:00:10")
    assert quiet_until(p, at_ist(13, 0, 5)) == at_ist(13, 0, 10)
    assert quiet_until(p, at_ist(13, 0, 4)) is None
    assert quiet_until(p, at_ist(13, 0, 10)) is None
    assert quiet_until(prefs(), at_ist(3)) is None


def test_preferences_refuse_bad_clocks_zones_and_empty_windows():
    with pytest.raises(ValidationError):
        QuietHours(start="24:00", end="07:00")
    with pytest.raises(ValidationError):
        QuietHours(start="07:00", end="07:00")
    with pytest.raises(ValidationError):
        prefs(zone="IST")


# ---- the delivery decision ----


def test_preferences_suppress_a_channel_turned_off_but_never_a_direct_message():
    off = prefs(listing_alert=ChannelChoice(email=False, sms=False, in_app=True))
    now = at_ist(12)
    assert isinstance(decide(request(), Channel.EMAIL, RECIPIENT, off, now), Suppress)
    assert isinstance(decide(request(), Channel.IN_APP, RECIPIENT, off, now), SendNow)
    direct = request(Kind.DIRECT, channel=RequestedChannel.EMAIL)
    assert isinstance(decide(direct, Channel.EMAIL, RECIPIENT, off, now), SendNow)
    assert isinstance(decide(request(Kind.MARKETING), Channel.EMAIL, RECIPIENT, DEFAULT_PREFERENCES, now), Suppress)


def test_quiet_hours_defer_email_and_sms_not_in_app_nor_account_messages():
    quiet = prefs("22:00", "07:00")
    night = at_ist(2)
    decision = decide(request(), Channel.EMAIL, RECIPIENT, quiet, night)
    assert decision == Defer(at_ist(7))
    assert isinstance(decide(request(), Channel.IN_APP, RECIPIENT, quiet, night), SendNow)
    assert isinstance(decide(request(Kind.ACCOUNT), Channel.EMAIL, RECIPIENT, quiet, night), SendNow)


def test_unknown_closed_and_addressless_recipients():
    now = at_ist(12)
    assert isinstance(decide(request(), Channel.EMAIL, None, DEFAULT_PREFERENCES, now), NotYet)
    closed = Recipient("user-1", None, None, None, deleted=True)
    assert isinstance(decide(request(), Channel.EMAIL, closed, DEFAULT_PREFERENCES, now), Suppress)
    no_phone = Recipient("user-1", "a@b.in", None, "A", deleted=False)
    sms = request(Kind.DIRECT, channel=RequestedChannel.SMS)
    assert isinstance(decide(sms, Channel.SMS, no_phone, DEFAULT_PREFERENCES, now), Fail)
    outside = request(Kind.DIRECT, user_id=None, address="x@example.in", channel=RequestedChannel.EMAIL)
    assert isinstance(decide(outside, Channel.EMAIL, None, DEFAULT_PREFERENCES, now), SendNow)


def test_a_request_too_old_to_send_expires():
    decision = decide(
        request(),
        Channel.EMAIL,
        RECIPIENT,
        DEFAULT_PREFERENCES,
        at_ist(12),
        at_ist(12) - timedelta(days=4),
        timedelta(days=3),
    )
    assert isinstance(decision, Suppress) and "expired" in decision.reason


def test_backoff_doubles_to_its_cap_with_a_little_jitter():
    delays = [retry_delay(n, 1.0, 60.0, "notif-1").total_seconds() for n in range(1, 10)]
    assert 0.9 <= delays[0] <= 1.1 and 1.8 <= delays[1] <= 2.2 and 3.6 <= delays[2] <= 4.4
    assert max(delays) <= 60.0 and delays[-1] >= 54


def test_errors_leaving_the_reactor_carry_no_address():
    error = "550 5.1.1 <Priya@Example.in>: Recipient address rejected"
    assert "priya" not in scrub(error, "priya@example.in").lower()


# ---- requests ----


def test_a_request_names_exactly_one_recipient():
    with pytest.raises(ValidationError):
        request(user_id=None)
    with pytest.raises(ValidationError):
        request(address="a@b.in")
    with pytest.raises(ValidationError):
        request(user_id=None, address="a@b.in", channel=RequestedChannel.IN_APP)


def record(envelope, topic="notifications", offset=0) -> RawRecord:
    return RawRecord(envelope.subject.encode(), encode(envelope), SourcePosition(topic, 0, offset))


def requested_event(req: NotificationRequested):
    return new_event(type="notification.requested.v1", subject=req.notification_id, data=req.to_wire(), service="t")


def test_intake_expands_preferred_into_every_channel_and_dead_letters_poison():
    good = record(requested_event(request()))
    explicit = record(requested_event(request(Kind.DIRECT, channel=RequestedChannel.SMS)), offset=1)
    poison = RawRecord(b"k", b"{not json", SourcePosition("notifications", 0, 2))
    wrong = record(new_event(type="notification.requested.v1", subject="notif-1", data={"n": 1}, service="t"), offset=3)
    other = record(
        new_event(
            type="notification.read.v1",
            subject="notif-1",
            data={"notificationId": "notif-1", "userId": "u"},
            service="t",
        ),
        offset=4,
    )
    plan = plan_intake([good, explicit, poison, wrong, other])
    assert [(d.notification_id, d.channel) for d in plan.deliveries] == [
        ("notif-1", Channel.IN_APP),
        ("notif-1", Channel.EMAIL),
        ("notif-1", Channel.SMS),
        ("notif-1", Channel.SMS),
    ]
    assert [letter.position.offset for letter in plan.dead_letters] == [2, 3]


# ---- templates and the message ----


def test_rupees_are_grouped_the_indian_way():
    assert [indian_rupees(n) for n in (999, 1000, 950000, 9500000, 325000000)] == [
        "999",
        "1,000",
        "9,50,000",
        "95,00,000",
        "32,50,00,000",
    ]


def test_templates_fill_the_name_only_in_the_email_and_escape_html():
    content = Content(
        template="listing_alert",
        variables={
            "searchName": "<b>Villas</b>",
            "title": "Villa",
            "location": "Kokapet",
            "price": 32_500_000,
            "bedrooms": 4,
            "propertyId": "prop-1",
        },
    )
    rendered = render(content, "Priya", "https://example.in/properties/prop-1")
    assert "Hello Priya" in rendered.text and "\u20b93,25,00,000" in rendered.text
    assert "&lt;b&gt;Villas&lt;/b&gt;" in rendered.html and "<b>Villas</b>" not in rendered.html
    title, body = in_app(content)
    assert "Priya" not in title + body and "Kokapet" in body


def test_the_message_has_both_parts_a_stable_id_and_for_marketing_an_unsubscribe_link():
    email = Email(
        "notif-9",
        "priya@example.in",
        render(Content(subject="Offers", text="Hello\n\nNew launches")),
        marketing=True,
        unsubscribe_url="https://example.in/unsubscribe",
    )
    raw = bytes(build_message(email, "Hyderabad Infra <no-reply@example.in>"))
    message = BytesParser(policy=policy.default).parsebytes(raw)
    assert message["Message-ID"] == "<notif-9@hyderabad-infra>" and message["To"] == "priya@example.in"
    assert message["List-Unsubscribe"] == "<https://example.in/unsubscribe>"
    assert "New launches" in message.get_body(("plain",)).get_content()
    assert "<p>New launches</p>" in message.get_body(("html",)).get_content()


def test_smtp_replies_are_sorted_into_permanent_and_transient():
    refused = aiosmtplib.SMTPRecipientsRefused([aiosmtplib.SMTPRecipientRefused(550, "no mailbox", "a@b.in")])
    deferred = aiosmtplib.SMTPRecipientsRefused([aiosmtplib.SMTPRecipientRefused(451, "later", "a@b.in")])
    assert isinstance(_classify(refused), PermanentSendError)
    assert isinstance(_classify(deferred), TransientSendError)
    assert isinstance(_classify(aiosmtplib.SMTPConnectError("refused")), TransientSendError)
    assert isinstance(_classify(aiosmtplib.SMTPDataError(554, "rejected")), PermanentSendError)


# ---- retries run out: failed, dead-lettered ----


def claimed(attempts: int) -> Claimed:
    return Claimed("notif-1", "email", "user-1", "direct", attempts, None, b"notif-1", b"{}", "notifications", 3, 42)


def test_the_last_transient_failure_fails_the_channel_and_dead_letters_the_request():
    settings = Settings(
        notification_max_attempts=3, notification_retry_base_seconds=1, notification_retry_max_seconds=8
    )
    reactor = DeliveryReactor(settings, None, None, None, None, None)  # type: ignore[arg-type]
    now = at_ist(12)
    retry = reactor._retry(claimed(1), TransientSendError("451 later"), now, None)
    assert (retry.state, retry.attempts, retry.report) == ("pending", 2, None) and retry.due_at > now
    slow = reactor._retry(claimed(1), TransientSendError("429", retry_after=5), now, None)
    assert slow.due_at - now >= timedelta(seconds=5)
    last = reactor._retry(claimed(2), TransientSendError("451 <priya@example.in> later"), now, RECIPIENT)
    assert (last.state, last.attempts, last.report, last.permanent) == ("failed", 3, FAILED, False)
    assert "priya@example.in" not in last.error

    outcome = Outcome(
        "notif-1",
        "email",
        "user-1",
        FAILED,
        3,
        last.error,
        False,
        None,
        None,
        b"notif-1",
        b"{}",
        SourcePosition("notifications", 3, 42),
    )
    letter = dead_letter(outcome)
    assert (letter.key, letter.value, letter.position.offset) == (b"notif-1", b"{}", 42)
    assert "gave up after 3 attempts" in letter.error and "451" in letter.error
    event = outcome_event(outcome, None, now)
    assert event.type == "notification.failed.v1" and event.data["attempts"] == 3
    again = outcome_event(outcome, None, now + timedelta(seconds=1))
    assert again.id == event.id  # reported twice after a crash: the same event
    sent = outcome_event(Outcome(**{**outcome.__dict__, "report": SENT}), None, now)
    assert sent.type == "notification.sent.v1" and sent.id != event.id


# ---- triggers ----


def match_event(user: str, prop: str, search: str, time: datetime | None = None):
    data = {
        "savedSearchId": search,
        "userId": user,
        "propertyId": prop,
        "searchName": "3BHK",
        "title": "T",
        "location": "Gachibowli",
        "price": 100,
        "bedrooms": 3,
    }
    return new_event(type="search.saved_match.v1", subject=search, data=data, service="t", userid=user, time=time)


def test_matches_become_one_alert_per_listing_and_user_and_old_triggers_are_skipped():
    now = datetime.now(UTC)
    records = [
        record(match_event("user-1", "prop-1", "search-a"), "searches", 0),
        record(match_event("user-1", "prop-1", "search-b"), "searches", 1),
        record(match_event("user-1", "prop-2", "search-a", now - timedelta(days=3)), "searches", 2),
        record(new_event(type="user.registered.v1", subject="user-7", data={}, service="t"), "users", 0),
        record(new_event(type="user.deleted.v1", subject="user-8", data={}, service="t"), "users", 1),
        record(
            new_event(type="search.saved_match.v1", subject="search-x", data={"userId": 1}, service="t"), "searches", 3
        ),
    ]
    plan = plan_triggers(records, now, timedelta(days=1))
    ids = [e.subject for e in plan.requests]
    assert ids == [listing_alert_id("user-1", "prop-1"), listing_alert_id("user-1", "prop-1"), welcome_id("user-7")]
    assert plan.requests[0].id == plan.requests[1].id  # one event, however many searches matched
    assert plan.erased_users == ["user-8"] and plan.skipped == 1
    assert [letter.position.offset for letter in plan.dead_letters] == [3]


# ---- projection ----


def test_projection_records_requests_inbox_entries_states_and_erasures():
    req = request()
    sent = new_event(
        type="notification.sent.v1",
        subject="notif-1",
        service="t",
        data={"notificationId": "notif-1", "userId": "user-1", "channel": "in_app", "attempts": 1},
    )
    erased = new_event(type="user.deleted.v1", subject="user-1", data={}, service="t")
    plan = plan_notifications([record(requested_event(req)), record(sent, offset=1), record(erased, "users", 2)])
    kinds = [type(c) for c in plan.changes]
    assert kinds == [Recorded, ChannelState, EnteredInbox, Erased] and not plan.dead_letters
    assert plan.changes[1].state == "sent" and plan.changes[1].offset == 1


# ---- messages between users ----

SENDER = ("user-2", new_personal_key())
ADDRESSEE = ("user-1", new_personal_key())


def a_message(channel: RequestedChannel = RequestedChannel.EMAIL) -> NotificationRequested:
    content = seal_message(Content(subject="Your villa", text="Still available?"), SENDER, ADDRESSEE)
    return NotificationRequested(
        notification_id="notif-m",
        user_id="user-1",
        channel=channel,
        kind=Kind.MESSAGE,
        content=content,
        requested_by="user-2",
    )


def test_a_message_opens_only_with_both_keys_and_never_travels_in_the_clear():
    message = a_message()
    assert "Still available" not in str(message.to_wire()) and "Your villa" not in str(message.to_wire())
    opened = open_message(message.content, SENDER, ADDRESSEE)
    assert (opened.subject, opened.text) == ("Your villa", "Still available?")
    for sender, recipient in [(("user-2", new_personal_key()), ADDRESSEE), (SENDER, ("user-1", new_personal_key()))]:
        with pytest.raises(UnreadablePersonalData):
            open_message(message.content, sender, recipient)
    with pytest.raises(ValidationError, match="sealed"):
        NotificationRequested(
            notification_id="notif-m",
            user_id="user-1",
            channel=RequestedChannel.EMAIL,
            kind=Kind.MESSAGE,
            content=Content(text="in the clear"),
            requested_by="user-2",
        )


def test_a_message_tries_the_inbox_follows_preferences_and_stops_at_a_block_or_a_closed_sender():
    message = a_message(RequestedChannel.SMS)
    assert channels_of(message) == (Channel.IN_APP, Channel.SMS)
    writer = Recipient("user-2", None, None, "Ravi", deleted=False)
    now = at_ist(12)
    assert isinstance(decide(message, Channel.IN_APP, RECIPIENT, prefs(), now, sender=writer), SendNow)
    assert isinstance(decide(message, Channel.SMS, RECIPIENT, prefs(), now, sender=writer), Suppress)
    allowed = prefs(message=ChannelChoice(email=False, sms=True, in_app=True))
    assert isinstance(decide(message, Channel.SMS, RECIPIENT, allowed, now, sender=writer), SendNow)
    blocked = decide(message, Channel.IN_APP, RECIPIENT, prefs(), now, sender=writer, blocked=True)
    assert isinstance(blocked, Suppress) and "does not take messages" in blocked.reason
    closed = Recipient("user-2", None, None, None, deleted=True)
    assert isinstance(decide(message, Channel.IN_APP, RECIPIENT, prefs(), now, sender=closed), Suppress)
    assert isinstance(decide(message, Channel.IN_APP, RECIPIENT, prefs(), now, sender=None), NotYet)


def test_a_message_is_labelled_plain_text_in_every_copy():
    content = Content(subject="Hi", text="<a href='x'>pay here</a>")
    rendered = render(content, "Priya", None, "Ravi Kumar")
    assert rendered.text.startswith("Message from Ravi Kumar via Hyderabad Infra:")
    assert "<a href" not in rendered.html and "&lt;a href=" in rendered.html
    assert sms_text(Content(text="Call me"), "Ravi Kumar") == "Message from Ravi Kumar via Hyderabad Infra: Call me"
    email = Email("notif-m", "priya@example.in", rendered, sender_name="Ravi Kumar")
    raw = bytes(build_message(email, "Hyderabad Infra <no-reply@example.in>"))
    sent = BytesParser(policy=policy.default).parsebytes(raw)
    assert sent["From"].addresses[0].display_name == "Ravi Kumar via Hyderabad Infra"
    assert sent["From"].addresses[0].addr_spec == "no-reply@example.in"


def test_a_subject_that_is_not_one_line_cannot_be_built_and_is_refused_at_the_door():
    for subject in ("a\r\nBcc: x@y.in", "a\nb", "a\u2028b", "a\u2029b", "a\u0085b", "a\x1bb"):
        assert header_problem(subject) is not None, repr(subject)
    assert header_problem("Site visit \u2014 Kokapet \u20b995L") is None


def test_projection_sets_blocks_keyed_by_the_user_who_blocks():
    blocked = new_event(
        type="notification.sender_blocked.v1",
        subject="user-1",
        service="t",
        data={"userId": "user-1", "senderId": "user-2"},
    )
    unblocked = new_event(
        type="notification.sender_unblocked.v1",
        subject="user-1",
        service="t",
        data={"userId": "user-1", "senderId": "user-2"},
    )
    wrong_key = new_event(
        type="notification.sender_blocked.v1",
        subject="user-2",
        service="t",
        data={"userId": "user-1", "senderId": "user-2"},
    )
    plan = plan_notifications([record(blocked), record(unblocked, offset=1), record(wrong_key, offset=2)])
    assert [(c.blocked, c.version) for c in plan.changes if isinstance(c, BlockSet)] == [(True, 0), (False, 1)]
    assert [letter.position.offset for letter in plan.dead_letters] == [2]
    message = a_message()
    [recorded] = plan_notifications([record(requested_event(message), offset=3)]).changes
    assert isinstance(recorded, Recorded) and recorded.message == message.content and recorded.body == ""
