"""The client's address behind trusted proxies (``X-Forwarded-For``)."""

from __future__ import annotations

import ipaddress
from collections.abc import Sequence

from starlette.types import Scope

IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network


def client_ip(scope: Scope, trusted: Sequence[IPNetwork]) -> str:
    """The client's IP: the direct peer, or, when the peer is a trusted proxy, the right-most
    ``X-Forwarded-For`` entry that is not itself a trusted proxy (MDN, "X-Forwarded-For", security).
    """
    peer = scope.get("client")
    peer_ip = peer[0] if peer else "unknown"
    if not trusted or not _is_trusted(peer_ip, trusted):
        return str(peer_ip)
    forwarded: list[str] = []
    for name, value in scope["headers"]:
        if name == b"x-forwarded-for":
            forwarded.extend(p.strip() for p in value.decode("latin-1").split(",") if p.strip())
    for candidate in reversed(forwarded):
        if not _is_ip(candidate):
            break  # garbage in the chain: trust nothing to the left of it
        if not _is_trusted(candidate, trusted):
            return candidate
    return str(peer_ip)


def _is_ip(value: str) -> bool:
    try:
        ipaddress.ip_address(value)
    except ValueError:
        return False
    return True


def _is_trusted(ip: str, trusted: Sequence[IPNetwork]) -> bool:
    try:
        address = ipaddress.ip_address(ip)
    except ValueError:
        return False
    return any(address in net for net in trusted)
