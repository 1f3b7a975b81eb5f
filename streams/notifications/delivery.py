"""The delivery reactor: takes requests into its durable schedule, and dispatches what is due.

    notifications ─ intake ─> notification_deliveries (one row per channel; a redelivery inserts nothing)
                                   │  claim due rows (SKIP LOCKED, lease)
                                   v
             preferences + quiet hours (policy.decide) ─> SMTP / SMS gateway / in-app
                                   │  store the outcome first, then report it
                                   v
             notifications: notification.sent / failed / deferred / suppressed;  dead-letters: gave up

Transient failures are retried with backoff (the row goes back to `pending` with a later `due_at`);
after the last attempt, or on a permanent refusal, the channel fails and its request is dead-lettered
with the error. Nothing here blocks a Kafka partition: a channel waiting for its SMTP server or for
the end of quiet hours waits in Postgres.
"""

import asyncio
import logging
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from config import Settings
from schemas.codec import EventDecodeError, decode, encode
from schemas.envelope import Envelope
from schemas.notifications import (
    DEFAULT_PREFERENCES,
    Channel,
    Kind,
    NotificationRequested,
    Preferences,
    names_a_sealed_search,
    open_message,
    open_search_name,
    render,
    sms_text,
)
from schemas.personal import UnreadablePersonalData
from schemas.registry import EVENTS
from schemas.topics import NOTIFICATIONS
from streams import metrics
from streams.batches import TRANSIENT, until_done
from streams.dead_letters import DeadLetter
from streams.notifications.policy import (
    Defer,
    Fail,
    NotYet,
    Recipient,
    SendNow,
    Suppress,
    decide,
    plan_intake,
    retry_delay,
    scrub,
)
from streams.notifications.reports import DEFERRED, FAILED, SENT, SUPPRESSED, Outcome, dead_letter, outcome_event
from streams.notifications.senders import (
    Email,
    PermanentSendError,
    SendError,
    Sms,
    SmsGateway,
    SmtpSender,
    TransientSendError,
)
from streams.notifications.store import Claimed, DeliveryStore, Finished, Unreported
from streams.notifications.triggers import plan_triggers
from streams.positions import RawRecord, SourcePosition

log = logging.getLogger("streams.notifications.delivery")

# How often emails the SMTP server accepted are stored as sent while their batch is still going out.
SENT_FLUSH_SECONDS = 0.05

# (topic, key, value) -> waits for the broker's ack
Produce = Callable[[str, bytes, bytes], Awaitable[None]]
DeadLetters = Callable[[Sequence[DeadLetter]], Awaitable[None]]


def utc_now() -> datetime:
    return datetime.now(UTC)


@dataclass(frozen=True)
class _Work:
    row: Claimed
    request: NotificationRequested | None
    cause: Envelope | None
    error: str | None = None


class DeliveryReactor:
    def __init__(
        self,
        settings: Settings,
        store: DeliveryStore,
        smtp: SmtpSender,
        sms: SmsGateway,
        produce: Produce,
        dead_letters: DeadLetters,
        clock: Callable[[], datetime] = utc_now,
    ) -> None:
        self._settings = settings
        self._store = store
        self._smtp = smtp
        self._sms = sms
        self._produce = produce
        self._dead_letters = dead_letters
        self._clock = clock
        self.wake = asyncio.Event()

    # ---- intake and triggers (called by the agents) ----

    async def take_requests(self, records: Sequence[RawRecord]) -> None:
        plan = plan_intake(records)
        await self._dead_letters(plan.dead_letters)
        await until_done("postgres intake", lambda: self._store.intake(plan.deliveries))
        if plan.deliveries:
            self.wake.set()

    async def take_triggers(self, records: Sequence[RawRecord]) -> None:
        max_age = timedelta(seconds=self._settings.notification_trigger_max_age_seconds)
        plan = plan_triggers(records, self._clock(), max_age)
        await self._dead_letters(plan.dead_letters)
        if plan.skipped:
            log.info("skipped %d triggers older than %s", plan.skipped, max_age)
        await asyncio.gather(*(self._produce(NOTIFICATIONS.name, e.subject.encode(), encode(e)) for e in plan.requests))
        await until_done("postgres erase", lambda: self._store.erase_users(plan.erased_users))

    # ---- dispatch (the dispatcher task) ----

    async def run_dispatcher(self) -> None:
        s = self._settings
        last_sweep = 0.0
        loop = asyncio.get_running_loop()
        while True:
            self.wake.clear()
            try:
                handled = await self.dispatch_round()
                if loop.time() - last_sweep > 5:
                    last_sweep = loop.time()
                    await self.report_leftovers()
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("dispatch round failed; trying again shortly")
                handled = 0
                await asyncio.sleep(1)
            if handled >= s.notification_dispatch_batch:
                continue
            try:
                await asyncio.wait_for(self.wake.wait(), await self._idle_wait())
            except TimeoutError:
                pass

    async def _idle_wait(self) -> float:
        """How long to sleep unless woken: until the next delivery falls due or a lease runs out, within
        the poll and idle bounds. Polling every 0.25 s instead cost an idle reactor ~5 % of a core."""
        s = self._settings
        try:
            due = await self._store.next_due()
        except TRANSIENT:
            return s.notification_poll_seconds
        if due is None:
            return s.notification_idle_seconds
        return min(max(due, s.notification_poll_seconds), s.notification_idle_seconds)

    async def dispatch_round(self) -> int:
        s = self._settings
        claimed = await until_done(
            "postgres claim", lambda: self._store.claim(s.notification_dispatch_batch, s.notification_lease_seconds)
        )
        if not claimed:
            return 0
        work = [self._read(row) for row in claimed]
        user_ids = sorted({w.request.user_id for w in work if w.request and w.request.user_id})
        messages = [w.request for w in work if w.request and w.request.kind == Kind.MESSAGE]
        pairs = sorted({(m.user_id or "", m.requested_by or "") for m in messages})
        people = sorted({*user_ids, *(p[1] for p in pairs)})
        recipients = await until_done("postgres users", lambda: self._store.recipients(people))
        preferences = await until_done("postgres preferences", lambda: self._store.preferences(user_ids))
        # Keys open users' messages, and the saved-search names of listing alerts (`open_search_name`).
        alerted = {w.request.user_id for w in work if w.request and names_a_sealed_search(w.request.content)}
        holders = sorted({u for p in pairs for u in p} | {u for u in alerted if u})
        context = _Messages(
            keys=await until_done("postgres keys", lambda: self._store.keys(holders)),
            blocked=await until_done("postgres blocks", lambda: self._store.blocked(pairs)),
        )
        # Sending is shielded: once a message may have left, its outcome must be stored even if the
        # worker is being stopped, or it would be sent again after the lease.
        finished = await asyncio.shield(self._deliver(work, recipients, preferences, context))
        await until_done("postgres finish", lambda: self._store.finish(finished))
        causes = {w.row.notification_id: w.cause for w in work}
        rows = {(w.row.notification_id, w.row.channel): w.row for w in work}
        await self._report([_outcome(rows[(f.notification_id, f.channel)], f) for f in finished if f.report], causes)
        return len(claimed)

    def _read(self, row: Claimed) -> _Work:
        try:
            cause = decode(row.request)
            request = EVENTS.read(cause).data
            assert isinstance(request, NotificationRequested)
            return _Work(row, request, cause)
        except (EventDecodeError, AssertionError) as exc:
            return _Work(row, None, None, f"unreadable request: {exc}")

    async def _deliver(
        self,
        work: Sequence[_Work],
        recipients: dict[str, Recipient],
        preferences: dict[str, Preferences],
        messages: "_Messages",
    ) -> list[Finished]:
        now = self._clock()
        finished: list[Finished] = []
        emails: list[tuple[_Work, Email, Recipient | None]] = []
        texts: list[tuple[_Work, Sms, Recipient | None]] = []
        for item in work:
            row, request = item.row, item.request
            if request is None:
                finished.append(_failed(row, row.attempts, item.error or "unreadable request", permanent=True))
                continue
            channel = Channel(row.channel)
            recipient = recipients.get(request.user_id) if request.user_id else None
            prefs = preferences.get(request.user_id or "", DEFAULT_PREFERENCES)
            expiry = timedelta(seconds=self._settings.notification_expiry_seconds)
            requested_at = item.cause.time if item.cause else None
            sender = recipients.get(request.requested_by) if request.requested_by else None
            blocked = (request.user_id, request.requested_by) in messages.blocked
            decision = decide(request, channel, recipient, prefs, now, requested_at, expiry, sender, blocked)
            if isinstance(decision, SendNow) and names_a_sealed_search(request.content):
                key = messages.keys.get(request.user_id or "")
                request = request.model_copy(
                    update={"content": open_search_name(request.content, request.user_id, key)}
                )
            if isinstance(decision, SendNow) and request.kind == Kind.MESSAGE:
                opened = messages.opened(request)
                if opened is None:
                    decision = Suppress("the message can no longer be read: an account was closed")
                else:
                    request = opened
            if isinstance(decision, Suppress):
                finished.append(
                    Finished(
                        row.notification_id, row.channel, "suppressed", row.attempts, SUPPRESSED, error=decision.reason
                    )
                )
            elif isinstance(decision, Defer):
                report = DEFERRED if row.deferred_until != decision.until else None
                finished.append(
                    Finished(
                        row.notification_id,
                        row.channel,
                        "pending",
                        row.attempts,
                        report,
                        due_at=decision.until,
                        deferred_until=decision.until,
                    )
                )
            elif isinstance(decision, Fail):
                finished.append(_failed(row, row.attempts, decision.reason, permanent=True))
            elif isinstance(decision, NotYet):
                finished.append(self._retry(row, TransientSendError(decision.reason), now, recipient))
            elif isinstance(decision, SendNow):
                if channel == Channel.IN_APP:
                    finished.append(Finished(row.notification_id, row.channel, "sent", row.attempts + 1, SENT))
                elif channel == Channel.EMAIL:
                    emails.append((item, self._email(request, recipient, sender), recipient))
                else:
                    to = recipient.phone if recipient else request.address
                    text = sms_text(request.content, _sender_name(request, sender))
                    texts.append((item, Sms(request.notification_id, to or "", text), recipient))
        if emails:
            results = await self._send_emails(emails, now)
            for (item, _, recipient), result in zip(emails, results, strict=True):
                finished.append(self._result(item.row, result, now, recipient))
        if texts:
            results_sms = await asyncio.gather(*(self._send_sms(sms) for _, sms, _ in texts))
            for (item, _, recipient), result in zip(texts, results_sms, strict=True):
                finished.append(self._result(item.row, result, now, recipient))
        return finished

    async def _send_emails(
        self, emails: Sequence[tuple[_Work, Email, Recipient | None]], now: datetime
    ) -> list[str | SendError]:
        """Send, storing each email as sent every SENT_FLUSH_SECONDS while the rest of the batch goes out:
        a worker killed mid-batch sends again only what it had not yet stored, not the whole batch."""
        accepted: list[Finished] = []
        sending = True

        def sent(index: int) -> None:
            item, email, recipient = emails[index]
            accepted.append(self._result(item.row, email.message_id, now, recipient))

        async def store_while_sending() -> None:
            while sending or accepted:
                if accepted:
                    batch = accepted[:]
                    del accepted[: len(batch)]
                    # `finish` writes only rows still `sending`: the batch's own finish later changes nothing.
                    await until_done("postgres sent", lambda b=batch: self._store.finish(b))
                elif sending:
                    await asyncio.sleep(SENT_FLUSH_SECONDS)

        storing = asyncio.create_task(store_while_sending())
        try:
            return await self._smtp.send([email for _, email, _ in emails], on_sent=sent)
        finally:
            sending = False
            await storing

    def _email(self, request: NotificationRequested, recipient: Recipient | None, sender: Recipient | None) -> Email:
        base = self._settings.public_web_url.rstrip("/")
        property_id = request.reference.get("propertyId") or request.content.variables.get("propertyId")
        link = f"{base}/properties/{property_id}" if property_id else None
        to = recipient.email if recipient else request.address
        sender_name = _sender_name(request, sender)
        return Email(
            notification_id=request.notification_id,
            to=to or "",
            rendered=render(request.content, recipient.name if recipient else None, link, sender_name),
            marketing=request.kind == Kind.MARKETING,
            unsubscribe_url=f"{base}/settings/notifications?unsubscribe=marketing",
            sender_name=sender_name,
        )

    async def _send_sms(self, sms: Sms) -> str | SendError:
        try:
            return await self._sms.send(sms)
        except SendError as exc:
            return exc

    def _result(self, row: Claimed, result: str | SendError, now: datetime, recipient: Recipient | None) -> Finished:
        if isinstance(result, str):
            return Finished(row.notification_id, row.channel, "sent", row.attempts + 1, SENT, provider_id=result)
        if isinstance(result, PermanentSendError):
            return _failed(row, row.attempts + 1, _scrubbed(result, recipient), permanent=True)
        return self._retry(row, result, now, recipient)

    def _retry(self, row: Claimed, error: SendError, now: datetime, recipient: Recipient | None) -> Finished:
        s = self._settings
        attempts = row.attempts + 1
        message = _scrubbed(error, recipient)
        if attempts >= s.notification_max_attempts:
            return _failed(row, attempts, message, permanent=False)
        delay = retry_delay(
            attempts, s.notification_retry_base_seconds, s.notification_retry_max_seconds, row.notification_id
        )
        if error.retry_after is not None:
            delay = max(delay, timedelta(seconds=min(error.retry_after, s.notification_retry_max_seconds)))
        log.info(
            "%s/%s attempt %d failed (%s); next in %.1fs",
            row.notification_id,
            row.channel,
            attempts,
            message,
            delay.total_seconds(),
        )
        return Finished(row.notification_id, row.channel, "pending", attempts, None, due_at=now + delay, error=message)

    # ---- reporting ----

    async def report_leftovers(self) -> None:
        rows = await until_done("postgres unreported", lambda: self._store.unreported(500))
        if not rows:
            return
        log.info("reporting %d outcomes a stopped worker stored but did not report", len(rows))
        outcomes = [_leftover(row) for row in rows]
        causes: dict[str, Envelope | None] = {}
        for row in rows:
            try:
                causes[row.notification_id] = decode(row.request)
            except EventDecodeError:
                causes[row.notification_id] = None
        await self._report(outcomes, causes)

    async def _report(self, outcomes: Sequence[Outcome], causes: dict[str, Envelope | None]) -> None:
        if not outcomes:
            return
        now = self._clock()
        events = [outcome_event(o, causes.get(o.notification_id), now) for o in outcomes]
        for outcome in outcomes:
            metrics.notified(outcome.channel, outcome.report)
        await asyncio.gather(*(self._produce(NOTIFICATIONS.name, e.subject.encode(), encode(e)) for e in events))
        await self._dead_letters([dead_letter(o) for o in outcomes if o.report == FAILED])
        done = [(o.notification_id, o.channel, o.report) for o in outcomes]
        await until_done("postgres reported", lambda: self._store.reported(done))


@dataclass(frozen=True)
class _Messages:
    """What a round needs for users' messages (the keys that open them, and who blocked whom) and for
    listing alerts (the keys that open their saved searches' names)."""

    keys: dict[str, bytes]
    blocked: set[tuple[str, str]]

    def opened(self, request: NotificationRequested) -> NotificationRequested | None:
        """The request with its message opened, held in memory for this send only; None once a key is gone."""
        sender, recipient = request.requested_by or "", request.user_id or ""
        if sender not in self.keys or recipient not in self.keys:
            return None
        try:
            content = open_message(request.content, (sender, self.keys[sender]), (recipient, self.keys[recipient]))
        except UnreadablePersonalData:
            return None
        return request.model_copy(update={"content": content})


def _sender_name(request: NotificationRequested, sender: Recipient | None) -> str | None:
    """The label of a user's message; None for the platform's own."""
    if request.kind != Kind.MESSAGE:
        return None
    return (sender.name if sender else None) or "a Hyderabad Infra user"


def _scrubbed(error: SendError, recipient: Recipient | None) -> str:
    text = str(error)
    if recipient is not None:
        text = scrub(text, recipient.email, recipient.phone, recipient.name)
    return text[:1000]


def _failed(row: Claimed, attempts: int, error: str, permanent: bool) -> Finished:
    return Finished(row.notification_id, row.channel, "failed", attempts, FAILED, error=error, permanent=permanent)


def _outcome(row: Claimed, finished: Finished) -> Outcome:
    assert finished.report is not None
    return Outcome(
        notification_id=row.notification_id,
        channel=row.channel,
        user_id=row.user_id,
        report=finished.report,
        attempts=finished.attempts,
        error=finished.error,
        permanent=finished.permanent,
        provider_id=finished.provider_id,
        deferred_until=finished.deferred_until,
        request_key=row.request_key,
        request=row.request,
        position=SourcePosition(row.source_topic, row.source_partition, row.source_offset),
    )


def _leftover(row: Unreported) -> Outcome:
    return Outcome(
        notification_id=row.notification_id,
        channel=row.channel,
        user_id=row.user_id,
        report=row.report,
        attempts=row.attempts,
        error=row.last_error,
        permanent=row.permanent,
        provider_id=row.provider_id,
        deferred_until=row.deferred_until,
        request_key=row.request_key,
        request=row.request,
        position=SourcePosition(row.source_topic, row.source_partition, row.source_offset),
    )
