"""Websocket routes (composed with origin check and login in asgi.py)."""

from django.urls import path

from sessions.consumers import SessionProxyConsumer

websocket_urlpatterns = [
    path("ws/sessions/<uuid:session_id>/", SessionProxyConsumer.as_asgi()),
]
