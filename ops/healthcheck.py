"""Is this part healthy? What docker-compose.yml runs as each container's healthcheck (exit 0 = healthy).

    python -m ops.healthcheck http URL            a service: its /ready answers 2xx
    python -m ops.healthcheck tcp HOST PORT       the local mailbox or SMS sink: the port accepts
    python -m ops.healthcheck group GROUP...      a stream worker: each of its consumer groups (the
                                                  projection host runs several) is stable, with members

A worker has no port of its own to probe, and a live process proves little: it is healthy once it has
joined its consumer group and the group has settled (Kafka's own view, as `kafka-consumer-groups.sh
--describe` shows it). A group that is rebalancing, empty or unknown is not healthy yet.
"""

import argparse
import asyncio
import socket
import sys
import urllib.error
import urllib.request

from aiokafka.admin import AIOKafkaAdminClient

from config import get_settings

TIMEOUT_SECONDS = 3.0


def http_answers(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=TIMEOUT_SECONDS) as response:
            return 200 <= response.status < 300
    except (urllib.error.URLError, OSError):
        return False


def tcp_accepts(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=TIMEOUT_SECONDS):
            return True
    except OSError:
        return False


async def group_is_stable(bootstrap: str, group: str) -> bool:
    return await groups_are_stable(bootstrap, [group])


async def groups_are_stable(bootstrap: str, groups: list[str]) -> bool:
    """Every one of `groups` is stable with members; one that is not (or unknown) is reported."""
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap, request_timeout_ms=int(TIMEOUT_SECONDS * 1000))
    try:
        await admin.start()
        stable = set()
        # One group a request: aiokafka fails to decode some answers that describe several groups at once
        # ("Buffer underrun decoding string", seen with the projection host's nine beside Faust groups).
        for group in groups:
            for response in await admin.describe_consumer_groups([group]):
                for error_code, group_id, state, _protocol_type, _protocol, members, *_ in response.groups:
                    if group_id == group and error_code == 0 and state == "Stable" and len(members) > 0:
                        stable.add(group_id)
        unsettled = [group for group in groups if group not in stable]
        if unsettled:
            print(f"not stable yet: {', '.join(unsettled)}", file=sys.stderr)
        return not unsettled
    except Exception as error:  # any failure to ask is "not healthy"
        print(f"could not describe groups {groups!r}: {error!r}", file=sys.stderr)
        return False
    finally:
        await admin.close()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m ops.healthcheck", description=__doc__.split("\n\n")[0])
    checks = parser.add_subparsers(dest="check", required=True)
    checks.add_parser("http").add_argument("url")
    tcp = checks.add_parser("tcp")
    tcp.add_argument("host")
    tcp.add_argument("port", type=int)
    checks.add_parser("group").add_argument("groups", nargs="+", metavar="group")
    args = parser.parse_args(argv)
    if args.check == "http":
        healthy = http_answers(args.url)
    elif args.check == "tcp":
        healthy = tcp_accepts(args.host, args.port)
    else:
        healthy = asyncio.run(groups_are_stable(get_settings().kafka_bootstrap, args.groups))
    return 0 if healthy else 1


if __name__ == "__main__":
    sys.exit(main())
