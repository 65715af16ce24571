from rest_framework import authentication, exceptions

from .services import ticket_authenticate


class TicketAuthentication(authentication.BaseAuthentication):
    """``Authorization: Bearer <ticket>``: a ticket from ``POST /api/v1/auth/tickets``."""

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
        user = ticket_authenticate(parts[1])
        if user is None:
            raise exceptions.AuthenticationFailed("The ticket is unknown, expired or revoked.")
        return user, parts[1]

    def authenticate_header(self, request) -> str:
        return self.keyword
