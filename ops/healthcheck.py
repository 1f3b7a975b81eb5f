"""Is this part healthy? What docker-compose.yml runs as each container's healthcheck (exit 0 = healthy).

    python -m ops.healthcheck http URL            a service: its /ready answers 2xx
    python -m ops.healthcheck tcp HOST PORT       the local mailbox or SMS sink: the port accepts
    python -m ops.healthcheck group GROUP         a stream worker: its consumer group is stable, with members

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
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap, request_timeout_ms=int(TIMEOUT_SECONDS * 1000))
    try:
        await admin.start()
        for response in await admin.describe_consumer_groups([group]):
            for error_code, group_id, state, _protocol_type, _protocol, members, *_ in response.groups:
                if group_id == group:
                    return error_code == 0 and state == "Stable" and len(members) > 0
        return False
    except Exception as error:  # any failure to ask is "not healthy"
        print(f"could not describe group {group!r}: {error!r}", file=sys.stderr)
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
    checks.add_parser("group").add_argument("group")
    args = parser.parse_args(argv)
    if args.check == "http":
        healthy = http_answers(args.url)
    elif args.check == "tcp":
        healthy = tcp_accepts(args.host, args.port)
    else:
        healthy = asyncio.run(group_is_stable(get_settings().kafka_bootstrap, args.group))
    return 0 if healthy else 1


if __name__ == "__main__":
    sys.exit(main())
