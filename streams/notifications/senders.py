"""The two outside channels: email over SMTP (aiosmtplib; STARTTLS, TLS and AUTH when configured) and
SMS through an HTTP gateway adapter (httpx). Each failure is sorted into one of two kinds:

- `TransientSendError`: try again later (the server is down or busy, a 4xx reply, a 429, a 5xx of
  the gateway, a timeout);
- `PermanentSendError`: trying again cannot help (a 5xx SMTP reply such as 550 "no such mailbox", a
  4xx of the gateway other than 429 such as an invalid number).
"""

import asyncio
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from email.message import EmailMessage
from email.utils import format_datetime, formataddr, parseaddr

import aiosmtplib
import httpx

from config import Settings
from schemas.notifications import PLATFORM, Rendered

log = logging.getLogger("streams.notifications.senders")


class SendError(Exception):
    def __init__(self, message: str, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class TransientSendError(SendError):
    pass


class PermanentSendError(SendError):
    pass


@dataclass(frozen=True)
class Email:
    notification_id: str
    to: str
    rendered: Rendered
    marketing: bool = False
    unsubscribe_url: str | None = None
    sender_name: str | None = None  # a user's message: From names them, "… via Hyderabad Infra"

    @property
    def message_id(self) -> str:
        # Stable per notification: were it ever sent twice (a crash between the server's 250 and our
        # record of it), the receiving side sees the same Message-ID and can drop the copy.
        return f"<{self.notification_id}@hyderabad-infra>"


def build_message(email: Email, sender: str) -> EmailMessage:
    message = EmailMessage()
    if email.sender_name:
        # A user's message leaves from our address, under their name: never as the platform itself.
        sender = formataddr((f"{email.sender_name} via {PLATFORM}", envelope_sender(sender)))
    message["From"] = sender
    message["To"] = email.to
    message["Subject"] = email.rendered.subject
    message["Date"] = format_datetime(datetime.now(UTC))
    message["Message-ID"] = email.message_id
    message["X-Notification-Id"] = email.notification_id
    text, html = email.rendered.text, email.rendered.html
    if email.marketing and email.unsubscribe_url:
        message["List-Unsubscribe"] = f"<{email.unsubscribe_url}>"
        message["List-Unsubscribe-Post"] = "List-Unsubscribe=One-Click"
        text = f"{text}\n\nTo stop these emails: {email.unsubscribe_url}\n"
        footer = f'<p style="font-size:small"><a href="{email.unsubscribe_url}">Unsubscribe</a></p>'
        html = html.replace("</body>", footer + "</body>") if "</body>" in html else html + footer
    message.set_content(text)
    message.add_alternative(html, subtype="html")
    return message


def envelope_sender(mail_from: str) -> str:
    return parseaddr(mail_from)[1] or mail_from


def _classify(exc: BaseException) -> SendError:
    if isinstance(exc, aiosmtplib.SMTPRecipientsRefused):
        codes = [e.code for e in exc.recipients]
        text = "; ".join(f"{e.code} {e.message}" for e in exc.recipients)
        if codes and all(code >= 500 for code in codes):
            return PermanentSendError(f"recipient refused: {text}")
        return TransientSendError(f"recipient deferred: {text}")
    if isinstance(exc, aiosmtplib.SMTPResponseException):
        what = f"{type(exc).__name__} {exc.code} {exc.message}"
        if isinstance(exc, aiosmtplib.SMTPAuthenticationError):
            return TransientSendError(what)  # our credentials: an operator fixes them, the mail waits
        return PermanentSendError(what) if exc.code >= 500 else TransientSendError(what)
    return TransientSendError(f"{type(exc).__name__}: {exc}")


class SmtpSender:
    """Sends batches over a few parallel SMTP connections; a connection that breaks fails (transiently)
    only the messages it had not yet delivered."""

    def __init__(self, settings: Settings) -> None:
        self._settings = settings
        self._sender = envelope_sender(settings.mail_from)

    def _client(self) -> aiosmtplib.SMTP:
        s = self._settings
        return aiosmtplib.SMTP(
            hostname=s.smtp_host,
            port=s.smtp_port,
            timeout=s.smtp_timeout_seconds,
            use_tls=s.smtp_tls,
            start_tls=True if s.smtp_starttls else False,
            username=s.smtp_username,
            password=s.smtp_password.get_secret_value() if s.smtp_password else None,
        )

    async def send(
        self, emails: Sequence[Email], on_sent: Callable[[int], None] = lambda index: None
    ) -> list[str | SendError]:
        """Each email's provider id (its Message-ID) or error. `on_sent(i)` is called the moment the server
        has accepted email i, so the caller can record it before the whole batch is through."""
        outcomes: list[str | SendError] = [TransientSendError("not attempted")] * len(emails)
        lanes = max(1, min(self._settings.smtp_connections, len(emails)))
        indices = list(range(len(emails)))
        await asyncio.gather(*(self._lane(emails, indices[lane::lanes], outcomes, on_sent) for lane in range(lanes)))
        return outcomes

    async def _lane(
        self,
        emails: Sequence[Email],
        mine: list[int],
        outcomes: list[str | SendError],
        on_sent: Callable[[int], None],
    ) -> None:
        if not mine:
            return
        client = self._client()
        try:
            await client.connect()
        except Exception as exc:
            error = _classify(exc)
            for i in mine:
                outcomes[i] = TransientSendError(f"SMTP server unreachable: {error}")
            return
        try:
            for n, i in enumerate(mine):
                email = emails[i]
                try:
                    message = build_message(email, self._settings.mail_from)
                except Exception as exc:
                    # The message, not the connection: it fails alone and for good, the lane goes on. Only
                    # the error's type travels on: its text may quote the content.
                    outcomes[i] = PermanentSendError(f"the message cannot be built ({type(exc).__name__})")
                    continue
                try:
                    await client.send_message(message, sender=self._sender, recipients=[email.to])
                    outcomes[i] = email.message_id
                    on_sent(i)
                except (aiosmtplib.SMTPRecipientsRefused, aiosmtplib.SMTPResponseException) as exc:
                    outcomes[i] = _classify(exc)
                    if isinstance(exc, aiosmtplib.SMTPServerDisconnected) or not client.is_connected:
                        for j in mine[n + 1 :]:
                            outcomes[j] = TransientSendError("SMTP connection lost")
                        return
                except Exception as exc:
                    # The connection broke mid-conversation: this message and the rest wait for a retry.
                    for j in mine[n:]:
                        outcomes[j] = TransientSendError(f"SMTP connection lost: {_classify(exc)}")
                    return
        finally:
            if client.is_connected:
                try:
                    await client.quit()
                except Exception:
                    client.close()


@dataclass(frozen=True)
class Sms:
    notification_id: str
    to: str
    text: str


class SmsGateway:
    """An adapter for an SMS gateway's HTTP API in the common shape: `POST {url}` with a bearer key and
    `{"to", "from", "body", "reference"}`, answering 2xx with `{"id": ...}`. 429 and 5xx are transient
    (honouring `Retry-After`); other 4xx are permanent (an invalid number, a blocked recipient)."""

    def __init__(self, settings: Settings, client: httpx.AsyncClient) -> None:
        self._settings = settings
        self._client = client

    async def send(self, sms: Sms) -> str:
        s = self._settings
        try:
            answer = await self._client.post(
                s.sms_api_url,
                json={"to": sms.to, "from": s.sms_sender, "body": sms.text, "reference": sms.notification_id},
                headers={
                    "Authorization": f"Bearer {s.sms_api_key.get_secret_value()}",
                    "Idempotency-Key": sms.notification_id,
                },
                timeout=s.sms_timeout_seconds,
            )
        except httpx.HTTPError as exc:
            raise TransientSendError(f"SMS gateway unreachable: {type(exc).__name__}: {exc}") from None
        if answer.is_success:
            try:
                return str(answer.json().get("id") or "")
            except ValueError:
                return ""
        detail = _gateway_error(answer)
        if answer.status_code == 429 or answer.status_code >= 500 or answer.status_code in (401, 403, 408):
            # 401/403: our key is wrong or revoked; an operator fixes it and the messages go out then.
            raise TransientSendError(f"SMS gateway answered {answer.status_code}: {detail}", _retry_after(answer))
        raise PermanentSendError(f"SMS gateway refused ({answer.status_code}): {detail}")


def _gateway_error(answer: httpx.Response) -> str:
    try:
        body = answer.json()
    except ValueError:
        return answer.text[:200]
    error = body.get("error") if isinstance(body, dict) else None
    if isinstance(error, dict):
        return str(error.get("message") or error.get("code") or error)[:200]
    return str(error or body)[:200]


def _retry_after(answer: httpx.Response) -> float | None:
    value = answer.headers.get("Retry-After")
    try:
        return max(0.0, float(value)) if value is not None else None
    except ValueError:
        return None
