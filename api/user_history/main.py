"""User-history service (port 8084): `uvicorn api.user_history.main:app --port 8084`."""

from api.common.service import create_service

app = create_service(
    "user-history",
    title="Hyderabad Infra: user-history service",
    description=(
        "Everything a user did, rebuilt from the events. Will own a user's complete and recent history "
        "(`/api/user-history/{userId}`, `/recent`), their property and search activity (`/properties`, "
        "`/searches`), the raw events behind it from the event store (`/events`), a day-by-day timeline "
        "(`/timeline`) and statistics (`/stats`), and replay (`POST /api/user-history/replay`): rebuilding "
        "the history projection from Kafka, for all users or one, from the earliest offset or a "
        "timestamp, as a job whose progress can be read. Reads come from Postgres and Redis."
    ),
    uses={"kafka", "postgres", "redis"},
)
