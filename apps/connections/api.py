"""``/api/v1/connections``: admins define connections and grant them to apps (docs/connections.md)."""

from __future__ import annotations

from drf_spectacular.utils import extend_schema
from rest_framework import status
from rest_framework.response import Response
from rest_framework.views import APIView

from apps.catalog.models import App
from pro_portal.errors import NotFound
from pro_portal.openapi import ERROR
from pro_portal.strict import JSON_BODY

from . import selectors, services
from .serializers import ConnectionIn, ConnectionOut, ConnectionPatch


class ConnectionListApi(APIView):
    parser_classes = JSON_BODY

    @extend_schema(responses={200: ConnectionOut(many=True), 403: ERROR}, description="Every connection (admins).")
    def get(self, request):
        return Response(ConnectionOut(selectors.connections_for_admin(request.user), many=True).data)

    @extend_schema(request=ConnectionIn, responses={201: ConnectionOut, 400: ERROR, 403: ERROR, 409: ERROR})
    def post(self, request):
        body = ConnectionIn(data=request.data)
        body.is_valid(raise_exception=True)
        connection = services.connection_create(user=request.user, request=request, **body.validated_data)
        return Response(ConnectionOut(connection).data, status=status.HTTP_201_CREATED)


class ConnectionDetailApi(APIView):
    parser_classes = JSON_BODY

    @extend_schema(responses={200: ConnectionOut, 403: ERROR, 404: ERROR})
    def get(self, request, name: str):
        return Response(ConnectionOut(selectors.connection_get_for_admin(request.user, name)).data)

    @extend_schema(request=ConnectionPatch, responses={200: ConnectionOut, 400: ERROR, 403: ERROR, 404: ERROR})
    def patch(self, request, name: str):
        connection = selectors.connection_get_for_admin(request.user, name)
        body = ConnectionPatch(data=request.data)
        body.is_valid(raise_exception=True)
        services.connection_update(
            user=request.user, connection=connection, changes=body.validated_data, request=request
        )
        return Response(ConnectionOut(selectors.connection_get_for_admin(request.user, name)).data)

    @extend_schema(responses={204: None, 403: ERROR, 404: ERROR})
    def delete(self, request, name: str):
        connection = selectors.connection_get_for_admin(request.user, name)
        services.connection_delete(user=request.user, connection=connection, request=request)
        return Response(status=status.HTTP_204_NO_CONTENT)


class ConnectionGrantApi(APIView):
    """PUT grants the connection to the app, DELETE takes it back (for its next job or session)."""

    def _both(self, request, name: str, app: str):
        connection = selectors.connection_get_for_admin(request.user, name)
        found = App.objects.filter(name=app).first()
        if found is None:
            raise NotFound(f"There is no app named {app!r}.")
        return connection, found

    @extend_schema(request=None, responses={200: ConnectionOut, 403: ERROR, 404: ERROR})
    def put(self, request, name: str, app: str):
        connection, found = self._both(request, name, app)
        services.connection_grant(user=request.user, connection=connection, app=found, request=request)
        return Response(ConnectionOut(selectors.connection_get_for_admin(request.user, name)).data)

    @extend_schema(responses={204: None, 403: ERROR, 404: ERROR})
    def delete(self, request, name: str, app: str):
        connection, found = self._both(request, name, app)
        services.connection_revoke(user=request.user, connection=connection, app=found, request=request)
        return Response(status=status.HTTP_204_NO_CONTENT)
