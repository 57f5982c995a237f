"""Who is on the other end: the client's address, taken from X-Forwarded-For only when a trusted proxy sent it."""

from __future__ import annotations

import ipaddress
from functools import lru_cache

from aiohttp import web

from . import appkeys

Network = ipaddress.IPv4Network | ipaddress.IPv6Network


def parse_networks(entries: tuple[str, ...]) -> tuple[Network, ...]:
    """GIMA_TRUSTED_PROXIES: addresses or CIDR blocks (raises ValueError naming a bad one)."""
    networks = []
    for entry in entries:
        try:
            networks.append(ipaddress.ip_network(entry, strict=False))
        except ValueError:
            raise ValueError(f"{entry!r} is not an IP address or CIDR block") from None
    return tuple(networks)


@lru_cache(maxsize=4096)
def _is_trusted(address: str, networks: tuple[Network, ...]) -> bool:
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return False
    return any(ip in net for net in networks)


def client_address(request: web.Request) -> str:
    """The peer's address; behind trusted proxies, the nearest address in X-Forwarded-For that is not one of
    them (a client can prepend anything to that header, so it is read from the right)."""
    peer = request.remote or "-"
    networks = request.app[appkeys.TRUSTED_PROXIES]
    if not networks or not _is_trusted(peer, networks):
        return peer
    hops = [h.strip() for h in request.headers.get("X-Forwarded-For", "").split(",") if h.strip()]
    for hop in reversed(hops):
        if not _is_trusted(hop, networks):
            return hop if _valid(hop) else peer
    return peer


def _valid(address: str) -> bool:
    try:
        ipaddress.ip_address(address)
    except ValueError:
        return False
    return True
