"""Sessions in Redis: rotating refresh tokens.

Refresh tokens are opaque (32 random bytes); Redis keeps only their SHA-256, so a dump of Redis
cannot be replayed. Each login starts a family (its id is the access token's `sid`); each refresh
marks the presented token used and issues the next one in the family. A token presented a second
time means it was stolen (or the client is confused): the whole family is revoked.
"""

import hashlib
import secrets
from dataclasses import dataclass

import orjson
from redis.asyncio import Redis

from api.common.auth import Unauthorized
from api.common.revocation import deny_session

_REFRESH = "auth:refresh:"
_USED = "auth:refresh-used:"
_FAMILY = "auth:family:"


def _digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


@dataclass(frozen=True)
class RefreshGrant:
    user_id: str
    family: str


def new_family() -> str:
    return f"sess-{secrets.token_hex(16)}"


async def issue_refresh_token(redis: Redis, user_id: str, family: str, ttl: int, *, new: bool) -> str:
    token = secrets.token_urlsafe(32)
    async with redis.pipeline(transaction=True) as pipe:
        if new:
            pipe.set(_FAMILY + family, user_id, ex=ttl)
        pipe.set(_REFRESH + _digest(token), orjson.dumps({"userId": user_id, "family": family}), ex=ttl)
        await pipe.execute()
    return token


async def rotate(redis: Redis, token: str, ttl: int, access_ttl: int) -> RefreshGrant:
    """The grant the token stands for, marking it used; 401 when unknown, revoked or reused (which
    revokes the session: its refresh tokens and every access token issued in it)."""
    digest = _digest(token)
    raw = await redis.get(_REFRESH + digest)
    if raw is None:
        raise Unauthorized("Invalid refresh token")
    record = orjson.loads(raw)
    grant = RefreshGrant(record["userId"], record["family"])
    if not await redis.exists(_FAMILY + grant.family):
        raise Unauthorized("Session revoked; log in again")
    if not await redis.set(_USED + digest, b"1", nx=True, ex=ttl):
        await revoke_family(redis, grant.family, access_ttl)
        raise Unauthorized("Refresh token reused; every session token of this login is revoked")
    return grant


async def revoke_family(redis: Redis, family: str, access_ttl: int) -> None:
    """The session ends: no refresh token of it rotates again, and no access token of it is accepted
    (the family id is the tokens' `sid`)."""
    await redis.delete(_FAMILY + family)
    await deny_session(redis, family, access_ttl)


async def family_active(redis: Redis, family: str) -> bool:
    return bool(await redis.exists(_FAMILY + family))
