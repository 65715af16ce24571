"""Middleware: the real client address, the IP range filter, and the origin check of websockets."""

from __future__ import annotations

import logging

from channels.security.websocket import WebsocketDenier
from django.conf import settings
from django.contrib.auth import logout
from django.http import HttpResponse, JsonResponse
from django.shortcuts import render

from pro_portal.errors import error_body

from .network import AddressNotAllowed, client_address, network_enforce, origin_allowed, peer_is_trusted_proxy

logger = logging.getLogger("sessions.proxy")

# Headers a client could forge; honoured only when they come from a trusted proxy.
FORWARDED_HEADERS = ("HTTP_X_FORWARDED_FOR", "HTTP_X_FORWARDED_PROTO", "HTTP_X_FORWARDED_HOST", "HTTP_FORWARDED")


class ClientAddressMiddleware:
    """First in the chain: ``REMOTE_ADDR`` becomes the client's address for everything after it.

    Behind a trusted proxy that is the address the proxy saw; from anyone else the forwarding
    headers are dropped, so neither the address nor the scheme can be claimed by a client.
    """

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        peer = request.META.get("REMOTE_ADDR", "")
        if peer_is_trusted_proxy(peer):
            request.META["REMOTE_ADDR"] = client_address(peer, request.META.get("HTTP_X_FORWARDED_FOR"))
        else:
            for header in FORWARDED_HEADERS:
                request.META.pop(header, None)
        return self.get_response(request)


def _refusal(request, refusal: AddressNotAllowed) -> HttpResponse:
    if request.path.startswith("/api/"):
        return JsonResponse(error_body(refusal.code, refusal.message), status=403)
    return render(request, "portal/error.html", {"error": refusal}, status=403)


def _bearer(request) -> bool:
    return request.META.get("HTTP_AUTHORIZATION", "").lower().startswith("bearer ")


class NetworkFilterMiddleware:
    """The allow-lists for the portal and the API (after authentication, to know the user's groups).

    Requests with a bearer ticket or key are checked by ``TicketAuthentication`` instead, which
    knows whose it is. A user who logs in from an address their groups do not admit is logged
    out again at once.
    """

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        # Health checks come from load balancers and container runtimes, and reveal nothing.
        if _bearer(request) or request.path == "/healthz":
            return self.get_response(request)
        address = request.META.get("REMOTE_ADDR", "")
        user = request.user
        try:
            network_enforce(address=address, user=user, request=request, via=f"{request.method} {request.path}")
        except AddressNotAllowed as refusal:
            if user.is_authenticated:
                logout(request)
            return _refusal(request, refusal)
        was_authenticated = user.is_authenticated
        response = self.get_response(request)
        if not was_authenticated and request.user.is_authenticated:
            try:
                network_enforce(address=address, user=request.user, request=request, via="login")
            except AddressNotAllowed as refusal:
                logout(request)
                return _refusal(request, refusal)
        return response


class WebsocketClientAddressMiddleware:
    """ASGI: the websocket counterpart of :class:`ClientAddressMiddleware`, on ``scope["client"]``."""

    def __init__(self, inner):
        self.inner = inner

    async def __call__(self, scope, receive, send):
        client = scope.get("client") or ("", 0)
        headers = scope.get("headers", [])
        if peer_is_trusted_proxy(client[0]):
            forwarded = b",".join(value for name, value in headers if name.lower() == b"x-forwarded-for")
            scope = {**scope, "client": (client_address(client[0], forwarded.decode("latin-1")), client[1])}
        else:
            forged = {b"x-forwarded-for", b"x-forwarded-proto", b"x-forwarded-host", b"forwarded"}
            scope = {**scope, "headers": [(name, value) for name, value in headers if name.lower() not in forged]}
        return await self.inner(scope, receive, send)


def _header(headers: list[tuple[bytes, bytes]], name: bytes) -> str | None:
    """The one value of a header; None when it is missing or given more than once."""
    values = [value for key, value in headers if key.lower() == name]
    return values[0].decode("latin-1") if len(values) == 1 else None


def _meta_header(meta_name: str) -> bytes:
    """``HTTP_X_FORWARDED_PROTO`` → ``x-forwarded-proto``."""
    return meta_name.removeprefix("HTTP_").lower().replace("_", "-").encode("latin-1")


def websocket_origin(scope) -> tuple[str | None, bool, str | None]:
    """The ``Origin`` of a websocket connection, whether it came over TLS, and the host it asked for.

    The scheme and host are the connection's own, or what a trusted proxy says they were (the
    forwarding headers of anyone else are dropped by :class:`WebsocketClientAddressMiddleware`),
    as Django reads them for HTTP (``SECURE_PROXY_SSL_HEADER``, ``USE_X_FORWARDED_HOST``).
    """
    headers = scope.get("headers", [])
    secure = scope.get("scheme", "ws") in ("wss", "https")
    if settings.SECURE_PROXY_SSL_HEADER:
        name, secure_value = settings.SECURE_PROXY_SSL_HEADER
        forwarded = _header(headers, _meta_header(name))
        if forwarded is not None:
            secure = forwarded.split(",", 1)[0].strip() == secure_value
    host = _header(headers, b"host")
    if settings.USE_X_FORWARDED_HOST and any(key.lower() == b"x-forwarded-host" for key, _ in headers):
        host = _header(headers, b"x-forwarded-host")
    return _header(headers, b"origin"), secure, host


class WebsocketOriginValidator:
    """ASGI: refuse a websocket whose ``Origin`` is not the platform's own or a trusted one.

    Compares scheme, host and port (:func:`origin_allowed`), not the host name alone: a page
    on another port or scheme of the same host is another origin. Refused before any login.
    """

    def __init__(self, inner):
        self.inner = inner

    async def __call__(self, scope, receive, send):
        origin, secure, host = websocket_origin(scope)
        if origin_allowed(origin, secure=secure, host=host):
            return await self.inner(scope, receive, send)
        logger.warning(
            "Refused websocket to %s: origin %r is not %s://%s or a trusted origin",
            scope.get("path", ""),
            origin,
            "https" if secure else "http",
            host,
        )
        return await WebsocketDenier()(scope, receive, send)


class TwoFactorEnrolmentMiddleware:
    """Where ``PRO_2FA_REQUIRED_FOR`` names a user's role and the user has no authenticator yet,
    every portal page sends them to set one up first (the API refuses them a ticket instead)."""

    EXEMPT_PREFIXES = ("/account/two-factor/", "/logout/", "/static/", "/api/", "/healthz", "/favicon.ico")

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        if settings.PRO_2FA_REQUIRED_FOR and self._must_enrol(request):
            from django.shortcuts import redirect

            return redirect("portal:two-factor")
        return self.get_response(request)

    def _must_enrol(self, request) -> bool:
        if request.path.startswith(self.EXEMPT_PREFIXES) or not request.user.is_authenticated:
            return False
        from .two_factor import two_factor_enabled, two_factor_required

        return two_factor_required(request.user) and not two_factor_enabled(request.user)
