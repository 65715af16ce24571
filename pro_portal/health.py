"""``GET /healthz`` answered in the ASGI layer, before Django's middleware and its thread hop.

Load balancers and container runtimes ask it often, and every web process answers it: the
database check behind it runs at most once a second per process, the others share its answer.
Django's own view (``apps.portal.views.healthz``) answers the same for the test client.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time

from channels.db import database_sync_to_async
from django.conf import settings

logger = logging.getLogger(__name__)

CHECK_SECONDS = 1.0


def _database_answers() -> bool:
    from apps.cluster.selectors import database_answers

    try:
        return database_answers()
    except Exception as exc:  # the database is down: say so, with 503
        logger.warning("Health check: the database does not answer (%s)", exc)
        return False


class HealthCheck:
    def __init__(self, app):
        self.app = app
        self.checked_at = -CHECK_SECONDS
        self.healthy = False
        self.lock = asyncio.Lock()

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http" or scope["path"] != "/healthz" or scope["method"] not in ("GET", "HEAD"):
            return await self.app(scope, receive, send)
        healthy = await self._healthy()
        body = json.dumps({"status": "ok" if healthy else "unavailable", "node": settings.PRO_NODE_NAME}).encode()
        headers = [
            (b"content-type", b"application/json"),
            (b"content-length", str(len(body)).encode()),
            (b"cache-control", b"no-store"),
            (b"x-content-type-options", b"nosniff"),
        ]
        await send({"type": "http.response.start", "status": 200 if healthy else 503, "headers": headers})
        await send({"type": "http.response.body", "body": body if scope["method"] == "GET" else b""})

    async def _healthy(self) -> bool:
        if time.monotonic() - self.checked_at < CHECK_SECONDS:
            return self.healthy
        async with self.lock:
            if time.monotonic() - self.checked_at >= CHECK_SECONDS:
                self.healthy = await database_sync_to_async(_database_answers)()
                self.checked_at = time.monotonic()
        return self.healthy
