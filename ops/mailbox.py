"""A local SMTP server that keeps what it receives: every message as an `.eml` file under the state dir.

    python -m ops.mailbox serve [--port 2525] [--dir .state/mailbox]   (started by `make run`)
    python -m ops.mailbox list  [--dir …] [--json]                      what arrived, newest last
    python -m ops.mailbox show  FILE                                    one message as received

A developer sees the actual messages the notification reactor sends (headers, the plain-text and HTML
parts); the tests read them from the same directory. Like a real server it refuses some recipients,
so failure paths can be exercised end to end (RFC 2606 reserves `.invalid`, so no real address is
ever refused): `…@bounce.invalid` gets `550 5.1.1` (a permanent failure), `…@tempfail.invalid`
gets `451 4.2.0` (a temporary one).
"""

import argparse
import asyncio
import json
import os
import signal
import sys
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from email import policy
from email.message import EmailMessage
from email.parser import BytesParser
from pathlib import Path
from typing import Any

from aiosmtpd.smtp import SMTP, Envelope, Session

from config import get_settings

BOUNCE_DOMAIN = "bounce.invalid"
TEMPFAIL_DOMAIN = "tempfail.invalid"


class MailboxHandler:
    def __init__(self, directory: Path) -> None:
        self.directory = directory
        directory.mkdir(parents=True, exist_ok=True)

    async def handle_RCPT(
        self, server: SMTP, session: Session, envelope: Envelope, address: str, rcpt_options: list[str]
    ) -> str:
        domain = address.rsplit("@", 1)[-1].lower()
        if domain == BOUNCE_DOMAIN:
            return f"550 5.1.1 <{address}>: Recipient address rejected: mailbox unavailable"
        if domain == TEMPFAIL_DOMAIN:
            return f"451 4.2.0 <{address}>: Recipient temporarily unavailable, try again later"
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        content = envelope.original_content or b""
        trace = f"Return-Path: <{envelope.mail_from}>\r\n".encode()
        trace += b"".join(f"Delivered-To: {rcpt}\r\n".encode() for rcpt in envelope.rcpt_tos)
        name = f"{datetime.now(UTC).strftime('%Y%m%dT%H%M%S%f')}-{uuid.uuid4().hex[:8]}.eml"
        temporary = self.directory / f".{name}.tmp"
        temporary.write_bytes(trace + content)
        os.replace(temporary, self.directory / name)  # a reader never sees half a message
        return "250 2.0.0 Message accepted for delivery"


async def serve(host: str, port: int, directory: Path) -> None:
    handler = MailboxHandler(directory)
    loop = asyncio.get_running_loop()
    server = await loop.create_server(
        lambda: SMTP(handler, hostname="mailbox.local", enable_SMTPUTF8=True, ident="hyderabad-infra mailbox"),
        host=host,
        port=port,
    )
    stop = asyncio.Event()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)
    print(f"mailbox: SMTP on {host}:{port}, keeping messages in {directory}", flush=True)
    async with server:
        await stop.wait()


@dataclass(frozen=True)
class Stored:
    path: Path
    message: EmailMessage

    @property
    def delivered_to(self) -> list[str]:
        return [str(v) for v in self.message.get_all("Delivered-To", [])]

    def part(self, content_type: str) -> str | None:
        found = self.message.get_body(preferencelist=(content_type.split("/")[1],))
        if found is None or found.get_content_type() != content_type:
            return None
        content: Any = found.get_content()
        return str(content)


def read_mailbox(directory: Path) -> list[Stored]:
    """Every message kept, in the order received."""
    if not directory.exists():
        return []
    parser = BytesParser(policy=policy.default)
    messages = []
    for path in sorted(directory.glob("*.eml")):
        with path.open("rb") as handle:
            message = parser.parse(handle)
        assert isinstance(message, EmailMessage)
        messages.append(Stored(path, message))
    return messages


def main(argv: list[str] | None = None) -> int:
    settings = get_settings()
    parser = argparse.ArgumentParser(prog="python -m ops.mailbox", description=__doc__.split("\n\n")[0])
    commands = parser.add_subparsers(dest="command", required=True)
    serve_cmd = commands.add_parser("serve", help="run the SMTP server")
    serve_cmd.add_argument("--host", default=settings.smtp_host)
    serve_cmd.add_argument("--port", type=int, default=settings.smtp_port)
    serve_cmd.add_argument("--dir", type=Path, default=settings.mailbox_path)
    list_cmd = commands.add_parser("list", help="list the messages received")
    list_cmd.add_argument("--dir", type=Path, default=settings.mailbox_path)
    list_cmd.add_argument("--json", action="store_true")
    show_cmd = commands.add_parser("show", help="print one message as received")
    show_cmd.add_argument("file", type=Path)
    show_cmd.add_argument("--dir", type=Path, default=settings.mailbox_path)
    args = parser.parse_args(argv)

    if args.command == "serve":
        asyncio.run(serve(args.host, args.port, args.dir))
        return 0
    if args.command == "show":
        path = args.file if args.file.exists() else args.dir / args.file
        sys.stdout.write(path.read_bytes().decode("utf-8", errors="replace"))
        return 0
    stored = read_mailbox(args.dir)
    if args.json:
        for item in stored:
            m = item.message
            row = {"file": item.path.name, "to": m["To"], "subject": m["Subject"], "date": m["Date"]}
            print(json.dumps(row | {"messageId": m["Message-ID"]}, ensure_ascii=False))
        return 0
    for item in stored:
        m = item.message
        print(f"{item.path.name}  {m['Date']}  to {m['To']}  {m['Subject']}")
    print(f"{len(stored)} message(s) in {args.dir}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
