"""Websocket routes; the data session proxy joins them with the WebUI sessions."""

websocket_urlpatterns: list = []
