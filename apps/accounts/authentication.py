from rest_framework import authentication, exceptions, permissions

from .api_keys import api_key_lookup
from .events import client_address
from .network import network_enforce
from .services import ticket_lookup


class TicketAuthentication(authentication.BaseAuthentication):
    """``Authorization: Bearer <ticket or API key>``.

    Tickets come from ``POST /api/v1/auth/tickets``, keys from ``POST /api/v1/auth/keys``. The
    user's address must pass the IP range filter; a data session's own ticket is exempt, as
    its calls come from the platform's servers.
    """

    keyword = "Bearer"

    def authenticate(self, request):
        header = authentication.get_authorization_header(request).decode("latin-1")
        if not header:
            return None
        parts = header.split()
        if parts[0].lower() != self.keyword.lower():
            return None
        if len(parts) != 2:
            raise exceptions.AuthenticationFailed("The Authorization header must be 'Bearer <ticket>'.")
        credential = ticket_lookup(parts[1]) or api_key_lookup(parts[1])
        if credential is None:
            raise exceptions.AuthenticationFailed("The ticket or key is unknown, expired or revoked.")
        if not credential.scope:
            address = client_address(request)
            network_enforce(
                address=address, user=credential.user, request=request, via=f"{request.method} {request.path}"
            )
        return credential.user, credential

    def authenticate_header(self, request) -> str:
        return self.keyword


class TicketScope(permissions.BasePermission):
    """A scoped ticket (a data session's) reaches only the views that allow it, for its own app.

    Views opt in with ``session_ticket_allowed = True``; a request naming an app (``app`` in
    the body or the query) must name the session's app. A remote attempt's ticket
    (``{"job": …, "attempt": …}``) reaches the attempt API alone (``attempt_ticket_allowed``).
    """

    message = "This ticket belongs to a data session and cannot make this call."

    def has_permission(self, request, view) -> bool:
        scope = getattr(request.auth, "scope", None)
        if not scope:
            return True
        if "job" in scope:
            return getattr(view, "attempt_ticket_allowed", False)
        if not getattr(view, "session_ticket_allowed", False):
            return False
        named = request.query_params.get("app")
        if named is None and request.method == "POST" and hasattr(request, "data") and isinstance(request.data, dict):
            named = request.data.get("app")
        return named is None or named == scope.get("app")
