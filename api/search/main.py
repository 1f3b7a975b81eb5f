"""Search service (port 8083): `uvicorn api.search.main:app --port 8083`."""

from api.common.service import create_service

app = create_service(
    "search",
    title="Hyderabad Infra: search service",
    description=(
        "Finding listings. Will own full-text and filtered search (`/api/search/properties`, "
        "`/api/search/advanced`), the facets a search form offers (`/api/search/filters`), "
        "auto-suggestions as you type (`/api/search/suggestions`), a user's search history "
        "(`/api/search/history/{userId}`) and saved searches (`/api/search/save`, "
        "`/api/search/saved/{userId}`, `DELETE /api/search/saved/{id}`), which are matched against "
        "new listings to notify their owners. Queries read OpenSearch; performed and saved searches "
        "go to the `searches` topic; history and saved lists are read from Postgres and Redis."
    ),
    uses={"kafka", "opensearch", "postgres", "redis"},
)
