"""Request body limits, enforced in front of Django, before any of a body is read.

Django's ASGI handler reads a whole request body into a temporary file (in memory up to
``FILE_UPLOAD_MAX_MEMORY_SIZE``, then on disk) before any middleware or view runs, so a
limit checked in a view comes after the disk has filled. :class:`BodyLimitMiddleware` wraps
the Django application and

- answers 413 from the ``Content-Length`` header alone when it exceeds the endpoint's limit
  (the upload endpoints in ``UPLOAD_LIMITS``, ``PRO_MAX_REQUEST_BYTES`` for every other one);
- gives a request without a valid ticket, API key or signed-in session at most
  ``PRO_MAX_UNAUTHENTICATED_BYTES``, which stays in memory: such a body never reaches the disk;
- counts the bytes of a body that declares no length (chunked) as they arrive, and answers
  413 once they pass the limit, without handing the request to Django at all.

Every refusal is the API's one JSON error shape, and the connection is closed after it.
"""

from __future__ import annotations

import json
import logging
from importlib import import_module

from channels.db import database_sync_to_async
from django.conf import settings
from django.urls import Resolver404, resolve

from .errors import error_body
from .uploads import MULTIPART_OVERHEAD

logger = logging.getLogger(__name__)

# (URL name, method) -> (the setting holding the limit, what a multipart form may add to it)
UPLOAD_LIMITS = {
    ("api:apps", "POST"): ("PRO_MAX_PACKAGE_BYTES", MULTIPART_OVERHEAD),
    ("portal:publish", "POST"): ("PRO_MAX_PACKAGE_BYTES", MULTIPART_OVERHEAD),
    ("api:storage", "PUT"): ("PRO_MAX_UPLOAD_BYTES", 0),
    ("portal:files", "POST"): ("PRO_MAX_UPLOAD_BYTES", MULTIPART_OVERHEAD),
    ("api:cases", "POST"): ("PRO_MAX_CASE_BYTES", MULTIPART_OVERHEAD),
    ("api:runtimes", "POST"): ("PRO_MAX_RUNTIME_BYTES", MULTIPART_OVERHEAD),
    ("admin:catalog_runtime_add", "POST"): ("PRO_MAX_RUNTIME_BYTES", MULTIPART_OVERHEAD),
    ("api:wheel", "PUT"): ("PRO_MAX_WHEEL_BYTES", MULTIPART_OVERHEAD),
}


def endpoint_limit(method: str, path: str) -> int:
    """The largest body the endpoint at ``path`` takes for ``method``."""
    try:
        name = resolve(path).view_name
    except Resolver404:
        return settings.PRO_MAX_REQUEST_BYTES
    setting, overhead = UPLOAD_LIMITS.get((name, method), ("PRO_MAX_REQUEST_BYTES", 0))
    return getattr(settings, setting) + overhead


def _headers(scope) -> dict[bytes, bytes]:
    found: dict[bytes, bytes] = {}
    for key, value in scope.get("headers", []):
        key = key.lower()
        found[key] = found[key] + b"; " + value if key == b"cookie" and key in found else value
    return found


def _bearer(headers: dict[bytes, bytes]) -> str | None:
    parts = headers.get(b"authorization", b"").decode("latin-1").split()
    return parts[1] if len(parts) == 2 and parts[0].lower() == "bearer" else None


def _session_key(headers: dict[bytes, bytes]) -> str | None:
    from http.cookies import SimpleCookie

    cookie = SimpleCookie()
    try:
        cookie.load(headers.get(b"cookie", b"").decode("latin-1"))
    except Exception:  # a malformed cookie header: no session
        return None
    morsel = cookie.get(settings.SESSION_COOKIE_NAME)
    return morsel.value if morsel is not None and morsel.value else None


@database_sync_to_async
def _credential_is_valid(bearer: str | None, session_key: str | None) -> bool:
    """Whether the request carries a live ticket or API key, or the session of an active user.

    Checked only for a body larger than ``PRO_MAX_UNAUTHENTICATED_BYTES``; the view
    authenticates the request again, fully (IP ranges, ticket scopes, permissions).
    """
    if bearer is not None:
        from apps.accounts.api_keys import api_key_lookup
        from apps.accounts.services import ticket_lookup

        if ticket_lookup(bearer) is not None or api_key_lookup(bearer) is not None:
            return True
    if session_key is None:
        return False
    from django.contrib.auth import BACKEND_SESSION_KEY, HASH_SESSION_KEY, SESSION_KEY, get_user_model, load_backend
    from django.utils.crypto import constant_time_compare

    data = import_module(settings.SESSION_ENGINE).SessionStore(session_key).load()  # {} when unknown or expired
    backend_path, user_id, session_hash = (
        data.get(BACKEND_SESSION_KEY),
        data.get(SESSION_KEY),
        data.get(HASH_SESSION_KEY),
    )
    if backend_path not in settings.AUTHENTICATION_BACKENDS or user_id is None or not session_hash:
        return False
    try:
        user = load_backend(backend_path).get_user(get_user_model()._meta.pk.to_python(user_id))
    except Exception:  # a damaged session
        return False
    if user is None or not user.is_active:
        return False
    hashes = [user.get_session_auth_hash(), *user.get_session_auth_fallback_hash()]
    return any(constant_time_compare(session_hash, expected) for expected in hashes)


async def refuse(send, status: int, code: str, message: str) -> None:
    body = json.dumps(error_body(code, message)).encode()
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(body)).encode()),
                (b"x-content-type-options", b"nosniff"),
                # The body may still be on its way: the connection cannot carry another request.
                (b"connection", b"close"),
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})


class BodyLimitMiddleware:
    """ASGI middleware around the Django application; see the module's description."""

    def __init__(self, app):
        self.app = app

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        headers = _headers(scope)
        raw_length = headers.get(b"content-length")
        try:
            length = int(raw_length) if raw_length is not None else None
            if length is not None and length < 0:
                raise ValueError
        except ValueError:
            return await refuse(send, 400, "invalid", "The Content-Length header is not a number.")
        if not length and b"transfer-encoding" not in headers:
            return await self.app(scope, receive, send)  # no body

        method, path = scope["method"], scope["path"]
        root = scope.get("root_path", "")
        if root and path.startswith(root):
            path = path[len(root) :] or "/"
        limit = endpoint_limit(method, path)
        if length is not None and length > limit:
            logger.info("Refused %s %s: a body of %d bytes, over its limit of %d", method, path, length, limit)
            return await refuse(
                send, 413, "too_large", f"The request body is {length} bytes, over the limit of {limit} bytes."
            )
        message = f"The request body is over the limit of {limit} bytes."
        anonymous_limit = settings.PRO_MAX_UNAUTHENTICATED_BYTES
        if (length is None or length > anonymous_limit) and limit > anonymous_limit:
            bearer, session_key = _bearer(headers), _session_key(headers)
            presented = bearer is not None or session_key is not None
            if not (presented and await _credential_is_valid(bearer, session_key)):
                limit = anonymous_limit
                message = (
                    "Without a valid ticket, API key or signed-in session a request body may hold "
                    f"at most {limit} bytes."
                )
                if length is not None:
                    logger.info("Refused %s %s: %d bytes without valid credentials", method, path, length)
                    return await refuse(send, 413, "too_large", message)
        if length is not None:
            return await self.app(scope, receive, send)  # the server delivers no more than it declares
        await self._counted(scope, receive, send, limit, message, f"{method} {path}")

    async def _counted(self, scope, receive, send, limit: int, refusal: str, target: str) -> None:
        """Pass a body of unknown length on while it stays within ``limit``; refuse it once it does not."""
        received = 0
        over = False
        started = False

        async def counting_receive():
            nonlocal received, over
            if over:
                return {"type": "http.disconnect"}
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > limit:
                    over = True
                    # Django's handler stops reading at a disconnect and answers nothing.
                    return {"type": "http.disconnect"}
            return message

        async def watching_send(message):
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        await self.app(scope, counting_receive, watching_send)
        if over and not started:
            logger.info("Refused %s: a body of no declared length past its limit of %d bytes", target, limit)
            await refuse(send, 413, "too_large", refusal)
