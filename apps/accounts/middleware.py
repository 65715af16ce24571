"""HTTP middleware: the real client address, and the IP range filter for the portal and the API."""

from __future__ import annotations

from django.contrib.auth import logout
from django.http import HttpResponse, JsonResponse
from django.shortcuts import render

from pro_portal.errors import error_body

from .network import AddressNotAllowed, client_address, network_enforce, peer_is_trusted_proxy

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
