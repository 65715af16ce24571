"""How the API's authentication appears in the OpenAPI schema (drf-spectacular)."""

from drf_spectacular.extensions import OpenApiAuthenticationExtension


class TicketAuthenticationScheme(OpenApiAuthenticationExtension):
    target_class = "apps.accounts.authentication.TicketAuthentication"
    name = "ticket"

    def get_security_definition(self, auto_schema):
        return {
            "type": "http",
            "scheme": "bearer",
            "description": "A ticket from POST /api/v1/auth/tickets, or an API key from POST /api/v1/auth/keys.",
        }
