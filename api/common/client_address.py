"""The client's address, as rate limits count it.

`X-Forwarded-For` is a list each proxy appends to, so only the hops our own proxies added can be
believed: the socket peer when it is not a proxy we trust (`HI_TRUSTED_PROXIES`, empty by default),
else the rightmost hop that is not one of them. Everything left of that hop the client wrote itself.
"""

import ipaddress
from functools import lru_cache

from fastapi import Request

Address = ipaddress.IPv4Address | ipaddress.IPv6Address
Network = ipaddress.IPv4Network | ipaddress.IPv6Network

UNKNOWN = "unknown"


@lru_cache
def trusted_networks(setting: str) -> tuple[Network, ...]:
    """`HI_TRUSTED_PROXIES`: comma-separated addresses or networks (`10.0.0.0/8, 127.0.0.1`)."""
    return tuple(ipaddress.ip_network(part.strip(), strict=False) for part in setting.split(",") if part.strip())


def _address(text: str) -> Address | None:
    try:
        return ipaddress.ip_address(text.strip())
    except ValueError:
        return None


def _trusted(address: Address | None, trusted: tuple[Network, ...]) -> bool:
    return address is not None and any(address in network for network in trusted)


def client_address(peer: str | None, forwarded_for: str | None, trusted: tuple[Network, ...]) -> str:
    if peer is None:
        return UNKNOWN
    nearest = _address(peer)
    if not forwarded_for or not _trusted(nearest, trusted):
        return peer
    for hop in reversed(forwarded_for.split(",")):
        address = _address(hop)
        if address is None:
            # A proxy of ours wrote no such hop: the client did. The last proxy we believe stands in for it.
            return str(nearest)
        if not _trusted(address, trusted):
            return str(address)
        nearest = address
    return str(nearest)  # every hop is ours: the request came from inside


def request_address(request: Request) -> str:
    setting: str = request.app.state.settings.trusted_proxies
    peer = request.client.host if request.client else None
    return client_address(peer, request.headers.get("x-forwarded-for"), trusted_networks(setting))
