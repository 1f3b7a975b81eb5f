"""Access tokens: EdDSA only, our keys only, claims checked; every failure a 401 with the envelope and
`WWW-Authenticate: Bearer`. Keys are generated into a pytest temp dir on first use."""

import base64
import hashlib
import hmac
import json
import stat
import time
from collections.abc import AsyncIterator
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import httpx
import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from fastapi import FastAPI

from api.common import auth
from api.common.auth import (
    LEEWAY_SECONDS,
    Standing,
    VerifiedTokens,
    _Verified,
    issue_access_token,
    keyring_for,
    verify_access_token,
)
from api.common.deps import Context, CurrentUser, OptionalUser
from api.common.keys import KeyRing
from api.common.responses import ok
from api.common.service import create_service
from config.settings import Settings


@pytest.fixture
def settings(tmp_path) -> Settings:
    return Settings(jwt_key_dir=tmp_path / "keys")


def build_app(settings: Settings) -> FastAPI:
    app = create_service("test", title="Test", description="Only for tests.", uses=set(), settings=settings)

    @app.get("/api/me")
    async def me(user: CurrentUser, ctx: Context):
        return ok({"sub": user.subject, "role": user.role, "sessionId": ctx.session_id, "userId": ctx.user_id})

    @app.get("/api/maybe")
    async def maybe(user: OptionalUser):
        return ok({"sub": user.subject if user else None})

    return app


@pytest.fixture
async def app(settings) -> AsyncIterator[FastAPI]:
    app = build_app(settings)
    async with app.router.lifespan_context(app):
        yield app


@pytest.fixture
async def client(app) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app), base_url="http://test") as client:
        yield client


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def claims_for(settings: Settings, **overrides) -> dict:
    now = int(time.time())
    base = {"sub": "user-456", "role": "user", "iat": now, "exp": now + 300, "jti": "t1", "sid": "sess-1"}
    return {**base, "iss": settings.jwt_issuer, "aud": settings.jwt_audience, **overrides}


def current_kid(settings: Settings) -> str:
    return keyring_for(settings.keys_dir).signing_key()[0]


async def assert_401(client: httpx.AsyncClient, headers: dict[str, str], path: str = "/api/me") -> dict:
    response = await client.get(path, headers=headers)
    assert response.status_code == 401, response.text
    assert response.headers["WWW-Authenticate"].startswith("Bearer")
    body = response.json()
    assert body["success"] is False and body["message"]
    return body


async def test_valid_token_identifies_the_caller(client, settings):
    token = issue_access_token("user-456", "agent", session_id="session-abc", settings=settings)
    response = await client.get("/api/me", headers=bearer(token))
    assert response.status_code == 200
    assert response.json()["data"] == {
        "sub": "user-456",
        "role": "agent",
        "sessionId": "session-abc",
        "userId": "user-456",
    }


async def test_token_carries_the_agreed_header_and_claims(settings):
    token = issue_access_token("user-1", "user", settings=settings)
    header = jwt.get_unverified_header(token)
    assert header["alg"] == "EdDSA" and header["kid"] == current_kid(settings)
    claims = jwt.decode(token, options={"verify_signature": False})
    assert set(claims) == {"sub", "role", "iat", "exp", "iss", "aud", "jti", "sid"}
    assert claims["exp"] - claims["iat"] == settings.jwt_access_ttl_seconds
    assert (await verify_access_token(token, settings=settings)).subject == "user-1"


async def test_missing_token_is_401(client):
    body = await assert_401(client, {})
    assert body["message"] == "Missing access token"


async def test_non_bearer_authorization_is_401(client):
    await assert_401(client, {"Authorization": "Basic dXNlcjpwdw=="})


async def test_garbage_token_is_401(client):
    await assert_401(client, bearer("not.a.jwt"))


async def test_tampered_signature_is_401(client, settings):
    head, payload, signature = issue_access_token("user-456", "user", settings=settings).split(".")
    raw = bytearray(base64.urlsafe_b64decode(signature + "=="))
    raw[10] ^= 0x01
    assert b64(bytes(raw)) != signature
    await assert_401(client, bearer(f"{head}.{payload}.{b64(bytes(raw))}"))


async def test_tampered_claims_are_401(client, settings):
    head, _, signature = issue_access_token("user-456", "user", settings=settings).split(".")
    forged = b64(json.dumps(claims_for(settings, role="admin")).encode())
    await assert_401(client, bearer(f"{head}.{forged}.{signature}"))


async def test_alg_none_is_401(client, settings):
    header = {"alg": "none", "typ": "JWT", "kid": current_kid(settings)}
    token = f"{b64(json.dumps(header).encode())}.{b64(json.dumps(claims_for(settings)).encode())}."
    await assert_401(client, bearer(token))


async def test_hs256_with_the_public_key_as_secret_is_401(client, settings):
    kid, private = keyring_for(settings.keys_dir).signing_key()
    public_pem = private.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    signing_input = ".".join(
        b64(json.dumps(part).encode()) for part in ({"alg": "HS256", "typ": "JWT", "kid": kid}, claims_for(settings))
    )
    mac = hmac.new(public_pem, signing_input.encode(), hashlib.sha256).digest()
    await assert_401(client, bearer(f"{signing_input}.{b64(mac)}"))


async def test_unknown_kid_is_401(client, settings):
    stranger = Ed25519PrivateKey.generate()
    token = jwt.encode(claims_for(settings), stranger, algorithm="EdDSA", headers={"kid": "k-stranger"})
    await assert_401(client, bearer(token))


async def test_our_kid_on_a_strangers_key_is_401(client, settings):
    stranger = Ed25519PrivateKey.generate()
    token = jwt.encode(claims_for(settings), stranger, algorithm="EdDSA", headers={"kid": current_kid(settings)})
    await assert_401(client, bearer(token))


async def test_expired_token_is_401_saying_so(client, settings):
    token = issue_access_token("user-456", "user", ttl=-60, settings=settings)
    body = await assert_401(client, bearer(token))
    assert body["message"] == "Access token expired"


@pytest.mark.parametrize("field", ["jwt_audience", "jwt_issuer"])
async def test_wrong_audience_or_issuer_is_401(client, settings, field):
    other = settings.model_copy(update={field: "someone-else"})
    await assert_401(client, bearer(issue_access_token("user-456", "user", settings=other)))


@pytest.mark.parametrize("missing", ["sub", "role", "exp", "jti", "sid"])
async def test_a_missing_claim_is_401(client, settings, missing):
    _, private = keyring_for(settings.keys_dir).signing_key()
    claims = claims_for(settings)
    del claims[missing]
    token = jwt.encode(claims, private, algorithm="EdDSA", headers={"kid": current_kid(settings)})
    await assert_401(client, bearer(token))


async def test_x_user_id_must_match_the_token_subject(client, settings):
    token = issue_access_token("user-456", "user", settings=settings)
    same = await client.get("/api/me", headers={**bearer(token), "X-User-Id": "user-456"})
    assert same.status_code == 200
    other = await client.get("/api/me", headers={**bearer(token), "X-User-Id": "user-999"})
    assert other.status_code == 403
    assert other.json()["errors"][0]["field"] == "X-User-Id"


async def test_optional_user_is_none_without_a_token_but_still_checks_one_given(client, settings):
    assert (await client.get("/api/maybe")).json()["data"] == {"sub": None}
    token = issue_access_token("user-7", "user", settings=settings)
    assert (await client.get("/api/maybe", headers=bearer(token))).json()["data"] == {"sub": "user-7"}
    await assert_401(client, bearer(token + "x"), path="/api/maybe")
    await assert_401(client, {"X-User-Id": "user-7"}, path="/api/maybe")


async def test_revocation_hook_is_consulted_with_the_session(app, client, settings):
    token = issue_access_token("user-456", "user", session_id="sess-revoked", settings=settings)

    async def is_revoked(token_id: str, subject: str, session_id: str) -> Standing:
        assert subject == "user-456" and token_id
        return Standing(revoked=session_id == "sess-revoked")

    same_session = issue_access_token("user-456", "user", session_id="sess-revoked", settings=settings)
    app.state.is_revoked = is_revoked
    body = await assert_401(client, bearer(token))
    assert body["message"] == "Access token revoked"
    await assert_401(client, bearer(same_session))
    fresh = issue_access_token("user-456", "user", settings=settings)
    assert (await client.get("/api/me", headers=bearer(fresh))).status_code == 200


def test_first_use_creates_a_private_key_only_we_can_read(tmp_path):
    directory = tmp_path / "keys"
    kid, _ = KeyRing(directory).signing_key()
    assert stat.S_IMODE(directory.stat().st_mode) == 0o700
    assert stat.S_IMODE((directory / f"{kid}.pem").stat().st_mode) == 0o600
    assert (directory / "current").read_text().strip() == kid
    assert KeyRing(directory).signing_key()[0] == kid  # a second process reuses it
    assert not list(directory.glob(".tmp-*"))


def _signing_kid(directory: str) -> str:
    return KeyRing(Path(directory)).signing_key()[0]


def test_processes_racing_on_an_empty_dir_agree_on_one_key(tmp_path):
    directory = str(tmp_path / "keys")
    with ProcessPoolExecutor(max_workers=8) as pool:
        kids = set(pool.map(_signing_kid, [directory] * 16))
    assert len(kids) == 1
    assert [p.stem for p in Path(directory).glob("*.pem")] == list(kids)


async def test_a_remembered_token_is_still_refused_once_its_session_is_revoked(app, client, settings):
    token = issue_access_token("user-456", "user", session_id="sess-later-revoked", settings=settings)
    revoked: set[str] = set()

    async def is_revoked(token_id: str, subject: str, session_id: str) -> Standing:
        return Standing(revoked=session_id in revoked)

    app.state.is_revoked = is_revoked
    assert (await client.get("/api/me", headers=bearer(token))).status_code == 200  # verified and remembered
    revoked.add("sess-later-revoked")
    body = await assert_401(client, bearer(token))
    assert body["message"] == "Access token revoked"


async def test_a_remembered_token_expires_with_its_exp(client, settings, monkeypatch):
    token = issue_access_token("user-456", "user", ttl=60, settings=settings)
    assert (await client.get("/api/me", headers=bearer(token))).status_code == 200  # verified and remembered
    later = time.time() + 60 + LEEWAY_SECONDS + 1
    monkeypatch.setattr(auth, "_now", lambda: later)
    body = await assert_401(client, bearer(token))
    assert body["message"] == "Access token expired"


def test_remembered_tokens_are_bounded_dropping_the_least_recently_used():
    tokens = VerifiedTokens(size=2)
    first, second, third = (("a",), ("b",), ("c",))
    for key in (first, second):
        tokens.put(key, _Verified("user-1", "user", key[0], "sess-1", time.time() + 60))
    assert tokens.get(first) is not None  # `second` is now the least recently used
    tokens.put(third, _Verified("user-1", "user", "c", "sess-1", time.time() + 60))
    assert len(tokens) == 2
    assert tokens.get(second) is None and tokens.get(first) is not None and tokens.get(third) is not None
