"""Websocket routes (composed with origin check and login in asgi.py)."""

from django.urls import path

from apps.portal.live import LiveUpdatesConsumer
from sessions.consumers import SessionProxyConsumer

websocket_urlpatterns = [
    path("ws/sessions/<uuid:session_id>/", SessionProxyConsumer.as_asgi()),
    path("ws/live/", LiveUpdatesConsumer.as_asgi()),
]
