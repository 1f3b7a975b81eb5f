"""Property service (port 8082): `uvicorn api.property.main:app --port 8082`."""

from api.common.service import create_service
from api.property.queries import READ_MODELS
from api.property.routes import FAST_READS, SHARED_ANSWERS, router

app = create_service(
    "property",
    title="Hyderabad Infra: property service",
    description=(
        "Listings: apartments in Gachibowli, villas in Kokapet. Owns creating, reading, updating "
        "(optimistic `If-Match` versions) and deleting properties (`/api/properties`, "
        "`/api/properties/{id}`), tracking views (`/api/properties/{id}/view`), a user's listings "
        "(`/api/properties/user/{userId}`), featured and recent lists (`/api/properties/featured`, "
        "`/recent`), attaching images (`/api/properties/{id}/images`) and similar listings "
        "(`/api/properties/similar/{id}`).\n\n"
        "Commands go to `property-commands`; the property decider (one writer per property) answers "
        "201/200 or 403/404/409/422, and its events land on `properties`. "
        "`Idempotency-Key` on POST/PUT/DELETE makes retries safe. Details come from Redis (falling "
        "back to Postgres), lists from Postgres, similar listings from OpenSearch. Images are stored "
        "content-addressed and served at `/api/properties/{id}/images/{sha256}`. Anonymous featured "
        "and recent lists (no `Authorization`, `X-User-Id` or `X-Consistency-Token`) share one answer per "
        "query string for `HI_SHARED_ANSWER_SECONDS` (default 1 s)."
    ),
    uses={"kafka", "postgres", "redis", "opensearch"},
    read_models=READ_MODELS,
    sends_commands=True,
    fast_reads=FAST_READS,
    shared_answers=SHARED_ANSWERS,
)
app.include_router(router)
