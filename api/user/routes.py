"""User endpoints (8081): authentication (`/api/auth/…`) and users (`/api/users/…`).

Commands go to the user deciders through Kafka and answer from their decision; queries read the users
projection's stores and the property read model. Login, refresh and logout touch only Redis (sessions,
deny list, rate limit) besides reading the users read model and recording the login as a fact.
"""

from typing import Annotated

from fastapi import APIRouter, Query, Request
from fastapi.responses import JSONResponse
from redis.asyncio import Redis

from api.common import own_writes
from api.common.auth import Unauthorized, actor_role, issue_access_token
from api.common.contract import CONSISTENCY_TOKEN, ETAG, LOCATION, STALE, errors, success_headers
from api.common.deps import (
    AppSettings,
    ClientAddress,
    Commands,
    ConsistencyToken,
    Context,
    CurrentUser,
    IfMatch,
    OptionalUser,
    PgPool,
    Producer,
    QueryReads,
    RedisClient,
    UserId,
)
from api.common.errors import ApiError, field_error
from api.common.kafka import CONSISTENCY_HEADER, consistency_token
from api.common.pagination import Page, PageQuery
from api.common.personal_keys import create_personal_key
from api.common.personal_keys import personal_key as get_personal_key
from api.common.rate_limits import count_in_window
from api.common.responses import Success, created, ok
from api.common.revocation import deny_account
from api.user import commands, queries, sessions
from api.user.login_limits import LoginLimits
from api.user.models import (
    AccountClosedOut,
    LoggedOutOut,
    LoginIn,
    LogoutIn,
    ProfileUpdateIn,
    PropertyCountOut,
    RefreshIn,
    RegisteredUserOut,
    RegisterIn,
    SessionOut,
    UserListingOut,
    UserProfileOut,
    UserSummaryOut,
    UserVersionOut,
)
from api.user.passwords import hash_password, password_problem, verify_password
from config.settings import Settings
from schemas.envelope import new_event
from schemas.ids import new_id
from schemas.outcomes import Verdict
from schemas.topics import PROPERTIES, USERS
from schemas.users import (
    DELETE_ACCOUNT,
    RECORD_PROPERTY_COUNT,
    UPDATE_PROFILE,
    USER_LOGGED_IN,
    DeleteAccount,
    RecordPropertyCount,
    Role,
    UpdateProfile,
    UserLoggedIn,
    email_key,
    normalise_email,
)

auth_router = APIRouter(prefix="/api/auth", tags=["auth"])
users_router = APIRouter(prefix="/api/users", tags=["users"])

INVALID_LOGIN = "Invalid email or password"
# Shorter prefixes would page through the whole directory a letter at a time.
SEARCH_MIN_CHARS = 2


def _parse_if_match(value: str | None) -> int | None:
    if value is None or value.strip() == "*":
        return None
    digits = value.strip().removeprefix("W/").strip('"')
    if not digits.isdigit() or len(digits) > 9:
        raise ApiError(422, "Invalid If-Match", [field_error("If-Match", 'expected the ETag of a GET, e.g. "3"')])
    return int(digits)


async def _session(
    redis: Redis, settings: Settings, user_id: str, role: str, family: str, *, new: bool
) -> dict[str, object]:
    access = issue_access_token(user_id, role, session_id=family, settings=settings)
    refresh = await sessions.issue_refresh_token(redis, user_id, family, settings.refresh_ttl_seconds, new=new)
    return {
        "accessToken": access,
        "tokenType": "Bearer",
        "expiresIn": settings.jwt_access_ttl_seconds,
        "refreshToken": refresh,
        "userId": user_id,
        "role": role,
    }


# ---- auth ----


async def _limit_registrations(redis: Redis, settings: Settings, address: str, key_of_email: str) -> None:
    """Per client address and per email (by its key: Redis never holds the address): a 409 tells whether an
    email has an account, so how fast anyone may ask is bounded."""
    window = settings.registration_window_seconds
    message = "Too many registrations; try again later"
    by_address, by_email = f"rate:register:address:{address}", f"rate:register:email:{key_of_email}"
    await count_in_window(redis, by_address, settings.registration_max_per_address, window, message)
    await count_in_window(redis, by_email, settings.registration_max_per_email, window, message)


@auth_router.post(
    "/register",
    status_code=201,
    summary="Create an account; 409 when the email is taken",
    response_model=Success[RegisteredUserOut],
    responses={201: {"headers": success_headers(LOCATION, ETAG, CONSISTENCY_TOKEN)}, **errors(409, 429)},
)
async def register(
    body: RegisterIn,
    ctx: Context,
    request: Request,
    settings: AppSettings,
    pool: PgPool,
    redis: RedisClient,
    bus: Commands,
    address: ClientAddress,
) -> JSONResponse:
    email_secret = settings.email_key_secret.get_secret_value().encode()
    await _limit_registrations(redis, settings, address, email_key(body.email, email_secret))
    problem = password_problem(body.password, email=body.email, name=body.name)
    if problem:
        raise ApiError(422, "Invalid request: check password", [field_error("password", problem)])
    user_id = new_id("user")
    personal_key = await create_personal_key(pool, user_id)
    envelope = commands.registration(
        user_id=user_id,
        personal_key=personal_key,
        email_secret=email_secret,
        email=body.email,
        name=body.name,
        phone=body.phone,
        password_hash=await hash_password(body.password),
        session_id=ctx.session_id,
        correlation_id=ctx.correlation_id,
    )
    # Login looks the address up by its key: it waits for this registration without a token.
    own_writes.attribute_to(request, own_writes.email_writer(envelope.subject))
    outcome = await commands.register(bus, envelope)
    data = {
        "id": user_id,
        "email": body.email,
        "name": body.name,
        "phone": body.phone,
        "role": Role.USER.value,
        "createdAt": outcome.result["createdAt"],
    }
    return created(data, "User registered", f"/api/users/{user_id}", headers=commands.decision_headers(outcome))


@auth_router.post(
    "/login",
    summary="Email + password -> access JWT and a rotating refresh token",
    response_model=Success[SessionOut],
    responses={200: {"headers": CONSISTENCY_TOKEN}, **errors(429)},
)
async def login(
    body: LoginIn,
    ctx: Context,
    request: Request,
    settings: AppSettings,
    reads: QueryReads,
    redis: RedisClient,
    producer: Producer,
    address: ClientAddress,
    consistency: ConsistencyToken = None,
) -> JSONResponse:
    """Unknown email and wrong password get the same 401 in about the same time. Failures slow further
    attempts down, never lock anyone out: past 5 failures of one account from one address, 10 of one
    account from anywhere, or 100 from one address, the next attempt there waits 1, 2, 4 … s (429 with
    `Retry-After` during the wait; up to 15 min, 1 min for the account as a whole); a success forgives
    the account's. Waits (bounded) for the address's own registration, so signing in right after
    signing up works without a token. The `X-Consistency-Token` answered finds the login in the user's
    history at once (and the new session's queries wait for it by themselves)."""
    email = normalise_email(body.email)
    limits = LoginLimits(redis, settings)
    await limits.attempt(email, address)
    key = email_key(email, settings.email_key_secret.get_secret_value().encode())
    registered = await own_writes.recall(redis, own_writes.email_writer(key))
    waited_for = own_writes.with_own_writes(consistency, registered)
    await queries.caught_up(reads, settings, queries.POSTGRES_CHECKPOINT, waited_for)
    found = await queries.credentials(reads, email)
    if not await verify_password(found.password_hash if found else None, body.password) or found is None:
        await limits.failed(email, address)
        raise Unauthorized(INVALID_LOGIN)
    await limits.succeeded(email, address)
    family = sessions.new_family()
    session = await _session(redis, settings, found.user_id, found.role, family, new=True)
    fact = new_event(
        type=USER_LOGGED_IN,
        subject=found.user_id,
        data=UserLoggedIn().to_wire(),
        service="user",
        userid=found.user_id,
        sessionid=family,
        correlationid=ctx.correlation_id,
    )
    # The login is part of the user's history: its token (and the session's own writes) find it there at once.
    own_writes.attribute_to(request, own_writes.user_writer(found.user_id))
    position = await producer.publish(USERS.name, fact)
    return ok(session, "Logged in", {CONSISTENCY_HEADER: consistency_token([position])})


@auth_router.post(
    "/refresh",
    summary="Rotate the refresh token; reuse of a rotated one revokes the session",
    response_model=Success[SessionOut],
    responses=errors(401),
)
async def refresh(body: RefreshIn, settings: AppSettings, reads: QueryReads, redis: RedisClient) -> JSONResponse:
    access_ttl = settings.jwt_access_ttl_seconds
    grant = await sessions.rotate(redis, body.refresh_token, settings.refresh_ttl_seconds, access_ttl)
    role = await queries.live_role(reads, grant.user_id)
    if role is None:
        await sessions.revoke_family(redis, grant.family, access_ttl)
        raise Unauthorized("Account closed")
    return ok(await _session(redis, settings, grant.user_id, role, grant.family, new=False), "Token refreshed")


@auth_router.post(
    "/logout",
    summary="Revoke this session: its refresh tokens and all its access tokens, everywhere",
    response_model=Success[LoggedOutOut],
)
async def logout(
    user: CurrentUser, settings: AppSettings, redis: RedisClient, body: LogoutIn | None = None
) -> JSONResponse:
    access_ttl = settings.jwt_access_ttl_seconds
    await sessions.revoke_family(redis, user.session_id, access_ttl)
    if body is not None and body.refresh_token:
        try:
            grant = await sessions.rotate(redis, body.refresh_token, settings.refresh_ttl_seconds, access_ttl)
        except Unauthorized:
            grant = None
        if grant is not None and grant.user_id == user.subject:
            await sessions.revoke_family(redis, grant.family, access_ttl)
    return ok({"userId": user.subject}, "Logged out")


# ---- users: literal paths before `/{user_id}` ----


@users_router.get(
    "/search",
    summary="Signed in: users by name prefix (email prefix and role too, for admins)",
    response_model=Success[Page[UserSummaryOut]],
    responses={200: {"headers": STALE}, **errors(403, 429)},
)
async def search_users(
    viewer: CurrentUser,
    settings: AppSettings,
    reads: QueryReads,
    redis: RedisClient,
    paging: PageQuery,
    q: Annotated[str | None, Query(max_length=100, description=f"At least {SEARCH_MIN_CHARS} characters")] = None,
    role: Annotated[Role | None, Query(description="Admins only")] = None,
    consistency: ConsistencyToken = None,
) -> JSONResponse:
    """The directory is for signed-in users, a page at a time: a name prefix of at least two characters
    (admins may leave it out), at most `HI_USER_SEARCH_MAX_PER_MINUTE` searches a minute per user (429
    with `Retry-After`); filtering by role is for admins (403), and only they see emails, phones, roles."""
    is_admin = viewer.role == Role.ADMIN
    if role is not None and not is_admin:
        raise ApiError(403, "Only an admin may filter users by role", [field_error("role", "admin only")])
    if not is_admin and len((q or "").strip()) < SEARCH_MIN_CHARS:
        raise ApiError(422, "Invalid request: check q", [field_error("q", f"at least {SEARCH_MIN_CHARS} characters")])
    await count_in_window(
        redis,
        f"rate:user-search:{viewer.subject}",
        settings.user_search_max_per_minute,
        60,
        "Too many user searches; try again later",
    )
    found, fresh = await queries.search(reads, settings, viewer, q.strip() if q else None, role, paging, consistency)
    return ok(found, "Users", queries.freshness_headers(fresh))


@users_router.get(
    "/{user_id}",
    summary="Self/admin: full profile; anyone else: the public profile",
    response_model=Success[UserProfileOut],
    responses={200: {"headers": success_headers(ETAG, STALE)}, **errors(404)},
)
async def get_user(
    user_id: UserId,
    viewer: OptionalUser,
    settings: AppSettings,
    reads: QueryReads,
    redis: RedisClient,
    consistency: ConsistencyToken = None,
) -> JSONResponse:
    profile, fresh = await queries.profile(reads, redis, settings, user_id, consistency)
    count = await queries.property_count(reads, user_id)
    if queries.can_see_everything(viewer, user_id):
        headers = {"ETag": f'"{profile["version"]}"', **queries.freshness_headers(fresh)}
        return ok(queries.full_profile(profile, count), "User profile", headers)
    return ok(queries.public_profile(profile, count), "User profile", queries.freshness_headers(fresh))


@users_router.put(
    "/{user_id}",
    summary="Update name/phone (self or admin); If-Match -> 409 when stale",
    response_model=Success[UserVersionOut],
    responses={200: {"headers": success_headers(ETAG, CONSISTENCY_TOKEN)}, **errors(403, 404, 409)},
)
async def update_user(
    user_id: UserId,
    body: ProfileUpdateIn,
    user: CurrentUser,
    ctx: Context,
    pool: PgPool,
    bus: Commands,
    if_match: IfMatch = None,
) -> JSONResponse:
    commands.require_self_or_admin(user, user_id)
    changes = body.model_dump(mode="json", by_alias=True, exclude_unset=True, exclude_none=True)
    if not changes:
        raise ApiError(422, "Nothing to update", [field_error("body", "send name and/or phone")])
    personal_key = await get_personal_key(pool, user_id)
    if personal_key is None:
        raise ApiError(404, f"User {user_id} not found")
    update = UpdateProfile(
        changes=commands.sealed_profile_changes(personal_key, user_id, changes),
        expected_version=_parse_if_match(if_match),
        actor_role=actor_role(user),
    )
    outcome = await commands.decide(bus, commands.account_command(UPDATE_PROFILE, user_id, update, user, ctx))
    return ok({"id": user_id, "version": outcome.version}, "User updated", commands.decision_headers(outcome))


@users_router.delete(
    "/{user_id}",
    summary="Close the account (self or admin): erase personal data, delist listings",
    response_model=Success[AccountClosedOut],
    responses={200: {"headers": success_headers(ETAG, CONSISTENCY_TOKEN)}, **errors(403, 404, 409)},
)
async def delete_user(
    user_id: UserId,
    user: CurrentUser,
    ctx: Context,
    settings: AppSettings,
    reads: QueryReads,
    redis: RedisClient,
    bus: Commands,
    if_match: IfMatch = None,
    consistency: ConsistencyToken = None,
) -> JSONResponse:
    """A listing created just before is delisted too (the caller's own writes are waited for; send a
    property command's `X-Consistency-Token` for one created from another session): the listings to
    delist are read from the property read model, named in the deletion, and delisted by the account
    decider with it (each through the property decider, as the owner's or the admin's delete).
    `delistedProperties` counts those decided within the wait; the others follow."""
    commands.require_self_or_admin(user, user_id)
    await queries.caught_up(reads, settings, queries.PROPERTIES_CHECKPOINT, consistency, PROPERTIES.name)
    listings = tuple(await queries.live_listing_ids(reads, user_id))
    delete = DeleteAccount(expected_version=_parse_if_match(if_match), actor_role=actor_role(user), listings=listings)
    command = commands.account_command(DELETE_ACCOUNT, user_id, delete, user, ctx)
    outcome, delistings = await commands.close_account(bus, command, listings)
    positions = tuple(position for answer in delistings.values() for position in answer.positions)
    delisted = sum(1 for answer in delistings.values() if answer.verdict == Verdict.ACCEPTED)
    # Every session of the account ends: its access tokens on every device (the deny list every service
    # checks), and its refresh tokens (refresh checks the account is live and revokes the session).
    await deny_account(redis, user_id, settings.jwt_access_ttl_seconds)
    return ok(
        {"id": user_id, "deleted": True, "delistedProperties": delisted},
        "Account closed and personal data erased",
        commands.decision_headers(outcome, tuple(positions)),
    )


@users_router.get(
    "/{user_id}/properties",
    summary="A user's listings (delisted ones too for self/admin)",
    response_model=Success[Page[UserListingOut]],
    responses={200: {"headers": STALE}, **errors(404)},
)
async def user_properties(
    user_id: UserId,
    viewer: OptionalUser,
    paging: PageQuery,
    settings: AppSettings,
    reads: QueryReads,
    consistency: ConsistencyToken = None,
) -> JSONResponse:
    await queries.require_user(reads, user_id)
    everything = queries.can_see_everything(viewer, user_id)
    found, fresh = await queries.listings(reads, settings, user_id, everything, paging, consistency)
    return ok(found, "User properties", queries.freshness_headers(fresh))


@users_router.post(
    "/{user_id}/property-count",
    summary="Recount live listings, record the count as an event",
    response_model=Success[PropertyCountOut],
    responses={200: {"headers": success_headers(ETAG, CONSISTENCY_TOKEN)}, **errors(403, 404, 409)},
)
async def recount_properties(
    user_id: UserId,
    user: CurrentUser,
    ctx: Context,
    settings: AppSettings,
    reads: QueryReads,
    bus: Commands,
    consistency: ConsistencyToken = None,
) -> JSONResponse:
    """Counts the user's live listings in the property read model (send a property command's
    `X-Consistency-Token` to count your own latest write) and records it: `user.property_count_updated`
    when it changed, nothing when it did not, so repeating it is harmless."""
    commands.require_self_or_admin(user, user_id)
    await queries.caught_up(reads, settings, queries.PROPERTIES_CHECKPOINT, consistency, PROPERTIES.name)
    count = await queries.count_live_listings(reads, user_id)
    record = RecordPropertyCount(property_count=count, actor_role=actor_role(user))
    outcome = await commands.decide(bus, commands.account_command(RECORD_PROPERTY_COUNT, user_id, record, user, ctx))
    return ok(
        {"userId": user_id, "propertyCount": count, "version": outcome.version},
        "Property count recorded",
        commands.decision_headers(outcome),
    )
