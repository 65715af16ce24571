from drf_spectacular.utils import extend_schema
from rest_framework import serializers, status
from rest_framework.permissions import AllowAny
from rest_framework.response import Response
from rest_framework.views import APIView

from .services import ticket_issue


class TicketRequest(serializers.Serializer):
    username = serializers.CharField(max_length=150)
    password = serializers.CharField(max_length=4096, trim_whitespace=False)


class TicketResponse(serializers.Serializer):
    ticket = serializers.CharField()
    expires_at = serializers.DateTimeField()
    username = serializers.CharField()


class TicketCreateApi(APIView):
    """Exchange a user name and password for a short-lived ticket."""

    authentication_classes = []
    permission_classes = [AllowAny]

    @extend_schema(request=TicketRequest, responses={201: TicketResponse})
    def post(self, request):
        given = TicketRequest(data=request.data)
        given.is_valid(raise_exception=True)
        raw, ticket = ticket_issue(request=request._request, **given.validated_data)
        body = TicketResponse({"ticket": raw, "expires_at": ticket.expires_at, "username": ticket.user.username}).data
        return Response(body, status=status.HTTP_201_CREATED)
