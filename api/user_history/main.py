"""User-history service (port 8084): `uvicorn api.user_history.main:app --port 8084`."""

from api.common.service import create_service
from api.user_history.queries import read_models
from api.user_history.routes import router

app = create_service(
    "user-history",
    title="Hyderabad Infra: user-history service",
    description=(
        "Everything a user did, rebuilt from the events: a user's complete history (`/api/user-history/{userId}`, "
        "filters `type`, `from`, `to`, cursor paging), the last 50 activities from Redis (`/recent`), their "
        "property and search activity (`/properties`, `/searches`), the raw CloudEvents behind it from the "
        "event store (`/events`), a day-by-day timeline in their time zone (`/timeline?tz=Asia/Kolkata`) "
        "and statistics (`/stats`). A user reads their own history; an admin reads anyone's (403 otherwise).\n\n"
        "History is a projection of the `users`, `properties`, `property-views`, `searches` and `files` topics, "
        "one activity per event, with no email, phone or name in it. When an account is closed its activities "
        "are deleted and its views of listings stay as anonymous views (they count in their owners' views "
        "received).\n\n"
        "Rebuilds are blue/green: `POST /api/user-history/replay` (admin) starts a job run by the history "
        "replay worker that fills a fresh generation from Kafka (all users or one `userId`, from `earliest` or "
        "a time) while the current one keeps answering, and swaps it in when it has caught up; with `until` "
        "it makes a separate read-only copy of history as it was then, read with `?snapshot=<jobId>`. "
        "`GET /api/user-history/replay/{jobId}` reports state, phase, events processed and total, rate and "
        "ETA."
    ),
    uses={"kafka", "postgres", "redis"},
    read_models=read_models,
)
app.include_router(router)
