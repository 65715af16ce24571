from drf_spectacular.utils import extend_schema
from rest_framework import serializers, status
from rest_framework.permissions import AllowAny, BasePermission, IsAuthenticated
from rest_framework.response import Response
from rest_framework.views import APIView

from pro_portal.errors import ApplicationError
from pro_portal.openapi import ERROR
from pro_portal.strict import JSON_OR_FORM_BODY, StrictSerializer

from .api_keys import api_key_create, api_key_revoke
from .authentication import TicketScope
from .models import ApiKey, ApiTicket
from .selectors import api_keys_of
from .services import ticket_issue, ticket_max_expiry, ticket_renew, ticket_revoke, user_role


class TicketRequest(StrictSerializer):
    username = serializers.CharField(max_length=150)
    password = serializers.CharField(max_length=4096, trim_whitespace=False)
    otp = serializers.CharField(
        max_length=32,
        required=False,
        default="",
        help_text="The account's authenticator code (or a recovery code) when it has two-factor login",
    )


class TicketResponse(serializers.Serializer):
    ticket = serializers.CharField()
    expires_at = serializers.DateTimeField()
    max_expires_at = serializers.DateTimeField(help_text="Renewals never extend the ticket beyond this time.")
    username = serializers.CharField()


class TicketCreateApi(APIView):
    """Exchange a user name and password for a short-lived ticket."""

    authentication_classes = []
    permission_classes = [AllowAny]
    parser_classes = JSON_OR_FORM_BODY

    @extend_schema(request=TicketRequest, responses={201: TicketResponse, 401: ERROR, 429: ERROR})
    def post(self, request):
        given = TicketRequest(data=request.data)
        given.is_valid(raise_exception=True)
        raw, ticket = ticket_issue(request=request._request, **given.validated_data)
        body = TicketResponse(
            {
                "ticket": raw,
                "expires_at": ticket.expires_at,
                "max_expires_at": ticket_max_expiry(ticket),
                "username": ticket.user.username,
            }
        ).data
        return Response(body, status=status.HTTP_201_CREATED)


class MeResponse(serializers.Serializer):
    username = serializers.CharField()
    role = serializers.CharField(help_text="admin, publisher or user")
    credential = serializers.CharField(help_text="What the request came with: ticket, api_key or session")


class MeApi(APIView):
    """Who the request's credential belongs to (a script with an API key finds its own folder)."""

    session_ticket_allowed = True

    @extend_schema(responses={200: MeResponse})
    def get(self, request):
        credential = (
            "api_key"
            if isinstance(request.auth, ApiKey)
            else "ticket"
            if isinstance(request.auth, ApiTicket)
            else "session"
        )
        body = {"username": request.user.username, "role": user_role(request.user), "credential": credential}
        return Response(MeResponse(body).data)


class CurrentTicketResponse(serializers.Serializer):
    expires_at = serializers.DateTimeField()
    max_expires_at = serializers.DateTimeField(help_text="Renewals never extend the ticket beyond this time.")
    username = serializers.CharField()


def _own_ticket(request) -> ApiTicket:
    """The personal ticket the request came with; other credentials cannot be renewed or logged out."""
    if not isinstance(request.auth, ApiTicket):
        raise ApplicationError(
            "This call needs a ticket in 'Authorization: Bearer <ticket>' (not an API key or a portal login).",
            code="ticket_required",
        )
    return request.auth


class CurrentTicketApi(APIView):
    """The ticket this request carries: read it, or revoke it (log out)."""

    @extend_schema(responses={200: CurrentTicketResponse, 400: ERROR})
    def get(self, request):
        ticket = _own_ticket(request)
        body = {
            "expires_at": ticket.expires_at,
            "max_expires_at": ticket_max_expiry(ticket),
            "username": ticket.user.username,
        }
        return Response(CurrentTicketResponse(body).data)

    @extend_schema(responses={204: None, 400: ERROR})
    def delete(self, request):
        ticket_revoke(ticket=_own_ticket(request), request=request)
        return Response(status=status.HTTP_204_NO_CONTENT)


class TicketRenewApi(APIView):
    """Extend the ticket this request carries by its lifetime, up to its maximum age."""

    @extend_schema(request=None, responses={200: CurrentTicketResponse, 400: ERROR})
    def post(self, request):
        ticket = ticket_renew(ticket=_own_ticket(request))
        body = {
            "expires_at": ticket.expires_at,
            "max_expires_at": ticket_max_expiry(ticket),
            "username": ticket.user.username,
        }
        return Response(CurrentTicketResponse(body).data)


class ApiKeySerializer(serializers.ModelSerializer):
    active = serializers.BooleanField(source="is_active", read_only=True)

    class Meta:
        model = ApiKey
        fields = ["id", "name", "prefix", "created_at", "expires_at", "revoked_at", "last_used_at", "active"]


class ApiKeyRequest(StrictSerializer):
    name = serializers.CharField(max_length=100)
    expires_at = serializers.DateTimeField(
        required=False, allow_null=True, help_text="Leave out for a key that does not expire."
    )


class ApiKeyCreated(ApiKeySerializer):
    key = serializers.CharField(help_text="The key itself: shown this once, never again.")

    class Meta(ApiKeySerializer.Meta):
        fields = [*ApiKeySerializer.Meta.fields, "key"]


class KeyManagementAllowed(BasePermission):
    """Keys are managed with a password-backed login (a ticket or the portal), never with a key."""

    message = "API keys cannot create or revoke API keys; use a ticket or the portal."

    def has_permission(self, request, view) -> bool:
        return not isinstance(request.auth, ApiKey)


class ApiKeyListApi(APIView):
    """Your API keys (never the keys themselves), and creating one."""

    permission_classes = [IsAuthenticated, TicketScope, KeyManagementAllowed]
    parser_classes = JSON_OR_FORM_BODY

    @extend_schema(responses={200: ApiKeySerializer(many=True)})
    def get(self, request):
        return Response(ApiKeySerializer(api_keys_of(request.user), many=True).data)

    @extend_schema(request=ApiKeyRequest, responses={201: ApiKeyCreated})
    def post(self, request):
        given = ApiKeyRequest(data=request.data)
        given.is_valid(raise_exception=True)
        raw, key = api_key_create(user=request.user, request=request, **given.validated_data)
        key.key = raw
        return Response(ApiKeyCreated(key).data, status=status.HTTP_201_CREATED)


class ApiKeyDetailApi(APIView):
    permission_classes = [IsAuthenticated, TicketScope, KeyManagementAllowed]

    @extend_schema(responses={204: None})
    def delete(self, request, key_id: int):
        api_key_revoke(user=request.user, key_id=key_id, request=request)
        return Response(status=status.HTTP_204_NO_CONTENT)
