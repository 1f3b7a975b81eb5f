"""User service (port 8081): `uvicorn api.user.main:app --port 8081`."""

from api.common.service import create_service

app = create_service(
    "user",
    title="Hyderabad Infra: user service",
    description=(
        "Accounts and sessions. Will own registration, login (recorded in the user's history), rotating "
        "refresh tokens and logout (`/api/auth/register`, `/login`, `/refresh`, `/logout`), user profiles "
        "(`GET`/`PUT`/`DELETE /api/users/{id}`), a user's listings and their count "
        "(`/api/users/{id}/properties`, `/api/users/{id}/property-count`) and user search "
        "(`/api/users/search`). It signs the EdDSA access tokens every service verifies and keeps the "
        "revocation list in Redis. Commands go to the `users` topic; reads come from Postgres and Redis."
    ),
    uses={"kafka", "postgres", "redis"},
)
