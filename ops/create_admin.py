"""Create an ADMIN account through the real command path: `python -m ops.create_admin --email … --name …
--phone … --password-stdin` (the password is read from stdin, never from argv or the environment).

The API never grants ADMIN; this sends the same registration command the API sends, with role ADMIN, to
`user-registrations`, and waits for the registry's and account decider's answer (201-like success, or
409 when the email is taken). Needs Kafka and the two user deciders running (`make run`).
"""

import argparse
import asyncio
import sys

from psycopg_pool import AsyncConnectionPool

from api.common.commands import CommandBus
from api.common.errors import ApiError
from api.common.kafka import EventProducer
from api.common.personal_keys import create_personal_key
from api.user.commands import register, registration
from api.user.passwords import hash_password, password_problem
from config import get_settings
from schemas.ids import new_id
from schemas.users import Role, is_valid_email, normalise_email


async def create_admin(email: str, name: str, phone: str, password: str) -> str:
    settings = get_settings()
    producer = EventProducer(settings.kafka_bootstrap, client_id="hyderabad-create-admin")
    await producer.start()
    bus = CommandBus(producer, settings.kafka_bootstrap, max(settings.command_wait_seconds, 15))
    pool = AsyncConnectionPool(settings.postgres_dsn, min_size=1, max_size=1, open=False)
    await pool.open()
    await bus.start()
    try:
        user_id = new_id("user")
        envelope = registration(
            user_id=user_id,
            personal_key=await create_personal_key(pool, user_id),
            email_secret=settings.email_key_secret.get_secret_value().encode(),
            email=email,
            name=name,
            phone=phone,
            password_hash=await hash_password(password),
            role=Role.ADMIN,
        )
        for _ in range(100):  # following command-outcomes takes a moment
            try:
                await register(bus, envelope)
                return user_id
            except ApiError as exc:
                if exc.status != 503 or "following" not in str(exc.errors):
                    raise
                await asyncio.sleep(0.1)
        raise RuntimeError("could not follow command outcomes; is Kafka up?")
    finally:
        await bus.stop()
        await producer.stop()
        await pool.close()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m ops.create_admin", description=__doc__)
    parser.add_argument("--email", required=True)
    parser.add_argument("--name", required=True)
    parser.add_argument("--phone", default="+910000000000", help="E.164 (default +910000000000)")
    parser.add_argument("--password-stdin", action="store_true", required=True, help="read the password from stdin")
    args = parser.parse_args(argv)
    password = sys.stdin.readline().rstrip("\n")
    email = normalise_email(args.email)
    if not is_valid_email(email):
        print("not a valid email address", file=sys.stderr)
        return 2
    problem = password_problem(password, email=email, name=args.name)
    if problem:
        print(f"password refused: {problem}", file=sys.stderr)
        return 2
    try:
        user_id = asyncio.run(create_admin(email, args.name, args.phone, password))
    except ApiError as exc:
        print(f"refused ({exc.status}): {exc.message}", file=sys.stderr)
        return 1
    print(user_id)
    return 0


if __name__ == "__main__":
    sys.exit(main())
