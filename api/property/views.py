"""Which views of a listing count: one per viewer and window, so nobody can push a listing into
"featured" by sending views.

The viewer is the signed-in user, else the client's address (`api/common/client_address.py`: only
trusted proxies' `X-Forwarded-For` hops are believed) with a hash of its user agent. A viewer's first
view in `HI_VIEW_WINDOW_SECONDS` (30 min) is counted (the `property.viewed` event); the others are
answered 202 without one. Changing user agents to look like many viewers is bounded twice: at most
`HI_VIEW_MAX_ANONYMOUS_PER_ADDRESS` anonymous viewers of one listing per address and window are
counted, and one address may send `HI_VIEW_MAX_PER_ADDRESS_PER_MINUTE` views a minute (then 429).

Redis keys, each expiring with its window: `view:seen:{property}:{viewer}` (SET NX: the first view
wins, atomically), `view:anonymous:{property}:{address}` (anonymous viewers counted), and the limit
`rate:view:address:{address}`.
"""

import hashlib

from redis.asyncio import Redis

from api.common.auth import AccessClaims
from api.common.rate_limits import count_in_window, counted
from config.settings import Settings

_MINUTE = 60


def viewer_of(user: AccessClaims | None, address: str, user_agent: str) -> str:
    if user is not None:
        return user.subject
    # A digest, so Redis keeps neither the address nor the agent with the listing it was seen on.
    return "anon-" + hashlib.sha256(f"{address}\x00{user_agent}".encode()).hexdigest()[:32]


async def _anonymous_viewer_allowed(redis: Redis, property_id: str, address: str, most: int, window: int) -> bool:
    count, _ = await counted(redis, f"view:anonymous:{property_id}:{address}", window)
    return count <= most


async def counted_view(
    redis: Redis, settings: Settings, property_id: str, user: AccessClaims | None, address: str, user_agent: str
) -> str | None:
    """The viewer, when this view counts (the caller produces the event, or calls `forget_view` if it
    could not); None when this viewer's view in this window was counted already. 429 past the rate."""
    await count_in_window(
        redis,
        f"rate:view:address:{address}",
        settings.view_max_per_address_per_minute,
        _MINUTE,
        "Too many views; try again later",
    )
    window = settings.view_window_seconds
    viewer = viewer_of(user, address, user_agent)
    if not await redis.set(f"view:seen:{property_id}:{viewer}", b"1", nx=True, ex=window):
        return None
    if user is None and not await _anonymous_viewer_allowed(
        redis, property_id, address, settings.view_max_anonymous_per_address, window
    ):
        return None
    return viewer


async def forget_view(redis: Redis, property_id: str, viewer: str) -> None:
    """The view could not be recorded: the viewer's next try counts."""
    await redis.delete(f"view:seen:{property_id}:{viewer}")
