"""Notification service (port 8085): `uvicorn api.notification.main:app --port 8085`."""

from api.common.service import create_service
from api.notification.queries import READ_MODELS
from api.notification.routes import router

app = create_service(
    "notification",
    title="Hyderabad Infra: notification service",
    description=(
        "Telling people what matters to them, on the channels they chose, once, and not during their quiet "
        "hours. Queue an email or SMS (`POST /api/notifications/email`, `/sms`: 202 with the notification id "
        "and its state URL `/api/notifications/{id}/state`), read the in-app inbox "
        "(`GET /api/notifications/{userId}`, newest first, `unread` filter, unread count), mark one read "
        "(`PUT /api/notifications/{id}/read`), remove one (`DELETE /api/notifications/{id}`), and read or "
        "change preferences (`GET /api/notifications/preferences/{userId}`, `PUT /api/notifications/preferences`)."
        "\n\nEvery command produces to the `notifications` topic. The delivery reactor (consumer group "
        "`notification-delivery`) applies preferences and quiet hours, sends email over SMTP and SMS through "
        "the gateway, retries with backoff and records `notification.sent` / `notification.failed`; it also "
        "turns saved-search matches into listing alerts (at most one per listing per user) and registrations "
        "into a welcome. The inbox and preferences are read from Postgres (written by the "
        "`notification-projection` worker), unread counts from Redis. Kinds: `listing_alert`, `account`, "
        "`marketing` (channels chosen in preferences; marketing is opt-in), `direct` (the platform writing to "
        "one person, always sent as asked) and `message` (one user writing to another). Users send only "
        '`message`s: plain text to a user id (HTML is refused with 403), labelled "Message from <name> via '
        "Hyderabad Infra\", in the inbox and by email or SMS only if the recipient's `message` preferences "
        "allow it, at most `HI_NOTIFICATION_MESSAGE_LIMIT` per sender per window (429 with `Retry-After`), "
        "refused with 403 once the recipient blocked the sender (`PUT`/`DELETE /api/notifications/blocks/"
        "{userId}`). Admins also send system kinds, HTML, templates (`welcome`, `listing_alert`) and to "
        "outside addresses. Quiet hours hold email and SMS of listing alerts, marketing, direct messages "
        "and messages until they end (account messages "
        "follow the user's own action and go at once); the in-app inbox is silent and fills at once."
    ),
    uses={"kafka", "postgres", "redis"},
    read_models=READ_MODELS,
)
app.include_router(router)
