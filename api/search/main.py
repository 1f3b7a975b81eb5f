"""Search service (port 8083): `uvicorn api.search.main:app --port 8083`."""

from api.common.service import create_service
from api.search.queries import read_models
from api.search.routes import SHARED_ANSWERS, router

app = create_service(
    "search",
    title="Hyderabad Infra: search service",
    description=(
        "Finding listings. Full-text and filtered search (`GET /api/search/properties`: `q` over title, "
        'description and locality, with locality synonyms such as "Hitech City" = "HITEC City"; filters, '
        "sort, facet counts, cursor paging), `POST /api/search/advanced` (boolean filters, ranges, distance, "
        "amenities, requested facets), the values a search form offers with their counts "
        "(`/api/search/filters`), suggestions as you type (`/api/search/suggestions`), a user's search "
        "history (`/api/search/history/{userId}`) and saved searches (`POST /api/search/save`, "
        "`GET /api/search/saved/{userId}` or `/{savedSearchId}`, `DELETE /api/search/saved/{id}`).\n\n"
        "Listings are read from OpenSearch (alias `properties`, written only by the property search "
        "projection); saved searches and history from Postgres (written by the search projection). Saving "
        "or deleting produces `search.saved` / `search.saved_deleted` to `searches`; the search projection "
        "registers each saved search as a percolator query, and the saved-search matcher produces "
        "`search.saved_match` the moment a new or changed listing matches (at most once per listing). A "
        "signed-in user's search produces `search.performed` (their history) and answers with its "
        "`X-Consistency-Token`. Reading your own writes (below): a listing you just created is found, a "
        "search you just saved is listed (and alerting), a search you just ran is in your history. "
        "Anonymous searches, suggestions and filter values (no `Authorization`, `X-User-Id` or "
        "`X-Consistency-Token`) share one answer per path and query string for `HI_SHARED_ANSWER_SECONDS` "
        "(default 1 s): such a reader may see a new listing up to that much later."
    ),
    uses={"kafka", "opensearch", "postgres", "redis"},
    read_models=read_models,
    shared_answers=SHARED_ANSWERS,
)
app.include_router(router)
