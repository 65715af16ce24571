"""Parsing of addresses, address ranges and origins: plain Python, no Django.

The IP range filter (:mod:`apps.accounts.network`) and the models' validation build on these.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable
from urllib.parse import urlsplit

Network = ipaddress.IPv4Network | ipaddress.IPv6Network
Address = ipaddress.IPv4Address | ipaddress.IPv6Address
Origin = tuple[str, str, int]  # scheme, host name, port
DEFAULT_PORTS = {"http": 80, "https": 443}


def parse_networks(values: Iterable[str]) -> list[Network]:
    """CIDR ranges (a bare address is a range of one); a ValueError names the first bad one."""
    networks = []
    for value in values:
        value = value.strip()
        if not value:
            continue
        try:
            networks.append(ipaddress.ip_network(value, strict=False))
        except ValueError:
            raise ValueError(f"{value!r} is not an address range in CIDR notation (such as 10.0.0.0/8)") from None
    return networks


def parse_address(value: str) -> Address | None:
    """An address, or None; IPv4 addresses mapped into IPv6 (``::ffff:10.0.0.1``) count as IPv4."""
    try:
        address = ipaddress.ip_address(value.strip().strip("[]"))
    except ValueError:
        return None
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped
    return address


def address_within(address: Address | None, networks: list[Network]) -> bool:
    """Whether ``address`` is in one of ``networks`` (no address is in none)."""
    return address is not None and any(address in network for network in networks)


def parse_origin(value: str) -> Origin | None:
    """``scheme://host[:port]`` as (scheme, host, port), or None for anything else (``null`` included)."""
    try:
        parts = urlsplit(value.strip())
        port = parts.port
    except ValueError:
        return None
    scheme = parts.scheme.lower()
    if scheme not in DEFAULT_PORTS or not parts.hostname or parts.username is not None or parts.password is not None:
        return None
    if parts.path not in ("", "/") or parts.query or parts.fragment:
        return None
    return scheme, parts.hostname.lower(), port if port is not None else DEFAULT_PORTS[scheme]
