"""User service (port 8081): `uvicorn api.user.main:app --port 8081`."""

from api.common.service import create_service
from api.user.queries import READ_MODELS
from api.user.routes import auth_router, users_router

app = create_service(
    "user",
    title="Hyderabad Infra: user service",
    description=(
        "Accounts and sessions: registration, login, rotating refresh tokens and logout "
        "(`/api/auth/register`, `/login`, `/refresh`, `/logout`), profiles (`GET`/`PUT`/`DELETE "
        "/api/users/{id}`), a user's listings and their count (`/api/users/{id}/properties`, "
        "`/api/users/{id}/property-count`) and user search (`/api/users/search`: signed in, a prefix of two or "
        "more characters, rate-limited per user; roles, emails and phones for admins).\n\n"
        "**Registration** goes to `user-registrations`, keyed by an HMAC of the normalised email (trimmed, "
        "lower-cased): one decider per address, so of concurrent registrations of one email exactly one "
        "gets 201 and the others 409. Email is immutable after registration. Passwords: at least 10 "
        "characters, not among the common ones, hashed with argon2id (m = 19 MiB, t = 2, p = 1) here; "
        "only the hash travels.\n\n"
        "**Sessions**: access tokens are EdDSA JWTs (`kid`, `jti`, 15 min); refresh tokens are opaque, "
        "kept hashed in Redis for 30 days from login, and rotate on every use; presenting a rotated one "
        "again revokes the whole session. Logout, or a reused refresh token, revokes the session: its refresh "
        "tokens, and every access token issued in it (the `sid` claim), refused by every service at once "
        "(a Redis deny list by session). Login answers the same 401 for an unknown email and a "
        "wrong password. Failures slow the next attempts down and never lock anyone out: past 5 failures of "
        "one account from one address, 10 of one account from anywhere or 100 from one address, the next "
        "attempt there waits 1, 2, 4 … s (429 with `Retry-After` while it runs). Registration is limited per "
        "client address and per email (429 with `Retry-After`).\n\n"
        "**Roles** USER and ADMIN; the first admin is made by `python -m ops.create_admin`, never here.\n\n"
        "**DELETE** closes the account: the account decider records `user.deleted.v1`, the projection "
        "erases email, phone, name and password hash from Postgres and Redis (a tombstone keeps the id and "
        "version) and deletes the user's key, the user's listings are delisted, every access token of the "
        "account is refused at once, login and refresh fail, GET answers 404. Personal fields only ever "
        "travel sealed with that per-user key, so the events Kafka keeps forever become unreadable "
        "(crypto-shredding). Login waits (bounded) for the address's own registration: sign in right "
        "after signing up, no token needed."
    ),
    uses={"kafka", "postgres", "redis"},
    read_models=READ_MODELS,
    sends_commands=True,
)
app.include_router(auth_router)
app.include_router(users_router)
