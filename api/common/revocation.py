"""The access-token deny list in Redis, shared by every service.

Logout puts a token's `jti` here until the token would have expired anyway; closing an account puts
its user id here for as long as any access token issued to it can live. Every service's token check
(`app.state.is_revoked`, set by `create_service` for services that use Redis) refuses both, in one
round trip.
"""

from datetime import UTC, datetime

from redis.asyncio import Redis

from api.common.auth import RevocationCheck


def denied_key(token_id: str) -> str:
    return f"auth:denied-jti:{token_id}"


async def deny(redis: Redis, token_id: str, expires_at: datetime) -> None:
    seconds = int((expires_at - datetime.now(UTC)).total_seconds()) + 10  # + the verifier's leeway
    if seconds > 0:
        await redis.set(denied_key(token_id), b"1", ex=seconds)


def closed_account_key(user_id: str) -> str:
    return f"auth:closed-user:{user_id}"


async def deny_account(redis: Redis, user_id: str, access_ttl_seconds: int) -> None:
    """Every access token of a closed account, on every device, refused from now until the last one
    issued would have expired anyway (+ the verifier's leeway)."""
    await redis.set(closed_account_key(user_id), b"1", ex=access_ttl_seconds + 10)


def deny_list_check(redis: Redis) -> RevocationCheck:
    async def is_revoked(token_id: str, user_id: str) -> bool:
        return bool(await redis.exists(denied_key(token_id), closed_account_key(user_id)))

    return is_revoked
