"""Login throttling without lockout (OWASP ASVS 4.0.3 V2.2.1, 5.0 V6.1.1).

Failures are counted in three scopes: the account from one address, the account from any address, and
the address over every account. Past a scope's free failures the next attempt in it must wait 2^k
seconds from the last failure's answer (k = failures beyond the free ones), up to the scope's cap; an
attempt during a wait answers 429 with `Retry-After` and is not counted. The account's own scope allows
more failures and caps lower than the pair's, so an attacker guessing from elsewhere slows the owner at
most briefly and never locks them out; the address scope's ceiling is high, because one carrier-grade
NAT address is shared by many people.

Every attempt counts as a failure before the password is checked (one Lua script: check and count in
one step), so concurrent guesses cannot all pass the check before any is counted; a success then
forgives: the account's and the pair's counts go, and the address's takes this attempt back.
"""

import hashlib
import math

from redis.asyncio import Redis

from api.common.rate_limits import RateLimited
from config.settings import Settings

_PREFIX = "auth:login-failures:"

# KEYS: the scopes' hashes (f = failures, u = when the next attempt may come). ARGV: the window, then
# (free failures, longest delay) per key. Returns the wait in seconds ('0': counted and allowed).
_ATTEMPT = """
local clock = redis.call('TIME')
local now = tonumber(clock[1]) + tonumber(clock[2]) / 1000000
local wait = 0
for i = 1, #KEYS do
  -- A delay holds only while the scope is past its free failures (as this caller counts them).
  local held = redis.call('HMGET', KEYS[i], 'f', 'u')
  local failures, next_at = tonumber(held[1] or '0'), tonumber(held[2] or '0')
  if failures >= tonumber(ARGV[2 * i]) and next_at - now > wait then wait = next_at - now end
end
if wait > 0 then return tostring(wait) end
local window = tonumber(ARGV[1])
for i = 1, #KEYS do
  local free, longest = tonumber(ARGV[2 * i]), tonumber(ARGV[2 * i + 1])
  local failures = redis.call('HINCRBY', KEYS[i], 'f', 1)
  local delay = 0
  if failures >= free then
    delay = math.min(longest, 2 ^ (failures - free))
    redis.call('HSET', KEYS[i], 'u', tostring(now + delay))
  end
  redis.call('EXPIRE', KEYS[i], math.ceil(math.max(window, delay)))
end
return '0'
"""

# The password was wrong: each delay runs from now, the failure's answer, rather than from the attempt's
# start (checking a password takes a while). Same KEYS and ARGV as the attempt.
_FAILED = """
local clock = redis.call('TIME')
local now = tonumber(clock[1]) + tonumber(clock[2]) / 1000000
local window = tonumber(ARGV[1])
for i = 1, #KEYS do
  local free, longest = tonumber(ARGV[2 * i]), tonumber(ARGV[2 * i + 1])
  local failures = tonumber(redis.call('HGET', KEYS[i], 'f') or '0')
  if failures >= free then
    local delay = math.min(longest, 2 ^ (failures - free))
    if now + delay > tonumber(redis.call('HGET', KEYS[i], 'u') or '0') then
      redis.call('HSET', KEYS[i], 'u', tostring(now + delay))
      redis.call('EXPIRE', KEYS[i], math.ceil(math.max(window, delay)))
    end
  end
end
return 0
"""

# KEYS: account, pair, address. ARGV: the address's free failures.
_SUCCEEDED = """
redis.call('DEL', KEYS[1], KEYS[2])
if redis.call('EXISTS', KEYS[3]) == 1 then
  local failures = redis.call('HINCRBY', KEYS[3], 'f', -1)
  if failures < tonumber(ARGV[1]) then redis.call('HDEL', KEYS[3], 'u') end
end
return 0
"""

TOO_MANY = "Too many failed logins; try again after the delay"


def _digest(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


class LoginLimits:
    def __init__(self, redis: Redis, settings: Settings) -> None:
        self._settings = settings
        self._attempt = redis.register_script(_ATTEMPT)
        self._succeeded = redis.register_script(_SUCCEEDED)
        self._failed = redis.register_script(_FAILED)

    def _keys(self, email: str, address: str) -> list[str]:
        return [
            f"{_PREFIX}account:{_digest(email)}",
            f"{_PREFIX}pair:{_digest(email + '|' + address)}",
            f"{_PREFIX}address:{address}",
        ]

    def _scopes(self) -> list[int]:
        """The scripts' ARGV: the window, then (free failures, longest delay) per key of `_keys`."""
        s = self._settings
        return [
            s.login_failure_window_seconds,
            s.login_account_free_failures,
            s.login_account_max_delay_seconds,
            s.login_pair_free_failures,
            s.login_pair_max_delay_seconds,
            s.login_address_free_failures,
            s.login_address_max_delay_seconds,
        ]

    async def attempt(self, email: str, address: str) -> None:
        """Counts the attempt as a failure, or raises 429 while a delay runs."""
        wait = float(await self._attempt(keys=self._keys(email, address), args=self._scopes()))
        if wait > 0:
            raise RateLimited(math.ceil(wait), TOO_MANY)

    async def failed(self, email: str, address: str) -> None:
        await self._failed(keys=self._keys(email, address), args=self._scopes())

    async def succeeded(self, email: str, address: str) -> None:
        await self._succeeded(keys=self._keys(email, address), args=[self._settings.login_address_free_failures])
