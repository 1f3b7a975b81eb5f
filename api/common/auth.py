"""Access tokens: short-lived JWTs signed with Ed25519 (`alg: EdDSA`) and a `kid` naming the key.

Verification trusts nothing in the token before the signature checks out: the algorithm is pinned to
EdDSA (so `none`, or HS256 with the public key as a shared secret, cannot pass) and the key is looked
up by `kid` among our own keys only. Every failure is the same 401 with `WWW-Authenticate: Bearer`;
the reason goes to the log, not to the client.

A token that passed is remembered (`VerifiedTokens`, a bounded LRU keyed by the token's exact text)
until it expires, so a client's next requests skip the signature check and the claim parsing; the
deny list is asked on every request all the same, so a logout or a closed account refuses the
remembered token at once.
"""

import logging
import time
import uuid
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from functools import lru_cache
from pathlib import Path

import jwt

from api.common.errors import ApiError
from api.common.kafka import Position
from api.common.keys import KeyRing
from config.settings import Settings, get_settings
from schemas.properties import Role

logger = logging.getLogger("api.auth")

ALGORITHM = "EdDSA"
# `sid` names the session (the login's refresh-token family): revoking it refuses all its access tokens.
REQUIRED_CLAIMS = ["sub", "role", "iat", "exp", "iss", "aud", "jti", "sid"]
# A few seconds of clock skew between the issuing and the verifying process.
LEEWAY_SECONDS = 5


@dataclass(frozen=True)
class Standing:
    """The deny list's word on a verified token (its session revoked, or its account closed), and the
    positions the user's own latest writes reached, read in the same round trip (`api/common/own_writes.py`)."""

    revoked: bool
    own_writes: tuple[Position, ...] = ()


# Set by a service that keeps a deny list (Redis): given (token id, user id, session id), the token's standing.
RevocationCheck = Callable[[str, str, str], Awaitable[Standing]]


class Unauthorized(ApiError):
    def __init__(self, message: str = "Missing or invalid access token") -> None:
        super().__init__(401, message, headers={"WWW-Authenticate": "Bearer"})


@dataclass(frozen=True)
class AccessClaims:
    subject: str
    role: str
    token_id: str
    session_id: str
    expires_at: datetime
    # What this user's queries wait for without a consistency token (`api/common/own_writes.py`).
    own_writes: tuple[Position, ...] = ()


def actor_role(claims: AccessClaims) -> Role:
    """The role a command says its actor has: the verified token's, and only that. Command bodies refuse
    unknown fields, so no request can put a role of its own into a command."""
    return Role.ADMIN if claims.role == Role.ADMIN else Role.USER


@dataclass(frozen=True)
class _Verified:
    subject: str
    role: str
    token_id: str
    session_id: str
    expires: float  # `exp`, seconds since the epoch


class VerifiedTokens:
    """Tokens whose signature and claims checked out, by their exact text (with what they were checked
    against), until they expire. Bounded: the least recently used is dropped first. A process's keys are
    loaded once and never dropped (`KeyRing`), so a token valid when remembered stays valid to the end
    of its life, but for the deny list, which is not cached."""

    def __init__(self, size: int = 4096) -> None:
        self._size = size
        self._entries: OrderedDict[tuple[str, ...], _Verified] = OrderedDict()

    def get(self, key: tuple[str, ...]) -> _Verified | None:
        found = self._entries.get(key)
        if found is not None:
            self._entries.move_to_end(key)
        return found

    def put(self, key: tuple[str, ...], verified: _Verified) -> None:
        self._entries[key] = verified
        self._entries.move_to_end(key)
        while len(self._entries) > self._size:
            self._entries.popitem(last=False)

    def drop(self, key: tuple[str, ...]) -> None:
        self._entries.pop(key, None)

    def __len__(self) -> int:
        return len(self._entries)


VERIFIED = VerifiedTokens()


def _now() -> float:
    return time.time()


@lru_cache
def keyring_for(directory: Path) -> KeyRing:
    # One ring per directory and process; loading (or creating) the keys waits for first use.
    return KeyRing(directory)


def issue_access_token(
    subject: str,
    role: str,
    session_id: str | None = None,
    ttl: int | None = None,
    *,
    settings: Settings | None = None,
) -> str:
    settings = settings or get_settings()
    kid, key = keyring_for(settings.keys_dir).signing_key()
    now = datetime.now(UTC)
    claims = {
        "sub": subject,
        "role": role,
        "iat": now,
        "exp": now + timedelta(seconds=ttl if ttl is not None else settings.jwt_access_ttl_seconds),
        "iss": settings.jwt_issuer,
        "aud": settings.jwt_audience,
        "jti": uuid.uuid4().hex,
        # A token made outside a login (the admin CLI, tests) is a session of its own.
        "sid": session_id if session_id is not None else f"sess-{uuid.uuid4().hex}",
    }
    return jwt.encode(claims, key, algorithm=ALGORITHM, headers={"kid": kid})


async def verify_access_token(
    token: str,
    *,
    settings: Settings | None = None,
    is_revoked: RevocationCheck | None = None,
) -> AccessClaims:
    settings = settings or get_settings()
    key = (token, str(settings.keys_dir), settings.jwt_audience, settings.jwt_issuer)
    verified = VERIFIED.get(key)
    if verified is not None and _now() >= verified.expires + LEEWAY_SECONDS:
        VERIFIED.drop(key)
        raise Unauthorized("Access token expired")
    if verified is None:
        verified = _verify_signed(token, settings)
        VERIFIED.put(key, verified)
    standing = (
        await is_revoked(verified.token_id, verified.subject, verified.session_id)
        if is_revoked is not None
        else Standing(False)
    )
    if standing.revoked:
        raise Unauthorized("Access token revoked")
    return AccessClaims(
        subject=verified.subject,
        role=verified.role,
        token_id=verified.token_id,
        session_id=verified.session_id,
        expires_at=datetime.fromtimestamp(verified.expires, UTC),
        own_writes=standing.own_writes,
    )


def _verify_signed(token: str, settings: Settings) -> _Verified:
    """The signature, algorithm, key, audience, issuer, times and claims checked; Unauthorized otherwise."""
    try:
        header = jwt.get_unverified_header(token)
        if header.get("alg") != ALGORITHM:
            raise jwt.InvalidAlgorithmError(f"alg {header.get('alg')!r} is not accepted")
        key = keyring_for(settings.keys_dir).public_key(str(header.get("kid")))
        if key is None:
            raise jwt.InvalidKeyError(f"unknown kid {header.get('kid')!r}")
        claims = jwt.decode(
            token,
            key,
            algorithms=[ALGORITHM],
            audience=settings.jwt_audience,
            issuer=settings.jwt_issuer,
            leeway=LEEWAY_SECONDS,
            options={"require": REQUIRED_CLAIMS},
        )
    except jwt.ExpiredSignatureError:
        raise Unauthorized("Access token expired") from None
    except jwt.PyJWTError as exc:
        logger.info("rejected access token: %s", exc)
        raise Unauthorized() from None
    if not all(isinstance(claims[name], str) for name in ("sub", "role", "jti", "sid")):
        raise Unauthorized()
    return _Verified(claims["sub"], claims["role"], claims["jti"], claims["sid"], float(claims["exp"]))
