"""A local SMS gateway sink: an HTTP API in the shape of a common SMS gateway that records each message
as a JSON line under the state dir instead of sending it.

    python -m ops.sms_sink serve [--port 8095] [--dir .state/sms] [--max-per-second N]  (`make run`)
    python -m ops.sms_sink list  [--dir …]

`POST /v1/messages` with `Authorization: Bearer <HI_SMS_API_KEY>` and `{"to", "from", "body",
"reference"}` answers `201 {"id", "status": "queued"}`. Like a gateway it answers 401 for a wrong key,
400 `invalid_number` for a `to` that is not E.164, 400 `body_too_long` past 480 characters and, with
`--max-per-second`, 429 with `Retry-After`. `GET /v1/messages` lists what was recorded.
"""

import argparse
import hmac
import json
import re
import sys
import threading
import time
import uuid
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from config import get_settings

E164 = re.compile(r"^\+[1-9][0-9]{7,14}$")
MAX_BODY = 480
LOG_NAME = "messages.jsonl"


class SmsSink:
    def __init__(self, directory: Path, api_key: str, max_per_second: int = 0) -> None:
        self.directory = directory
        self.api_key = api_key
        self.max_per_second = max_per_second
        self._lock = threading.Lock()
        self._window: list[float] = []
        directory.mkdir(parents=True, exist_ok=True)

    def limited(self) -> bool:
        if self.max_per_second <= 0:
            return False
        with self._lock:
            now = time.monotonic()
            self._window = [t for t in self._window if now - t < 1.0]
            if len(self._window) >= self.max_per_second:
                return True
            self._window.append(now)
            return False

    def record(self, message: dict[str, Any]) -> None:
        line = json.dumps(message, ensure_ascii=False) + "\n"
        with self._lock, (self.directory / LOG_NAME).open("a", encoding="utf-8") as log:
            log.write(line)
            log.flush()


def read_messages(directory: Path) -> list[dict[str, Any]]:
    path = directory / LOG_NAME
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def _handler(sink: SmsSink) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        server_version = "hyderabad-sms-sink/1"

        def log_message(self, format: str, *args: Any) -> None:
            sys.stderr.write(f"sms-sink: {format % args}\n")

        def _answer(self, status: int, body: dict[str, Any], headers: dict[str, str] | None = None) -> None:
            raw = json.dumps(body).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(raw)))
            for name, value in (headers or {}).items():
                self.send_header(name, value)
            self.end_headers()
            self.wfile.write(raw)

        def _error(self, status: int, code: str, message: str, headers: dict[str, str] | None = None) -> None:
            self._answer(status, {"error": {"code": code, "message": message}}, headers)

        def do_GET(self) -> None:
            if self.path.rstrip("/") == "/v1/messages":
                self._answer(200, {"messages": read_messages(sink.directory)})
            elif self.path == "/health":
                self._answer(200, {"status": "up"})
            else:
                self._error(404, "not_found", "no such resource")

        def do_POST(self) -> None:
            if self.path.rstrip("/") != "/v1/messages":
                self._error(404, "not_found", "no such resource")
                return
            given = self.headers.get("Authorization", "")
            if not hmac.compare_digest(given.encode(), f"Bearer {sink.api_key}".encode()):
                self._error(401, "unauthorized", "missing or wrong API key")
                return
            if sink.limited():
                self._error(429, "rate_limited", "too many messages; slow down", {"Retry-After": "1"})
                return
            try:
                length = int(self.headers.get("Content-Length", "0"))
                body = json.loads(self.rfile.read(length) or b"{}")
            except ValueError:
                self._error(400, "invalid_json", "the body is not JSON")
                return
            to, text = body.get("to"), body.get("body")
            if not isinstance(to, str) or not E164.match(to):
                self._error(400, "invalid_number", "`to` must be an E.164 number")
                return
            if not isinstance(text, str) or not text:
                self._error(400, "missing_body", "`body` is required")
                return
            if len(text) > MAX_BODY:
                self._error(400, "body_too_long", f"`body` is limited to {MAX_BODY} characters")
                return
            message_id = f"sms-{uuid.uuid4().hex}"
            sink.record(
                {
                    "id": message_id,
                    "receivedAt": datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z"),
                    "to": to,
                    "from": body.get("from"),
                    "body": text,
                    "reference": body.get("reference"),
                    "idempotencyKey": self.headers.get("Idempotency-Key"),
                }
            )
            self._answer(201, {"id": message_id, "status": "queued"})

    return Handler


def main(argv: list[str] | None = None) -> int:
    settings = get_settings()
    parser = argparse.ArgumentParser(prog="python -m ops.sms_sink", description=__doc__.split("\n\n")[0])
    commands = parser.add_subparsers(dest="command", required=True)
    serve_cmd = commands.add_parser("serve")
    serve_cmd.add_argument("--host", default="127.0.0.1")
    serve_cmd.add_argument("--port", type=int, default=settings.sms_sink_port)
    serve_cmd.add_argument("--dir", type=Path, default=settings.sms_sink_path)
    serve_cmd.add_argument("--max-per-second", type=int, default=0)
    list_cmd = commands.add_parser("list")
    list_cmd.add_argument("--dir", type=Path, default=settings.sms_sink_path)
    args = parser.parse_args(argv)
    if args.command == "list":
        messages = read_messages(args.dir)
        for m in messages:
            print(f"{m['receivedAt']}  to {m['to']}  {m['body'][:80]!r}")
        print(f"{len(messages)} message(s) in {args.dir / LOG_NAME}")
        return 0
    sink = SmsSink(args.dir, settings.sms_api_key.get_secret_value(), args.max_per_second)
    server = ThreadingHTTPServer((args.host, args.port), _handler(sink))
    print(f"sms-sink: HTTP on {args.host}:{args.port}, recording to {args.dir / LOG_NAME}", flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
