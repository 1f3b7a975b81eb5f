"""The access-token deny list in Redis, shared by every service.

Revoking a session (logout, a reused refresh token) puts its id here for as long as any access token
issued in it can live, so every one of them is refused at once, not only the one presented; closing an
account does the same with its user id. Every service's token check (`app.state.is_revoked`, set by
`create_service` for services that use Redis) refuses all three (token, session, account) in one round
trip, which also reads the caller's own latest writes (`api/common/own_writes.py`).
"""

from redis.asyncio import Redis

from api.common import own_writes
from api.common.auth import RevocationCheck, Standing


def revoked_session_key(session_id: str) -> str:
    return f"auth:revoked-session:{session_id}"


async def deny_session(redis: Redis, session_id: str, access_ttl_seconds: int) -> None:
    """Every access token of the session, from now until the last one issued would have expired anyway
    (+ the verifier's leeway)."""
    await redis.set(revoked_session_key(session_id), b"1", ex=access_ttl_seconds + 10)


def closed_account_key(user_id: str) -> str:
    return f"auth:closed-user:{user_id}"


async def deny_account(redis: Redis, user_id: str, access_ttl_seconds: int) -> None:
    """Every access token of a closed account, on every device, refused from now until the last one
    issued would have expired anyway (+ the verifier's leeway)."""
    await redis.set(closed_account_key(user_id), b"1", ex=access_ttl_seconds + 10)


def deny_list_check(redis: Redis) -> RevocationCheck:
    async def standing(token_id: str, user_id: str, session_id: str) -> Standing:
        # No single token is revoked on its own here: a logout ends its whole session. The user's own
        # latest writes ride along: a query costs one Redis round trip, not two.
        async with redis.pipeline(transaction=False) as pipe:
            pipe.exists(revoked_session_key(session_id), closed_account_key(user_id))
            pipe.hgetall(own_writes.writes_key(own_writes.user_writer(user_id)))
            revoked, writes = await pipe.execute()
        return Standing(revoked=bool(revoked), own_writes=own_writes.decode(writes))

    return standing
