"""Property service (port 8082): `uvicorn api.property.main:app --port 8082`."""

from api.common.service import create_service

app = create_service(
    "property",
    title="Hyderabad Infra: property service",
    description=(
        "Listings: apartments in Gachibowli, villas in Kokapet. Will own creating, reading, updating "
        "(optimistic `If-Match` versions) and deleting properties (`/api/properties`, "
        "`/api/properties/{id}`), tracking views (`/api/properties/{id}/view`), a user's listings "
        "(`/api/properties/user/{userId}`), featured and recent lists (`/api/properties/featured`, "
        "`/recent`), attaching images (`/api/properties/{id}/images`) and similar listings "
        "(`/api/properties/similar/{id}`). Commands go to the `properties` topic; details are read "
        "from Postgres and Redis, similar listings from OpenSearch."
    ),
    uses={"kafka", "postgres", "redis", "opensearch"},
)
