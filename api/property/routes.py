"""Property endpoints (8082). Commands go to the property decider through Kafka and answer from its
decision; queries read the property projection's stores (Redis, Postgres, OpenSearch)."""

import asyncio
from typing import Annotated, Any

from fastapi import APIRouter, File, Header, Path, Query, Request, UploadFile
from fastapi.responses import JSONResponse, Response
from starlette.datastructures import State

from api.common.auth import actor_role
from api.common.contract import CONSISTENCY_TOKEN, ETAG, LOCATION, STALE, errors, success_headers
from api.common.deps import (
    PROPERTY_ID_PATTERN,
    AppSettings,
    Blobs,
    ClientAddress,
    Commands,
    ConsistencyToken,
    Context,
    CurrentUser,
    IdempotencyKey,
    IfMatch,
    OptionalUser,
    PgPool,
    Producer,
    PropertyId,
    QueryCall,
    QueryReads,
    RedisClient,
    UserId,
)
from api.common.downloads import blob_response
from api.common.errors import ApiError, field_error
from api.common.fast_reads import FastRead
from api.common.kafka import CONSISTENCY_HEADER, Position, consistency_token
from api.common.pagination import Page, PageQuery
from api.common.responses import Success, created, ok
from api.property import commands, queries, views
from api.property.images import announce_files, checked_images, commit_images, sniff_image_type
from api.property.models import (
    FeaturedPropertyOut,
    ImagesAddedOut,
    PropertyChangedOut,
    PropertyCreatedOut,
    PropertyCreateIn,
    PropertyOut,
    PropertyUpdateIn,
    SimilarPropertyOut,
    ViewRecordedOut,
)
from schemas.envelope import new_event
from schemas.properties import (
    ADD_PROPERTY_IMAGES,
    CREATE_PROPERTY,
    DELETE_PROPERTY,
    MAX_IMAGES_PER_PROPERTY,
    PROPERTY_VIEWED,
    UPDATE_PROPERTY,
    AddPropertyImages,
    CreateProperty,
    DeleteProperty,
    Image,
    PropertyType,
    PropertyViewed,
    Role,
    UpdateProperty,
)
from schemas.topics import PROPERTY_VIEWS

router = APIRouter(prefix="/api/properties", tags=["properties"])

# What a command's success carries: the version it made (`ETag`) and where its events are.
_DECIDED = {"headers": success_headers(ETAG, CONSISTENCY_TOKEN)}
# What a query's success may carry: that the store had not caught up in time.
_READ = {"headers": STALE}


# ---- commands ----


@router.post(
    "",
    status_code=201,
    summary="List a property (the seed's creation flow)",
    response_model=Success[PropertyCreatedOut],
    responses={201: {"headers": success_headers(LOCATION, ETAG, CONSISTENCY_TOKEN)}, **errors(409)},
)
async def create_property(
    body: PropertyCreateIn,
    user: CurrentUser,
    ctx: Context,
    request: Request,
    bus: Commands,
    redis: RedisClient,
    idempotency_key: IdempotencyKey = None,
) -> JSONResponse:
    command_id, property_id = commands.command_ids("property.create", user, idempotency_key)

    async def answer() -> JSONResponse:
        envelope = commands.command(CREATE_PROPERTY, property_id, CreateProperty(listing=body), user, ctx, command_id)
        outcome = await commands.decide(bus, envelope)
        data = {"id": property_id, "title": body.title, "createdAt": outcome.result["createdAt"]}
        return created(
            data, "Property created", f"/api/properties/{property_id}", headers=commands.decision_headers(outcome)
        )

    return await commands.once(
        redis, request, scope="property.create", user=user, key=idempotency_key, body=body.to_wire(), answer=answer
    )


@router.put(
    "/{property_id}",
    summary="Update a property (owner or admin; If-Match for optimistic locking)",
    response_model=Success[PropertyChangedOut],
    responses={200: _DECIDED, **errors(403, 404, 409)},
)
async def update_property(
    property_id: PropertyId,
    body: PropertyUpdateIn,
    user: CurrentUser,
    ctx: Context,
    request: Request,
    bus: Commands,
    redis: RedisClient,
    if_match: IfMatch = None,
    idempotency_key: IdempotencyKey = None,
) -> JSONResponse:
    """Only the fields sent change. A stale `If-Match` is refused with 409."""
    changes = body.model_dump(mode="json", by_alias=True, exclude_unset=True)
    if not changes:
        raise ApiError(422, "Nothing to update", [field_error("body", "send at least one field")])
    command_id, _ = commands.command_ids(f"property.update:{property_id}", user, idempotency_key)
    update = UpdateProperty(
        changes=changes, expected_version=commands.parse_if_match(if_match), actor_role=actor_role(user)
    )

    async def answer() -> JSONResponse:
        outcome = await commands.decide(
            bus, commands.command(UPDATE_PROPERTY, property_id, update, user, ctx, command_id)
        )
        return ok(
            {"id": property_id, "version": outcome.version}, "Property updated", commands.decision_headers(outcome)
        )

    return await commands.once(
        redis,
        request,
        scope=f"property.update:{property_id}",
        user=user,
        key=idempotency_key,
        body=update.to_wire(),
        answer=answer,
    )


@router.delete(
    "/{property_id}",
    summary="Delist a property (owner or admin); the event log keeps it",
    response_model=Success[PropertyChangedOut],
    responses={200: _DECIDED, **errors(403, 404, 409)},
)
async def delete_property(
    property_id: PropertyId,
    user: CurrentUser,
    ctx: Context,
    request: Request,
    bus: Commands,
    redis: RedisClient,
    if_match: IfMatch = None,
    idempotency_key: IdempotencyKey = None,
) -> JSONResponse:
    command_id, _ = commands.command_ids(f"property.delete:{property_id}", user, idempotency_key)
    delete = DeleteProperty(expected_version=commands.parse_if_match(if_match), actor_role=actor_role(user))

    async def answer() -> JSONResponse:
        outcome = await commands.decide(
            bus, commands.command(DELETE_PROPERTY, property_id, delete, user, ctx, command_id)
        )
        return ok(
            {"id": property_id, "version": outcome.version}, "Property deleted", commands.decision_headers(outcome)
        )

    return await commands.once(
        redis,
        request,
        scope=f"property.delete:{property_id}",
        user=user,
        key=idempotency_key,
        body=delete.to_wire(),
        answer=answer,
    )


@router.post(
    "/{property_id}/view",
    status_code=202,
    summary="Track a view (anonymous allowed; once per viewer and 30 min)",
    response_model=Success[ViewRecordedOut],
    responses={202: {"headers": CONSISTENCY_TOKEN}, **errors(404, 429)},
)
async def record_view(
    property_id: PropertyId,
    user: OptionalUser,
    ctx: Context,
    request: Request,
    pool: PgPool,
    redis: RedisClient,
    producer: Producer,
    settings: AppSettings,
    address: ClientAddress,
    consistency: ConsistencyToken = None,
) -> JSONResponse:
    """A fact, not a command: nothing to decide, so it is produced straight to `property-views`.
    Send the create's `X-Consistency-Token` to view a listing you have just created. A viewer's view
    counts once per window (`counted` says whether this one did; only a counted view has a token),
    and an address sending views too fast gets 429."""
    await queries.require_listed(pool, redis, settings, property_id, consistency)
    user_agent = request.headers.get("user-agent", "")
    viewer = await views.counted_view(redis, settings, property_id, user, address, user_agent)
    if viewer is None:
        data = {"propertyId": property_id, "counted": False}
        return JSONResponse({"success": True, "message": "View already counted", "data": data}, status_code=202)
    event = new_event(
        type=PROPERTY_VIEWED,
        subject=property_id,
        data=PropertyViewed(viewer_id=user.subject if user else None).to_wire(),
        service="property",
        userid=user.subject if user else None,
        sessionid=ctx.session_id,
        correlationid=ctx.correlation_id,
    )
    try:
        position: Position = await producer.publish(PROPERTY_VIEWS.name, event)
    except BaseException:
        await views.forget_view(redis, property_id, viewer)
        raise
    return JSONResponse(
        {"success": True, "message": "View recorded", "data": {"propertyId": property_id, "counted": True}},
        status_code=202,
        headers={CONSISTENCY_HEADER: consistency_token([position])},
    )


@router.post(
    "/{property_id}/images",
    summary="Upload JPEG/PNG/WebP images (≤ 10 MB each, ≤ 20 per property)",
    response_model=Success[ImagesAddedOut],
    responses={200: _DECIDED, **errors(403, 404, 409, 415)},
)
async def upload_images(
    property_id: PropertyId,
    user: CurrentUser,
    ctx: Context,
    request: Request,
    images: Annotated[list[UploadFile], File(description="One or more images, field name `images`")],
    bus: Commands,
    pool: PgPool,
    redis: RedisClient,
    producer: Producer,
    settings: AppSettings,
    store: Blobs,
    idempotency_key: IdempotencyKey = None,
    consistency: ConsistencyToken = None,
) -> JSONResponse:
    if len(images) > MAX_IMAGES_PER_PROPERTY:
        raise ApiError(422, "Too many images", [field_error("images", f"at most {MAX_IMAGES_PER_PROPERTY}")])
    owner = await queries.listed_owner(pool, redis, settings, property_id, consistency)
    if owner is not None and owner != user.subject and actor_role(user) != Role.ADMIN:
        raise ApiError(403, "Only the owner or an admin may change this property")
    async with checked_images(images, store, settings.file_max_image_pixels) as checked:
        stored = [image.image for image in checked]
        add = AddPropertyImages(
            images=tuple(
                Image(
                    url=f"/api/properties/{property_id}/images/{image.sha256}",
                    sha256=image.sha256,
                    content_type=image.content_type,
                    size_bytes=image.size_bytes,
                )
                for image in stored
            ),
            actor_role=actor_role(user),
        )
        command_id, _ = commands.command_ids(f"property.images:{property_id}", user, idempotency_key)

        async def answer() -> JSONResponse:
            outcome = await commands.decide(
                bus, commands.command(ADD_PROPERTY_IMAGES, property_id, add, user, ctx, command_id)
            )
            # Accepted: the bytes are kept, and the images are the listing's files too (file.uploaded).
            await commit_images(store, checked)
            await announce_files(pool, producer, property_id, user.subject, stored, ctx)
            data = {"id": property_id, "version": outcome.version, "images": [i.to_wire() for i in add.images]}
            return ok(data, "Images added", commands.decision_headers(outcome))

        return await commands.once(
            redis,
            request,
            scope=f"property.images:{property_id}",
            user=user,
            key=idempotency_key,
            body=add.to_wire(),
            answer=answer,
        )


# ---- queries ----
# Literal paths before `/{property_id}` so `featured` and `recent` are not taken for ids.


@router.get(
    "/featured",
    summary="Admin-featured listings first, then the most viewed of the last 7 days",
    response_model=Success[Page[FeaturedPropertyOut]],
    responses={200: _READ},
)
async def featured_properties(
    query: QueryCall,
    limit: Annotated[int, Query(ge=1, le=100, description="How many listings")] = 20,
) -> JSONResponse:
    found, fresh = await queries.featured(query.reads, query.settings, limit, query.consistency)
    return ok(found, "Featured properties", queries.freshness_headers(fresh))


@router.get(
    "/recent",
    summary="Newest listings, optionally in one location or of one type",
    response_model=Success[Page[PropertyOut]],
    responses={200: _READ},
)
async def recent_properties(
    query: QueryCall,
    paging: PageQuery,
    location: Annotated[str | None, Query(min_length=1, max_length=100, description="A locality, any case")] = None,
    property_type: Annotated[PropertyType | None, Query(alias="propertyType")] = None,
) -> JSONResponse:
    page, fresh = await queries.recent(query.reads, query.settings, paging, location, property_type, query.consistency)
    return ok(page, "Recent properties", queries.freshness_headers(fresh))


@router.get(
    "/user/{user_id}",
    summary="A user's listings, newest first",
    response_model=Success[Page[PropertyOut]],
    responses={200: _READ},
)
async def user_properties(user_id: UserId, query: QueryCall, paging: PageQuery) -> JSONResponse:
    page, fresh = await queries.by_owner(query.reads, query.settings, user_id, paging, query.consistency)
    return ok(page, "User properties", queries.freshness_headers(fresh))


@router.get(
    "/similar/{property_id}",
    summary="Listings like this one: locality, type, price band, bedrooms",
    response_model=Success[Page[SimilarPropertyOut]],
    responses={200: _READ, **errors(404)},
)
async def similar_properties(
    property_id: PropertyId,
    query: QueryCall,
    limit: Annotated[int, Query(ge=1, le=50, description="How many listings")] = 10,
) -> JSONResponse:
    items, fresh = await queries.similar(
        query.reads, query.redis, query.search, query.settings, property_id, limit, query.consistency
    )
    return ok({"items": items, "nextCursor": None}, "Similar properties", queries.freshness_headers(fresh))


_IMAGE_TYPES = {"image/jpeg": {}, "image/png": {}, "image/webp": {}}
_IMAGE_BYTES = {kind: {"schema": {"type": "string", "format": "binary"}} for kind in _IMAGE_TYPES}


@router.get(
    "/{property_id}/images/{sha256}",
    summary="An image of a property",
    response_class=Response,
    responses={
        200: {"description": "The image", "content": _IMAGE_BYTES},
        206: {"description": "The part of the image `Range` asked for", "content": _IMAGE_BYTES},
        304: {"description": "Not modified: `If-None-Match` names this image"},
        **errors(404, 416),
    },
)
async def property_image(
    property_id: PropertyId,
    sha256: Annotated[str, Path(pattern=r"^[0-9a-f]{64}$", description="The image's SHA-256, as its `url` names it")],
    request: Request,
    pool: QueryReads,
    redis: RedisClient,
    settings: AppSettings,
    store: Blobs,
    range_header: Annotated[
        str | None, Header(alias="Range", max_length=200, description="`bytes=<first>-<last>`: a part of the image")
    ] = None,
    if_none_match: Annotated[
        str | None, Header(alias="If-None-Match", max_length=2000, description="The `ETag` of a copy held: 304")
    ] = None,
    consistency: ConsistencyToken = None,
) -> Response:
    await queries.image_of(pool, redis, settings, property_id, sha256, consistency)
    size = await asyncio.to_thread(store.size, sha256)
    head = b"".join(await asyncio.to_thread(lambda: list(store.read(sha256, 0, 15)))) if size else b""
    content_type = sniff_image_type(head)
    if size is None or content_type is None:
        raise ApiError(404, "Image not found")
    return await blob_response(
        store,
        sha256=sha256,
        size=size,
        content_type=content_type,
        filename=f"{sha256[:16]}.{content_type.split('/')[1]}",
        inline=True,
        cache_control="public, max-age=31536000, immutable",
        method=request.method,
        range_header=range_header,
        if_range=None,
        if_none_match=if_none_match,
    )


@router.get(
    "/{property_id}",
    summary="Property details (Redis, falling back to Postgres); ETag = version",
    response_model=Success[PropertyOut],
    responses={200: {"headers": success_headers(ETAG, STALE)}, **errors(404)},
)
async def get_property(property_id: PropertyId, query: QueryCall) -> JSONResponse:
    details, fresh = await queries.details(query.reads, query.redis, query.settings, property_id, query.consistency)
    return _details(details, fresh)


def _details(details: dict[str, Any], fresh: bool) -> JSONResponse:
    return ok(
        details, "Property details", {"ETag": commands.etag(details["version"]), **queries.freshness_headers(fresh)}
    )


async def _plain_details(state: State, property_id: str) -> JSONResponse | None:
    """`get_property` for an anonymous GET with no token (most of them), before FastAPI's router."""
    details = await queries.cached_details(state.redis_get, property_id)
    return None if details is None else _details(details, fresh=True)


FAST_READS = (FastRead(f"{router.prefix}/{{property_id}}", PROPERTY_ID_PATTERN, _plain_details),)
# The anonymous answers everyone shares for a moment (api/common/shared_answers.py): the same lists for all.
SHARED_ANSWERS = (f"{router.prefix}/featured", f"{router.prefix}/recent")
