"""Dead and parked events, for operators: `python -m ops.dead_letters COMMAND`.

    list    [--consumer C] [--key K]    keys that wait: how many dead and parked, the first one, why
    show    --consumer C --key K        a key's events in the order the consumer read them
    redrive --consumer C [--key K]      ask the consumer to apply them again, in order (progress bar)
    skip    --consumer C --key K        drop the key's first dead event for good, then redrive the rest

A consumer that parks (see topology.md) keeps, per key, the event it dead-lettered and the later ones
it held back, in Postgres `parked_events`. This tool never applies them itself: it marks the rows
(`redrive_requested_at`) and notifies the consumer (NOTIFY `parked_events_redrive`), which applies them through
its own code, in order, and deletes those it applied; an event that fails again stays first, with the
new reason, and the ones after it stay parked. The consumer must be running for a redrive to move.
A skipped event stays on the `dead-letters` topic, for the record.

The settings are the usual `HI_*` ones (`HI_POSTGRES_*`); consumers are named by their consumer group.
"""

import argparse
import sys
import time
from typing import Any

import orjson
import psycopg

from config import Settings, get_settings
from ops.history_replay import ProgressLine, bar
from schemas.topics import REDRIVE_CHANNEL

_SUMMARY = """
SELECT consumer, key, count(*) FILTER (WHERE dead), count(*) FILTER (WHERE NOT dead),
    (array_agg(topic || '[' || partition || ']@' || "offset" ORDER BY seq))[1],
    (array_agg(reason ORDER BY seq))[1], min(parked_at) AT TIME ZONE 'UTC', count(redrive_requested_at)
FROM parked_events
WHERE (%(consumer)s::text IS NULL OR consumer = %(consumer)s) AND (%(key)s::text IS NULL OR key = %(key)s)
GROUP BY consumer, key
ORDER BY min(parked_at), consumer, key
"""

_ROWS = """
SELECT seq, topic, partition, "offset", dead, reason, parked_at AT TIME ZONE 'UTC',
    redrive_requested_at IS NOT NULL, payload
FROM parked_events WHERE consumer = %s AND key = %s ORDER BY seq
"""

_REQUEST = """
UPDATE parked_events SET redrive_requested_at = now()
WHERE consumer = %(consumer)s AND (%(key)s::text IS NULL OR key = %(key)s)
RETURNING key
"""

_SKIP_HEAD = """
DELETE FROM parked_events WHERE (consumer, topic, partition, "offset") = (
    SELECT consumer, topic, partition, "offset" FROM parked_events
    WHERE consumer = %s AND key = %s ORDER BY seq LIMIT 1)
AND dead
RETURNING topic, partition, "offset", reason
"""

_WAITING = """
SELECT count(*) FILTER (WHERE redrive_requested_at IS NOT NULL), count(*)
FROM parked_events WHERE consumer = %s AND key = ANY(%s)
"""


def _what(payload: bytes | None) -> str:
    """The event's type, id and version as far as they can be read: a dead event may be unreadable."""
    try:
        event = orjson.loads(payload or b"")
        return f"{event['type']} {event['id']} v{event.get('sequence')}"
    except (orjson.JSONDecodeError, KeyError, TypeError):
        return f"unreadable ({len(payload or b'')} bytes)"


def list_keys(conn: psycopg.Connection[Any], consumer: str | None, key: str | None) -> int:
    rows = conn.execute(_SUMMARY, {"consumer": consumer, "key": key}).fetchall()
    if not rows:
        print("nothing dead or parked")
        return 0
    wide, keyed = max(len("consumer"), *(len(r[0]) for r in rows)), max(len("key"), *(len(r[1]) for r in rows))
    print(f"{'consumer':<{wide}}  {'key':<{keyed}}  dead  parked  {'first':<20}  {'since (UTC)':<19}  reason")
    for who, k, dead, parked, first, reason, since, asked in rows:
        note = " (redrive asked)" if asked else ""
        line = f"{who:<{wide}}  {k:<{keyed}}  {dead:>4}  {parked:>6}  {first:<20}  {since:%Y-%m-%d %H:%M:%S}  "
        print(f"{line}{reason[:80]}{note}")
    return 0


def show(conn: psycopg.Connection[Any], consumer: str, key: str) -> int:
    rows = conn.execute(_ROWS, (consumer, key)).fetchall()
    if not rows:
        print(f"{consumer} has nothing dead or parked for {key}")
        return 0
    for seq, topic, partition, offset, dead, reason, parked_at, asked, payload in rows:
        state = "dead  " if dead else "parked"
        where = f"{topic}[{partition}]@{offset}"
        note = " (redrive asked)" if asked else ""
        print(f"#{seq:<6} {state} {where:<22} {parked_at:%H:%M:%S}  {_what(payload)}{note}\n         {reason}")
    return 0


def follow(conn: psycopg.Connection[Any], consumer: str, keys: list[str], total: int, wait_seconds: float) -> int:
    """Until the consumer has taken every marked row: 0 when all were applied, 1 otherwise."""
    progress, started = ProgressLine(), time.monotonic()
    while True:
        row = conn.execute(_WAITING, (consumer, keys)).fetchone()
        asked, left = row if row else (0, 0)
        done = total - asked
        elapsed = time.monotonic() - started
        rate = done / elapsed if elapsed > 0 and done else None
        eta = asked / rate if rate else None
        if not asked:
            progress.show(bar(done, total, rate, None, f"{consumer}: {total - left} applied"), final=True)
            break
        if elapsed > wait_seconds:
            progress.show(bar(done, total, rate, eta, f"{consumer}: not picked up"), final=True)
            print(f"{consumer} took {done} of {total} in {wait_seconds:.0f}s: is it running? The marks stay.")
            return 1
        progress.show(bar(done, total, rate, eta, f"{consumer}: redriving"))
        time.sleep(0.2)
    if left:
        print(f"{left} still parked: the first failed again (`show --consumer {consumer} --key ...` says why)")
        return 1
    return 0


def redrive(conn: psycopg.Connection[Any], consumer: str, key: str | None, wait_seconds: float) -> int:
    with conn.transaction():
        keys = [k for (k,) in conn.execute(_REQUEST, {"consumer": consumer, "key": key}).fetchall()]
        if keys:
            # Delivered when the marks commit: the consumer sleeps until told (streams.parking).
            conn.execute("SELECT pg_notify(%s, %s)", (REDRIVE_CHANNEL, consumer))
    if not keys:
        print(f"{consumer} has nothing dead or parked" + (f" for {key}" if key else ""))
        return 0
    distinct = len(set(keys))
    print(f"redriving {len(keys)} events of {distinct} key{'s' if distinct != 1 else ''} through {consumer}")
    return follow(conn, consumer, sorted(set(keys)), len(keys), wait_seconds)


def skip(conn: psycopg.Connection[Any], consumer: str, key: str, wait_seconds: float) -> int:
    with conn.transaction():
        skipped = conn.execute(_SKIP_HEAD, (consumer, key)).fetchone()
        if skipped is None:
            print(f"{consumer} has no dead event first for {key}: nothing to skip")
            return 1
        topic, partition, offset, reason = skipped
        print(f"skipped {topic}[{partition}]@{offset} ({reason[:80]}); it stays on the dead-letters topic")
    return redrive(conn, consumer, key, wait_seconds)


def main(argv: list[str] | None = None, settings: Settings | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m ops.dead_letters", description=__doc__.split("\n\n")[0])
    commands = parser.add_subparsers(dest="command", required=True)
    listing = commands.add_parser("list", help="keys that wait, per consumer")
    listing.add_argument("--consumer")
    listing.add_argument("--key")
    for name in ("show", "redrive", "skip"):
        command = commands.add_parser(name)
        command.add_argument("--consumer", required=True)
        command.add_argument("--key", required=name != "redrive")
        if name != "show":
            command.add_argument("--wait", type=float, default=60.0, help="seconds to wait for the consumer")
    args = parser.parse_args(argv)
    settings = settings or get_settings()
    with psycopg.connect(settings.postgres_dsn, autocommit=True) as conn:
        if args.command == "list":
            return list_keys(conn, args.consumer, args.key)
        if args.command == "show":
            return show(conn, args.consumer, args.key)
        if args.command == "redrive":
            return redrive(conn, args.consumer, args.key, args.wait)
        return skip(conn, args.consumer, args.key, args.wait)


if __name__ == "__main__":
    sys.exit(main())
