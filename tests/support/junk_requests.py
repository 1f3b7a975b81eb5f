"""Junk requests built from a service's own OpenAPI document: every operation, with random path and
query values, headers and JSON bodies shaped like the schema but filled with the wrong things; and
hostile bodies for every operation: past the body cap (declared, or streamed without a length), nested
thousands deep, and schema-shaped bodies under odd content types. Seeded, so a failure can be replayed."""

import json
import random
from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from typing import Any
from urllib.parse import quote

STRINGS = [
    "",
    " ",
    "a",
    "x" * 5000,
    "\u202e\u0000",
    "'; DROP TABLE users;--",
    "../../etc/passwd",
    "%00",
    "🏠 Gachibowli",
    "-1",
    "0",
    "99999999999999999999999",
    "null",
    "[]",
    "{}",
    "user-abc",
    "prop-abc",
    "file-abc",
    "job-abc",
    "search-abc",
    "notif-abc",
    "2024-13-45T99:99:99Z",
    "NaN",
    "true",
]
VALUES: list[Any] = [*STRINGS, None, -1, 0, 10**30, 1.5e308, True, [], {}, ["a"], {"a": 1}, [None], 3.14]


# Content types FastAPI parses as JSON, and ones it does not: each must be refused or read, never a 5xx.
ODD_CONTENT_TYPES = [
    "application/merge-patch+json",
    "application/vnd.api+json; charset=utf-8",
    "application/json; charset=utf-16",
    "text/plain",
    "application/x-www-form-urlencoded",
    "multipart/form-data",
    "application/xml",
    "",
]


@dataclass
class JunkRequest:
    method: str
    path: str
    params: dict[str, str] = field(default_factory=dict)
    headers: dict[str, str] = field(default_factory=dict)
    json_body: str | None = None
    file: bytes | None = None
    # A hostile body: bytes sent as they are under `content_type`, streamed without a length if `chunked`.
    body: bytes | None = None
    content_type: str | None = None
    chunked: bool = False


def oversized_json(past: int) -> bytes:
    """`[{},{},…]` just past `past` bytes: the shape that costs a parser most memory per byte."""
    return b"[" + b"{}," * (past // 3 + 1) + b"{}]"


def deeply_nested(levels: int, innermost: bytes = b"0") -> bytes:
    return b"[" * levels + innermost + b"]" * levels


class JunkRequests:
    def __init__(self, spec: dict[str, Any], seed: int) -> None:
        self._spec = spec
        self._schemas = spec.get("components", {}).get("schemas", {})
        self._random = random.Random(seed)

    def each_operation(self, times: int) -> Iterator[JunkRequest]:
        for path, operations in self._spec["paths"].items():
            for method, operation in operations.items():
                if method in ("get", "post", "put", "delete", "patch"):
                    for _ in range(times):
                        yield self._request(method, path, operation)

    def hostile_bodies(self, cap: int) -> Iterator[JunkRequest]:
        """For every operation, whatever it takes: a body past `cap` declared and streamed, JSON nested past
        Python's recursion and ~990 deep around a NUL, and a schema-shaped body under an odd content type."""
        oversized = oversized_json(cap)
        for path, operations in self._spec["paths"].items():
            for method, operation in operations.items():
                if method not in ("get", "post", "put", "delete", "patch"):
                    continue
                base = self._request(method, path, operation)
                base.json_body, base.file = None, None
                yield replace(base, body=oversized, content_type="application/json")
                yield replace(base, body=oversized, content_type="application/json", chunked=True)
                yield replace(base, body=deeply_nested(5000), content_type="application/json")
                yield replace(base, body=deeply_nested(990, b'"\\u0000"'), content_type="application/json")
                schema = self._body_schema(operation)
                shaped = json.dumps(self._value(schema, 0), default=str).encode()
                yield replace(base, body=shaped, content_type=self._random.choice(ODD_CONTENT_TYPES))

    def _body_schema(self, operation: dict[str, Any]) -> Any:
        content = (operation.get("requestBody") or {}).get("content", {})
        return self._resolve(content.get("application/json", {}).get("schema", {}))

    def _request(self, method: str, path: str, operation: dict[str, Any]) -> JunkRequest:
        pick = self._random.choice
        request = JunkRequest(method.upper(), path)
        for parameter in operation.get("parameters", []):
            value, where, name = pick(STRINGS), parameter["in"], parameter["name"]
            if where == "path":
                request.path = request.path.replace("{" + name + "}", quote(value, safe="") or "x")
            elif where == "query" and self._random.random() < 0.7:
                request.params[name] = value
            elif where == "header" and self._random.random() < 0.5:
                # Only what HTTP allows in a header; the client would refuse the rest before sending.
                request.headers[name] = "".join(c for c in value if 33 <= ord(c) < 127) or "x"
        content = (operation.get("requestBody") or {}).get("content", {})
        if "application/json" in content:
            schema = self._resolve(content["application/json"].get("schema", {}))
            request.json_body = json.dumps(self._value(schema, 0), default=str)
        elif content:
            request.file = b"junk" * self._random.randint(0, 100)
        return request

    def _resolve(self, schema: Any) -> Any:
        if isinstance(schema, dict) and "$ref" in schema:
            return self._resolve(self._schemas[schema["$ref"].split("/")[-1]])
        return schema

    def _value(self, schema: Any, depth: int) -> Any:
        schema = self._resolve(schema)
        if self._random.random() < 0.2 or depth > 3 or not isinstance(schema, dict):
            return self._random.choice(VALUES)
        if schema.get("type") == "object" or "properties" in schema:
            properties = schema.get("properties", {})
            return {k: self._value(v, depth + 1) for k, v in properties.items() if self._random.random() < 0.8}
        if schema.get("type") == "array":
            return [self._value(schema.get("items", {}), depth + 1) for _ in range(self._random.randint(0, 3))]
        return self._random.choice(VALUES)
