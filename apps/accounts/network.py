"""Where a request comes from, and whether it may come from there (IP range filtering).

The client address is the TCP peer, unless that peer is one of the configured trusted proxies
(``PRO_TRUSTED_PROXIES``); only then is ``X-Forwarded-For`` read, from the right, skipping the
trusted proxies, so that nobody can choose their address by sending the header themselves.

Allow-lists are optional: a global one (``PRO_ALLOWED_NETWORKS``) for every request, and one
per group (:class:`GroupNetworks`) for the members of that group, wherever they authenticate.

Websocket connections are also checked for the page that opened them (:func:`origin_allowed`):
their ``Origin`` must be the platform's own (scheme, host and port) or a trusted origin.
"""

from __future__ import annotations

from functools import lru_cache

from django.conf import settings
from django.contrib.auth.models import AbstractBaseUser, AnonymousUser
from django.http.request import is_same_domain, split_domain_port, validate_host

from pro_portal.errors import Forbidden
from pro_portal.ttl_cache import TTLCache

from .addresses import Network, address_within, parse_address, parse_networks, parse_origin
from .events import security_event
from .models import GroupNetworks, SecurityOutcome


class AddressNotAllowed(Forbidden):
    code = "address_not_allowed"


@lru_cache(maxsize=1)
def _configured(allowed: tuple[str, ...], trusted: tuple[str, ...]) -> tuple[list[Network], list[Network]]:
    return parse_networks(allowed), parse_networks(trusted)


def allowed_networks() -> list[Network]:
    return _configured(tuple(settings.PRO_ALLOWED_NETWORKS), tuple(settings.PRO_TRUSTED_PROXIES))[0]


def trusted_proxies() -> list[Network]:
    return _configured(tuple(settings.PRO_ALLOWED_NETWORKS), tuple(settings.PRO_TRUSTED_PROXIES))[1]


def peer_is_trusted_proxy(peer: str) -> bool:
    return address_within(parse_address(peer), trusted_proxies())


def client_address(peer: str, forwarded_for: str | None) -> str:
    """The client's address for a connection from ``peer`` carrying ``forwarded_for``."""
    proxies = trusted_proxies()
    address = parse_address(peer)
    if address is None:
        return peer
    hops = [hop for hop in (forwarded_for or "").split(",") if hop.strip()]
    while address_within(address, proxies) and hops:
        previous = parse_address(hops.pop())
        if previous is None:
            break  # a trusted proxy passed on something that is no address: keep the proxy's own
        address = previous
    return str(address)


# Asked on every API request: a change of a group's ranges or members applies within a second.
_group_texts: TTLCache[list[str]] = TTLCache(1.0)


def networks_forget() -> None:
    _group_texts.clear()


def _group_networks(user: AbstractBaseUser) -> list[Network] | None:
    """The union of the ranges of the user's groups that have ranges; None when none has."""
    texts = _group_texts.get(
        user.pk, lambda: list(GroupNetworks.objects.filter(group__user=user).values_list("networks", flat=True))
    )
    if not texts:
        return None
    return parse_networks(" ".join(texts).split())


def network_check(*, address: str, user: AbstractBaseUser | AnonymousUser | None = None) -> None:
    """Refuse (AddressNotAllowed) a client the allow-lists do not admit; no lists, no refusal."""
    parsed = parse_address(address)
    networks = allowed_networks()
    if networks and not address_within(parsed, networks):
        raise AddressNotAllowed(f"Connections from {address} are not allowed on this platform.")
    if user is None or not user.is_authenticated:
        return
    group_networks = _group_networks(user)
    if group_networks is not None and not address_within(parsed, group_networks):
        raise AddressNotAllowed(f"{user.get_username()} may not connect from {address}.")


def network_enforce(*, address: str, user=None, request=None, via: str) -> None:
    """:func:`network_check`, recording a refusal in the security event log before raising it."""
    try:
        network_check(address=address, user=user)
    except AddressNotAllowed as refusal:
        actor = user.get_username() if user is not None and user.is_authenticated else ""
        security_event(
            "ip.denied",
            request=request,
            actor=actor,
            target=via,
            outcome=SecurityOutcome.DENIED,
            address=address,
            message=str(refusal),
        )
        raise


# ---------------------------------------------------------------- origins


def _allowed_hosts() -> list[str]:
    allowed = list(settings.ALLOWED_HOSTS)
    if settings.DEBUG and not allowed:
        allowed = [".localhost", "127.0.0.1", "[::1]"]  # as Django's own HTTP host check
    return allowed


def origin_allowed(origin: str | None, *, secure: bool, host: str | None) -> bool:
    """Whether a websocket opened by a page of ``origin`` may reach the platform at ``host``.

    As Django's CSRF origin check, and stricter than a check of the host name alone: the
    origin must be the platform's own, the scheme the connection came by (``https`` for a secure
    one) with the request's ``Host`` (which must be an allowed host) and its port, or one of
    ``PRO_CSRF_TRUSTED_ORIGINS`` (``https://*.example.com`` admitting subdomains), scheme and port
    included. No ``Origin`` (or ``null``) is refused: browsers always send one.
    """
    if not origin or not host:
        return False
    domain, _ = split_domain_port(host)
    if not domain or not validate_host(domain, _allowed_hosts()):
        return False
    given = parse_origin(origin)
    if given is None:
        return False
    if given == parse_origin(f"{'https' if secure else 'http'}://{host}"):
        return True
    for trusted in settings.CSRF_TRUSTED_ORIGINS:
        if "://*." in trusted:
            pattern = parse_origin(trusted.replace("://*.", "://", 1))
            if (
                pattern is not None
                and (given[0], given[2]) == (pattern[0], pattern[2])
                and is_same_domain(given[1], "." + pattern[1])
            ):
                return True
        elif given == parse_origin(trusted):
            return True
    return False
