"""Search endpoints (8083). Queries read OpenSearch (listings) and Postgres (saved searches, history);
commands (save, delete a saved search) and the facts of searches run produce to `searches`."""

import logging
from typing import Annotated, Any

import psycopg
from fastapi import APIRouter, Path, Query, Request
from fastapi.responses import JSONResponse
from psycopg_pool import AsyncConnectionPool, PoolTimeout

from api.common.auth import AccessClaims
from api.common.consistency import Reader
from api.common.contract import CONSISTENCY_TOKEN, LOCATION, STALE, errors, success_headers
from api.common.deps import (
    AppSettings,
    ConsistencyToken,
    Context,
    CurrentUser,
    IdempotencyKey,
    OptionalUser,
    PgPool,
    Producer,
    QueryCall,
    QueryReads,
    RedisClient,
    RequestContext,
    SearchClient,
    UserId,
)
from api.common.errors import ApiError, DependencyUnavailable, field_error
from api.common.idempotency import derived_id, fingerprint, idempotent
from api.common.kafka import CONSISTENCY_HEADER, EventProducer, Position, consistency_token
from api.common.pagination import MAX_CURSOR_LENGTH, MAX_LIMIT, Page, PageQuery, decode_cursor
from api.common.personal_keys import personal_key, sealed_text
from api.common.responses import Success, created, ok
from api.search import queries
from api.search.models import (
    AdvancedSearchIn,
    Facet,
    SavedSearchCreatedOut,
    SavedSearchDeletedOut,
    SavedSearchOut,
    SaveSearchIn,
    SearchFiltersOut,
    SearchHistoryEntryOut,
    SearchResultsOut,
    Sort,
    SuggestionOut,
)
from schemas.envelope import new_event
from schemas.ids import new_id
from schemas.personal import SEARCH_NAME, SEARCH_QUERY
from schemas.properties import PropertyType, Role
from schemas.searches import (
    MAX_QUERY_CHARS,
    SEARCH_PERFORMED,
    SEARCH_SAVED,
    SEARCH_SAVED_DELETED,
    Filters,
    Range,
    SavedSearchDeleted,
    SearchCriteria,
    SearchPerformed,
    SearchSaved,
)
from schemas.topics import SEARCHES

log = logging.getLogger("api.search")

router = APIRouter(prefix="/api/search", tags=["search"])

SavedSearchId = Annotated[str, Path(pattern=r"^search-[A-Za-z0-9._-]{1,64}$", description="`search-…`")]
# The seed names it `/saved/{userId}`; a saved search id there (the `Location` of a save) shows that one.
UserOrSavedSearchId = Annotated[
    str,
    Path(
        pattern=r"^(user|search)-[A-Za-z0-9._-]{1,64}$",
        description="A user id (`user-…`: their saved searches) or a saved search id (`search-…`: that one)",
    ),
]
Money = Annotated[int | None, Query(ge=0, le=10**12)]


def _is_admin(user: AccessClaims) -> bool:
    return user.role == Role.ADMIN


async def _require_self_or_admin(reads: Reader, user: AccessClaims, user_id: str) -> None:
    """Your own, or an admin's look at an account that exists."""
    if user.subject == user_id:
        return
    if not _is_admin(user):
        raise ApiError(403, "Only the user themselves or an admin may see this")
    if not await queries.user_is_known(reads, user_id):
        raise ApiError(404, f"User {user_id} not found")


async def _record_search(
    primary: AsyncConnectionPool,
    producer: EventProducer,
    user: AccessClaims | None,
    ctx: RequestContext,
    criteria: SearchCriteria,
    total: int,
) -> dict[str, str]:
    """A signed-in user's search becomes a `search.performed` fact (their history); the answer carries
    its position. Kafka being down costs the history entry, never the search: logged, not raised; so does
    Postgres, which holds the key the words are sealed with (they never travel in the clear)."""
    if user is None:
        return {}
    filters = criteria.to_wire()
    filters.pop("q", None)
    query = None
    if criteria.q is not None:
        try:
            key = await personal_key(primary, user.subject)
        except (psycopg.OperationalError, PoolTimeout):
            log.warning("search by %s not recorded in history: postgres unavailable", user.subject)
            return {}
        query = sealed_text(key, user.subject, SEARCH_QUERY, criteria.q)
    event = new_event(
        type=SEARCH_PERFORMED,
        subject=user.subject,
        data=SearchPerformed(user_id=user.subject, query=query, filters=filters, result_count=total).to_wire(),
        service="search",
        userid=user.subject,
        sessionid=ctx.session_id,
        correlationid=ctx.correlation_id,
    )
    try:
        position: Position = await producer.publish(SEARCHES.name, event)
    except DependencyUnavailable:
        log.warning("search by %s not recorded in history: kafka unavailable", user.subject)
        return {}
    return {CONSISTENCY_HEADER: consistency_token([position])}


# ---- search ----


def _simple_criteria(
    q: str | None,
    location: str | None,
    property_type: PropertyType | None,
    min_price: int | None,
    max_price: int | None,
    bedrooms: int | None,
    bathrooms: int | None,
) -> SearchCriteria:
    if min_price is not None and max_price is not None and max_price < min_price:
        raise ApiError(422, "Invalid request: check maxPrice", [field_error("maxPrice", "must be at least minPrice")])
    if q is not None and not q.strip():
        raise ApiError(422, "Invalid request: check q", [field_error("q", "must contain a word")])
    return SearchCriteria(
        q=q,
        filters=Filters(
            location=(location,) if location else (), property_type=(property_type,) if property_type else ()
        ),
        price=Range(min=min_price, max=max_price) if min_price is not None or max_price is not None else None,
        bedrooms=Range(min=bedrooms, max=bedrooms) if bedrooms is not None else None,
        bathrooms=Range(min=bathrooms, max=bathrooms) if bathrooms is not None else None,
    )


# A search's answer: its position in the searcher's history (signed in), and whether the index had caught up.
_SEARCHED = {200: {"headers": success_headers(CONSISTENCY_TOKEN, STALE)}}
_READ = {200: {"headers": STALE}}


@router.get(
    "/properties",
    summary="Full-text search with filters, sorting, facets and cursor paging",
    response_model=Success[SearchResultsOut],
    responses=_SEARCHED,
)
async def search_properties(
    user: OptionalUser,
    ctx: Context,
    reads: QueryReads,
    primary: PgPool,
    search: SearchClient,
    producer: Producer,
    settings: AppSettings,
    q: Annotated[
        str | None,
        Query(max_length=MAX_QUERY_CHARS, description="Words over title, description and locality (synonyms apply)"),
    ] = None,
    location: Annotated[str | None, Query(min_length=1, max_length=100, description="A locality, any spelling")] = None,
    property_type: Annotated[PropertyType | None, Query(alias="propertyType")] = None,
    min_price: Annotated[Money, Query(alias="minPrice", description="Rupees, inclusive")] = None,
    max_price: Annotated[Money, Query(alias="maxPrice", description="Rupees, inclusive")] = None,
    bedrooms: Annotated[int | None, Query(ge=0, le=50, description="Exactly this many")] = None,
    bathrooms: Annotated[int | None, Query(ge=0, le=50, description="Exactly this many")] = None,
    sort: Annotated[Sort | None, Query(description="Default: relevance with `q`, else newest")] = None,
    facets: Annotated[bool, Query(description="Facet counts over every match (first page only)")] = True,
    limit: Annotated[int, Query(ge=1, le=MAX_LIMIT, description="Listings per page")] = 20,
    cursor: Annotated[
        str | None, Query(max_length=MAX_CURSOR_LENGTH, description="`nextCursor` of the previous page")
    ] = None,
    consistency: ConsistencyToken = None,
) -> JSONResponse:
    criteria = _simple_criteria(q, location, property_type, min_price, max_price, bedrooms, bathrooms)
    fresh = await queries.listings_caught_up(reads, settings, consistency)
    wanted = {Facet.LOCATION, Facet.PROPERTY_TYPE, Facet.BEDROOMS, Facet.PRICE} if facets else set()
    data = await queries.search_listings(
        search, settings, criteria, sort, limit, decode_cursor(cursor) if cursor else None, wanted
    )
    headers = await _record_search(primary, producer, user, ctx, criteria, data["total"])
    return ok(data, "Search results", {**headers, **queries.freshness_headers(fresh)})


@router.post(
    "/advanced",
    summary="Search with a JSON body: boolean filters, ranges, distance, amenities, facets",
    response_model=Success[SearchResultsOut],
    responses=_SEARCHED,
)
async def advanced_search(
    body: AdvancedSearchIn,
    user: OptionalUser,
    ctx: Context,
    reads: QueryReads,
    primary: PgPool,
    search: SearchClient,
    producer: Producer,
    settings: AppSettings,
    consistency: ConsistencyToken = None,
) -> JSONResponse:
    """Lists in `filters` are "any of"; different fields must all hold; `exclude` removes; `amenities.all`
    needs every one, `amenities.any` at least one; `near` keeps listings within `km` of a point."""
    criteria = body.criteria()
    fresh = await queries.listings_caught_up(reads, settings, consistency)
    cursor = decode_cursor(body.cursor) if body.cursor else None
    data = await queries.search_listings(search, settings, criteria, body.sort, body.limit, cursor, set(body.facets))
    headers = await _record_search(primary, producer, user, ctx, criteria, data["total"])
    return ok(data, "Search results", {**headers, **queries.freshness_headers(fresh)})


@router.get(
    "/filters",
    summary="Filter values with listing counts: localities, types, price bands, bedrooms",
    response_model=Success[SearchFiltersOut],
    responses=_READ,
)
async def search_filters(query: QueryCall) -> JSONResponse:
    fresh = await queries.listings_caught_up(query.reads, query.settings, query.consistency)
    filters = await queries.filter_values(query.search, query.settings)
    return ok(filters, "Search filters", queries.freshness_headers(fresh))


@router.get(
    "/suggestions",
    summary="As you type: matching localities (with counts), then listing titles",
    response_model=Success[Page[SuggestionOut]],
    responses=_READ,
)
async def search_suggestions(
    query: QueryCall,
    q: Annotated[str, Query(min_length=1, max_length=100, description="What has been typed so far")],
    limit: Annotated[int, Query(ge=1, le=20, description="Suggestions at most")] = 8,
) -> JSONResponse:
    if not q.strip():
        raise ApiError(422, "Invalid request: check q", [field_error("q", "must contain a letter or digit")])
    fresh = await queries.listings_caught_up(query.reads, query.settings, query.consistency)
    items = await queries.suggestions(query.search, query.settings, q.strip(), limit)
    return ok({"items": items, "nextCursor": None}, "Suggestions", queries.freshness_headers(fresh))


# ---- history ----


@router.get(
    "/history/{user_id}",
    summary="A user's searches, newest first (the user themselves or an admin)",
    response_model=Success[Page[SearchHistoryEntryOut]],
    responses={**_READ, **errors(403, 404)},
)
async def search_history(
    user_id: UserId,
    user: CurrentUser,
    reads: QueryReads,
    settings: AppSettings,
    paging: PageQuery,
    consistency: ConsistencyToken = None,
) -> JSONResponse:
    await _require_self_or_admin(reads, user, user_id)
    fresh = await queries.history_caught_up(reads, settings, consistency)
    return ok(await queries.history(reads, user_id, paging), "Search history", queries.freshness_headers(fresh))


# ---- saved searches ----


@router.post(
    "/save",
    status_code=201,
    summary="Save a search; new matching listings alert its owner",
    response_model=Success[SavedSearchCreatedOut],
    responses={201: {"headers": success_headers(LOCATION, CONSISTENCY_TOKEN)}, **errors(409)},
)
async def save_search(
    body: SaveSearchIn,
    request: Request,
    user: CurrentUser,
    ctx: Context,
    reads: QueryReads,
    primary: PgPool,
    redis: RedisClient,
    producer: Producer,
    settings: AppSettings,
    idempotency_key: IdempotencyKey = None,
) -> JSONResponse:
    """409 once the owner has as many saved searches as allowed (`HI_MAX_SAVED_SEARCHES_PER_USER`)."""
    saved_search_id = (
        derived_id("search", "search.save", user.subject, idempotency_key) if idempotency_key else new_id("search")
    )
    criteria = body.criteria.to_wire()

    async def answer() -> JSONResponse:
        if await queries.saved_search_count(reads, user.subject) >= settings.max_saved_searches_per_user:
            raise ApiError(
                409,
                f"You already have {settings.max_saved_searches_per_user} saved searches; delete one first",
                [field_error("name", "saved search limit reached")],
            )
        key = await personal_key(primary, user.subject)
        sealed_criteria = dict(criteria)
        if body.criteria.q is not None:
            sealed_criteria["q"] = sealed_text(key, user.subject, SEARCH_QUERY, body.criteria.q)
        saved = SearchSaved(
            saved_search_id=saved_search_id,
            owner_id=user.subject,
            name=sealed_text(key, user.subject, SEARCH_NAME, body.name),
            criteria=sealed_criteria,
        )
        event = new_event(
            type=SEARCH_SAVED,
            subject=saved_search_id,
            data=saved.to_wire(),
            service="search",
            userid=user.subject,
            sessionid=ctx.session_id,
            correlationid=ctx.correlation_id,
        )
        position: Position = await producer.publish(SEARCHES.name, event)
        data = {"id": saved_search_id, "name": body.name, "criteria": criteria, "createdAt": event.time}
        return created(
            data,
            "Search saved",
            f"/api/search/saved/{saved_search_id}",
            headers={CONSISTENCY_HEADER: consistency_token([position])},
        )

    return await idempotent(
        redis,
        scope="search.save",
        user_id=user.subject,
        key=idempotency_key,
        request_fingerprint=fingerprint(request.method, request.url.path, {"name": body.name, "criteria": criteria}),
        answer=answer,
    )


@router.get(
    "/saved/{user_id}",
    summary="A user's saved searches, newest first (`user-…`), or one saved search (`search-…`); owner or admin",
    response_model=Success[Page[SavedSearchOut] | SavedSearchOut],
    responses={**_READ, **errors(403, 404)},
)
async def saved_searches(
    user_id: UserOrSavedSearchId,
    user: CurrentUser,
    reads: QueryReads,
    settings: AppSettings,
    paging: PageQuery,
    consistency: ConsistencyToken = None,
) -> JSONResponse:
    """A user id answers a page of their saved searches; a saved search id (the `Location` of a save)
    answers that one."""
    fresh = await queries.saved_caught_up(reads, settings, consistency)
    headers = queries.freshness_headers(fresh)
    if user_id.startswith("search-"):
        row = await queries.saved_search(reads, user_id)
        if row is None:
            raise ApiError(404, f"Saved search {user_id} not found")
        if row["owner_id"] != user.subject and not _is_admin(user):
            raise ApiError(403, "Only the owner or an admin may see this saved search")
        return ok(queries.saved_item(row), "Saved search", headers)
    await _require_self_or_admin(reads, user, user_id)
    return ok(await queries.saved_searches(reads, user_id, paging), "Saved searches", headers)


@router.delete(
    "/saved/{saved_search_id}",
    summary="Delete a saved search and its alert (owner or admin)",
    response_model=Success[SavedSearchDeletedOut],
    responses={200: {"headers": CONSISTENCY_TOKEN}, **errors(403, 404)},
)
async def delete_saved_search(
    saved_search_id: SavedSearchId,
    user: CurrentUser,
    ctx: Context,
    reads: QueryReads,
    producer: Producer,
    settings: AppSettings,
    consistency: ConsistencyToken = None,
) -> JSONResponse:
    """A search saved a moment ago can be deleted at once (from another session, send the save's
    `X-Consistency-Token`)."""
    await queries.saved_caught_up(reads, settings, consistency)
    row = await queries.saved_search(reads, saved_search_id)
    if row is None:
        raise ApiError(404, f"Saved search {saved_search_id} not found")
    if row["owner_id"] != user.subject and not _is_admin(user):
        raise ApiError(403, "Only the owner or an admin may delete this saved search")
    event = new_event(
        type=SEARCH_SAVED_DELETED,
        subject=saved_search_id,
        data=SavedSearchDeleted(saved_search_id=saved_search_id, owner_id=row["owner_id"]).to_wire(),
        service="search",
        userid=user.subject,
        sessionid=ctx.session_id,
        correlationid=ctx.correlation_id,
    )
    position: Position = await producer.publish(SEARCHES.name, event)
    data: dict[str, Any] = {"id": saved_search_id}
    return ok(data, "Saved search deleted", {CONSISTENCY_HEADER: consistency_token([position])})


# The anonymous answers everyone shares for a moment (api/common/shared_answers.py): a search, its
# suggestions and the form's values are the same for every anonymous reader. A signed-in user's search is
# not shared: it goes into their history and waits for their own writes.
SHARED_ANSWERS = (f"{router.prefix}/properties", f"{router.prefix}/suggestions", f"{router.prefix}/filters")
