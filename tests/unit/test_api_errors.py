"""The HTTP contract every service shares: the error envelope, validation naming the field, success
envelopes, pagination and the probes. A tiny app from `create_service(uses=set())` with test-only
routes stands in for a product service; nothing here needs Kafka or a store."""

import base64
import logging
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta, timezone

import httpx
import pytest
from fastapi import FastAPI, HTTPException
from psycopg_pool import PoolTimeout

from api.common.deps import Context
from api.common.errors import ApiError, DependencyUnavailable, field_error, field_path
from api.common.pagination import PageQuery, decode_cursor, encode_cursor, page
from api.common.responses import ApiModel, Timestamp, created, ok
from api.common.service import create_service
from config.settings import Settings

SECRET_DETAIL = "password=hunter2 at /srv/secret/module.py"


class Address(ApiModel):
    city: str
    zip_code: str


class PropertyIn(ApiModel):
    title: str
    price: int
    property_type: str
    address: Address


class PropertyOut(ApiModel):
    id: str
    property_type: str
    created_at: Timestamp


def build_app(settings: Settings) -> FastAPI:
    app = create_service("test", title="Test service", description="Only for tests.", uses=set(), settings=settings)

    @app.post("/api/things")
    async def create_thing(body: PropertyIn):
        out = PropertyOut(
            id="prop-123",
            property_type=body.property_type,
            created_at=datetime(2024, 1, 15, 16, 0, tzinfo=timezone(timedelta(hours=5, minutes=30))),
        )
        return created(out, "Property created", location=f"/api/things/{out.id}")

    @app.get("/api/things")
    async def list_things(params: PageQuery):
        start = params.cursor["after"] if params.cursor else 0
        items = list(range(start, min(start + params.limit, 45)))
        next_cursor = encode_cursor({"after": items[-1] + 1}) if items and items[-1] < 44 else None
        return ok(page(items, next_cursor), "Things")

    @app.get("/api/boom")
    async def boom():
        raise RuntimeError(SECRET_DETAIL)

    @app.get("/api/conflict")
    async def conflict():
        raise ApiError(409, "Email already registered", [field_error("email", "taken")], headers={"X-Why": "dup"})

    @app.get("/api/teapot")
    async def teapot():
        raise HTTPException(status_code=418, detail="I'm a teapot")

    @app.get("/api/kafka-down")
    async def kafka_down():
        raise DependencyUnavailable("kafka")

    @app.get("/api/pool-timeout")
    async def pool_timeout():
        raise PoolTimeout("couldn't get a connection after 10.00 sec")

    @app.get("/api/context")
    async def context(ctx: Context):
        return ok({"correlationId": ctx.correlation_id, "sessionId": ctx.session_id, "userId": ctx.user_id})

    return app


@pytest.fixture
async def client(tmp_path) -> AsyncIterator[httpx.AsyncClient]:
    app = build_app(Settings(jwt_key_dir=tmp_path / "keys"))
    transport = httpx.ASGITransport(app, raise_app_exceptions=False)
    async with (
        app.router.lifespan_context(app),
        httpx.AsyncClient(transport=transport, base_url="http://test") as client,
    ):
        yield client


def assert_error_envelope(response, status: int) -> dict:
    assert response.status_code == status, response.text
    body = response.json()
    assert body["success"] is False
    assert isinstance(body["message"], str) and body["message"]
    assert isinstance(body["errors"], list)
    return body


VALID = {
    "title": "3BHK Apartment",
    "price": 9500000,
    "propertyType": "APARTMENT",
    "address": {"city": "Hyderabad", "zipCode": "500032"},
}


async def test_created_answers_201_with_location_and_camel_case_data(client):
    response = await client.post("/api/things", json=VALID)
    assert response.status_code == 201
    assert response.headers["Location"] == "/api/things/prop-123"
    assert response.json() == {
        "success": True,
        "message": "Property created",
        "data": {"id": "prop-123", "propertyType": "APARTMENT", "createdAt": "2024-01-15T10:30:00.000Z"},
    }


async def test_body_fields_are_accepted_by_python_name_too(client):
    body = {**VALID, "property_type": "VILLA"}
    del body["propertyType"]
    assert (await client.post("/api/things", json=body)).json()["data"]["propertyType"] == "VILLA"


async def test_validation_error_names_each_bad_field_in_camel_case(client):
    body = {"title": "x", "price": "a lot", "address": {"city": "Hyderabad"}}
    response = await client.post("/api/things", json=body)
    errors = assert_error_envelope(response, 422)["errors"]
    fields = {error["field"] for error in errors}
    assert fields == {"price", "propertyType", "address.zipCode"}
    assert all(error["message"] for error in errors)
    assert "price" in response.json()["message"]


async def test_a_nul_character_anywhere_in_a_json_body_is_a_422_naming_its_field(client):
    """Postgres text cannot hold \u0000: accepted, it would be lost by every projection."""
    for body, field in (
        ({**VALID, "title": "3BHK\x00Apartment"}, "title"),
        ({**VALID, "address": {"city": "Hyder\x00abad", "zipCode": "500032"}}, "address.city"),
        ({**VALID, "tags": ["ok", "n\x00"]}, "tags[1]"),
    ):
        response = await client.post("/api/things", json=body)
        errors = assert_error_envelope(response, 422)["errors"]
        assert errors == [{"field": field, "message": "must not contain a NUL character (\\u0000)"}]
    # A backslash and "u0000" typed as text are not a NUL: accepted.
    typed = await client.post("/api/things", json={**VALID, "title": "C:\\u0000 drive"})
    assert typed.status_code == 201, typed.text


async def test_a_nul_character_in_a_query_parameter_is_a_422_naming_it(client):
    response = await client.get("/api/things?limit=5&q=ab%00cd")
    assert assert_error_envelope(response, 422)["errors"][0]["field"] == "q"
    assert (await client.get("/api/things?limit=5")).status_code == 200


def test_field_path_forms():
    assert field_path(("body", "address", "zip_code")) == "address.zipCode"
    assert field_path(("body", "images", 2, "caption")) == "images[2].caption"
    assert field_path(("query", "limit")) == "limit"
    assert field_path(("header", "X-Session-Id")) == "X-Session-Id"
    assert field_path(("body",)) == "body"


async def test_missing_body_names_body(client):
    errors = assert_error_envelope(await client.post("/api/things"), 422)["errors"]
    assert [e["field"] for e in errors] == ["body"]


async def test_malformed_json_is_a_400_saying_so(client):
    response = await client.post("/api/things", content=b'{"title": "x",', headers={"Content-Type": "application/json"})
    body = assert_error_envelope(response, 400)
    assert body["message"] == "Request body is not valid JSON"
    assert body["errors"][0]["field"] == "body"


async def test_unknown_route_is_a_404_envelope(client):
    assert_error_envelope(await client.get("/api/nowhere"), 404)


async def test_wrong_method_is_a_405_envelope_with_allow(client):
    response = await client.delete("/api/things")
    assert_error_envelope(response, 405)
    assert response.headers["Allow"]  # Starlette lists the methods of the first path match


async def test_http_exception_keeps_its_status_and_detail(client):
    body = assert_error_envelope(await client.get("/api/teapot"), 418)
    assert body["message"] == "I'm a teapot"


async def test_api_error_carries_status_errors_and_headers(client):
    response = await client.get("/api/conflict")
    body = assert_error_envelope(response, 409)
    assert body == {"success": False, "message": "Email already registered", "errors": [field_error("email", "taken")]}
    assert response.headers["X-Why"] == "dup"


async def test_dependency_unavailable_is_a_503_naming_it(client):
    body = assert_error_envelope(await client.get("/api/kafka-down"), 503)
    assert body["message"] == "kafka is unavailable"
    assert body["errors"][0]["field"] == "kafka"


async def test_a_store_error_escaping_a_route_is_a_503_naming_the_store(client):
    body = assert_error_envelope(await client.get("/api/pool-timeout"), 503)
    assert body["message"] == "postgres is unavailable"


async def test_unexpected_exception_is_a_generic_500_logged_with_its_trace(client, caplog):
    with caplog.at_level(logging.ERROR, logger="api.errors"):
        response = await client.get("/api/boom")
    body = assert_error_envelope(response, 500)
    assert body == {"success": False, "message": "Internal server error", "errors": []}
    for leak in ("hunter2", "RuntimeError", "Traceback", "module.py"):
        assert leak not in response.text
    logged = [r for r in caplog.records if r.name == "api.errors"]
    assert logged and logged[0].exc_info and SECRET_DETAIL in str(logged[0].exc_info[1])


async def test_limit_defaults_to_20_and_the_cursor_walks_every_page(client):
    seen, cursor, pages = [], None, 0
    while True:
        response = await client.get("/api/things", params={"cursor": cursor} if cursor else {})
        assert response.status_code == 200
        data = response.json()["data"]
        assert set(data) == {"items", "nextCursor"}
        seen += data["items"]
        pages += 1
        cursor = data["nextCursor"]
        if cursor is None:
            break
    assert seen == list(range(45))
    assert pages == 3


@pytest.mark.parametrize("limit", ["0", "101", "-1", "ten"])
async def test_limit_out_of_range_is_a_422_naming_limit(client, limit):
    errors = assert_error_envelope(await client.get("/api/things", params={"limit": limit}), 422)["errors"]
    assert [e["field"] for e in errors] == ["limit"]


@pytest.mark.parametrize("limit", [1, 100])
async def test_limit_bounds_are_accepted(client, limit):
    assert len((await client.get("/api/things", params={"limit": limit})).json()["data"]["items"]) == min(limit, 45)


def garbled_cursors() -> list[str]:
    as_b64 = lambda raw: base64.urlsafe_b64encode(raw).decode().rstrip("=")  # noqa: E731
    return ["!!!", "not-base64-at-all", as_b64(b"not json"), as_b64(b"[1, 2]"), as_b64(b"{}"), "a" * 1025]


@pytest.mark.parametrize("cursor", garbled_cursors())
async def test_garbled_cursor_is_rejected_naming_cursor(client, cursor):
    response = await client.get("/api/things", params={"cursor": cursor})
    assert response.status_code in (400, 422)
    assert [e["field"] for e in assert_error_envelope(response, response.status_code)["errors"]] == ["cursor"]


def test_cursor_round_trip_keeps_types():
    position = {"createdAt": "2024-01-15T10:30:00.000Z", "id": "prop-9", "n": 3}
    cursor = encode_cursor(position)
    assert "=" not in cursor and "/" not in cursor and "+" not in cursor
    assert decode_cursor(cursor) == position


async def test_correlation_id_is_echoed_or_created(client):
    given = await client.get("/api/context", headers={"X-Correlation-Id": "corr-abc", "X-Session-Id": "session-1"})
    assert given.headers["X-Correlation-Id"] == "corr-abc"
    assert given.json()["data"] == {"correlationId": "corr-abc", "sessionId": "session-1", "userId": None}
    fresh = await client.get("/api/context", headers={"X-Correlation-Id": "bad\tvalue"})
    assert fresh.headers["X-Correlation-Id"].startswith("corr-")
    assert fresh.json()["data"]["correlationId"] == fresh.headers["X-Correlation-Id"]


async def test_bad_session_header_is_a_422_naming_it(client):
    errors = assert_error_envelope(await client.get("/api/context", headers={"X-Session-Id": "a b"}), 422)["errors"]
    assert [e["field"] for e in errors] == ["X-Session-Id"]


async def test_probes_and_docs(client):
    assert (await client.get("/health")).json() == {
        "success": True,
        "message": "alive",
        "data": {"service": "test", "status": "up"},
    }
    assert (await client.get("/ready")).json() == {"success": True, "message": "ready", "data": {}}
    assert (await client.get("/openapi.json")).json()["info"]["title"] == "Test service"
    assert (await client.get("/docs")).status_code == 200


def test_timestamps_are_utc_with_z():
    out = PropertyOut(id="prop-1", property_type="VILLA", created_at=datetime(2024, 1, 15, 10, 30, tzinfo=UTC))
    assert out.model_dump(mode="json")["createdAt"] == "2024-01-15T10:30:00.000Z"
    with pytest.raises(ValueError, match="time zone"):
        PropertyOut(id="prop-1", property_type="VILLA", created_at=datetime(2024, 1, 15, 10, 30))


def test_unknown_dependency_is_refused_at_build_time():
    with pytest.raises(ValueError, match="unknown dependencies"):
        create_service("x", title="x", description="x", uses={"mongodb"})  # type: ignore[arg-type]


async def test_request_line_is_info_for_writes_and_refusals_and_debug_for_good_reads(client, caplog):
    caplog.set_level(logging.DEBUG, logger="api.request")
    await client.get("/api/context")
    await client.get("/api/conflict")
    await client.post("/api/things", json=VALID)
    await client.get("/api/boom")
    lines = [(r.levelno, r.method, r.path, r.status) for r in caplog.records if r.name == "api.request"]
    assert lines == [
        (logging.DEBUG, "GET", "/api/context", 200),
        (logging.INFO, "GET", "/api/conflict", 409),
        (logging.INFO, "POST", "/api/things", 201),
        (logging.INFO, "GET", "/api/boom", 500),
    ]
    assert all(r.correlation_id.startswith("corr-") for r in caplog.records if r.name == "api.request")
