"""Notification service (port 8085): `uvicorn api.notification.main:app --port 8085`."""

from api.common.service import create_service

app = create_service(
    "notification",
    title="Hyderabad Infra: notification service",
    description=(
        "Telling users what happened, e.g. a new listing matching a saved search. Will own sending email "
        "and SMS (`/api/notifications/email`, `/sms`), a user's notifications "
        "(`/api/notifications/{userId}`), marking one read (`PUT /api/notifications/{id}/read`), "
        "deleting one, and the channels a user wants (`/api/notifications/preferences/{userId}`, "
        "`PUT /api/notifications/preferences`). Commands go to the `notifications` topic; lists and "
        "preferences are read from Postgres and Redis."
    ),
    uses={"kafka", "postgres", "redis"},
)
