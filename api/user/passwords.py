"""Passwords: the rules a new one must meet, and argon2id hashing with OWASP's parameters.

argon2id, m = 19 MiB, t = 2, p = 1 (OWASP Password Storage Cheat Sheet's first recommendation):
tens of milliseconds per hash here. Hashing runs in worker threads, at most `HASH_CONCURRENCY` at
once, so a burst of logins cannot take 19 MiB per pool thread of memory, nor starve the event loop.
Unknown emails are verified against a dummy hash, so they cost the same time as a wrong password.
"""

from functools import lru_cache
from pathlib import Path

import anyio
import anyio.to_thread
from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from argon2.low_level import Type

MIN_LENGTH = 10
MAX_LENGTH = 128
HASH_CONCURRENCY = 4
COMMON_PASSWORDS_FILE = Path(__file__).with_name("common_passwords.txt")

HASHER = PasswordHasher(time_cost=2, memory_cost=19 * 1024, parallelism=1, hash_len=32, salt_len=16, type=Type.ID)


@lru_cache
def common_passwords() -> frozenset[str]:
    lines = COMMON_PASSWORDS_FILE.read_text().splitlines()
    return frozenset(line.strip().lower() for line in lines if line.strip() and not line.startswith("#"))


def password_problem(password: str, *, email: str = "", name: str = "") -> str | None:
    """Why this password is refused, or None. Pure; used by registration and the admin CLI."""
    if len(password) < MIN_LENGTH:
        return f"at least {MIN_LENGTH} characters"
    if len(password) > MAX_LENGTH:
        return f"at most {MAX_LENGTH} characters"
    lowered = password.lower()
    if lowered in common_passwords():
        return "too common: it is on the list of the most used passwords"
    if len(set(password)) < 3:
        return "too simple: use more different characters"
    local = email.split("@", 1)[0].lower()
    if (local and len(local) >= 4 and local in lowered) or (name and lowered == name.lower()):
        return "must not contain your email or be your name"
    return None


_limiter: anyio.CapacityLimiter | None = None


def _capacity() -> anyio.CapacityLimiter:
    global _limiter  # one per process, created inside the running loop (never at import)
    if _limiter is None:
        _limiter = anyio.CapacityLimiter(HASH_CONCURRENCY)
    return _limiter


@lru_cache
def dummy_hash() -> str:
    return HASHER.hash("not-a-password-anyone-has")


async def hash_password(password: str) -> str:
    return await anyio.to_thread.run_sync(HASHER.hash, password, limiter=_capacity())


def _verify(stored_hash: str | None, password: str) -> bool:
    try:
        return HASHER.verify(stored_hash or dummy_hash(), password) and stored_hash is not None
    except (VerificationError, InvalidHashError):
        return False


async def verify_password(stored_hash: str | None, password: str) -> bool:
    """False for a wrong password and for no account (`stored_hash=None`), in the same time."""
    return await anyio.to_thread.run_sync(_verify, stored_hash, password, limiter=_capacity())
