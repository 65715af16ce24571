"""One application error type, translated to HTTP once, at the edge.

Services raise :class:`ApplicationError` (or a subclass) with a machine-readable ``code`` and
a sentence for people; the API answers every error as
``{"error": {"code": ..., "message": ..., "detail": ...}}``, never as an HTML page.
"""

from __future__ import annotations

import logging
from typing import Any

from django.core.exceptions import BadRequest, SuspiciousOperation
from django.core.exceptions import PermissionDenied as DjangoPermissionDenied
from django.dispatch import Signal
from django.http import Http404, JsonResponse
from django.http.multipartparser import MultiPartParserError
from rest_framework import exceptions as drf
from rest_framework.response import Response

logger = logging.getLogger(__name__)

# Sent (with ``request``, ``target`` and ``message``) when the API refuses a request as forbidden.
# The accounts app records it in the security event log; this module, below every app, imports none.
access_denied = Signal()


class ApplicationError(Exception):
    status = 400
    code = "invalid"

    def __init__(self, message: str, *, code: str | None = None, detail: Any = None, status: int | None = None):
        super().__init__(message)
        self.message = message
        self.code = code or self.code
        self.detail = detail
        self.status = status or self.status


class NotFound(ApplicationError):
    status = 404
    code = "not_found"


class Forbidden(ApplicationError):
    status = 403
    code = "forbidden"


class Conflict(ApplicationError):
    status = 409
    code = "conflict"


class TooLarge(ApplicationError):
    status = 413
    code = "too_large"


def error_body(code: str, message: str, detail: Any = None) -> dict:
    body: dict[str, Any] = {"code": code, "message": message}
    if detail is not None:
        body["detail"] = detail
    return {"error": body}


def _first_error(detail: Any) -> str:
    """The first message of a validation error's detail, after the path of the field it is about
    (``network.targets: ...`` for a nested serializer's field)."""
    path: list[str] = []
    while True:
        if isinstance(detail, dict) and detail:
            name, detail = next(iter(detail.items()))
            path.append(str(name))
        elif isinstance(detail, list) and detail:
            detail = detail[0]
        else:
            break
    return f"{'.'.join(path)}: {detail}" if path else str(detail)


def _drf_message(exc: drf.APIException) -> tuple[str, Any]:
    if isinstance(exc, drf.ValidationError):
        detail = exc.detail
        if isinstance(detail, (dict, list)) and detail:
            return _first_error(detail), detail
        return str(detail), None
    return str(exc.detail), None


def _record_denial(context: dict, exc: Exception) -> None:
    request = context.get("request")
    target = f"{request.method} {request.path}" if request is not None else ""
    access_denied.send(sender=type(exc), request=request, target=target, message=str(exc))


def api_exception_handler(exc: Exception, context: dict) -> Response:
    """DRF's exception handler: every failure becomes the one JSON error shape."""
    # Imported here: rest_framework.views loads the authentication classes, which need services.
    from rest_framework.views import set_rollback

    headers = {}
    already_recorded = getattr(exc, "code", "") == "address_not_allowed"  # as ip.denied
    if isinstance(exc, (Forbidden, drf.PermissionDenied, DjangoPermissionDenied)) and not already_recorded:
        _record_denial(context, exc)
    if isinstance(exc, ApplicationError):
        set_rollback()
        if getattr(exc, "retry_after", None):
            headers["Retry-After"] = str(exc.retry_after)
        return Response(error_body(exc.code, exc.message, exc.detail), status=exc.status, headers=headers)
    if isinstance(exc, Http404):
        exc = drf.NotFound()
    elif isinstance(exc, DjangoPermissionDenied):
        exc = drf.PermissionDenied()
    elif isinstance(exc, (MultiPartParserError, BadRequest, SuspiciousOperation)):
        # Django's own parsing of a body (request.FILES) refused it: a client's error, as Django answers it.
        exc = drf.ParseError(f"The request body is malformed: {exc}")
    if isinstance(exc, drf.APIException):
        set_rollback()
        if getattr(exc, "auth_header", None):
            headers["WWW-Authenticate"] = exc.auth_header
        if getattr(exc, "wait", None):
            headers["Retry-After"] = str(int(exc.wait))
        message, detail = _drf_message(exc)
        code = exc.get_codes() if not isinstance(exc, drf.ValidationError) else "invalid"
        if not isinstance(code, str):
            code = "invalid"
        return Response(error_body(code, message, detail), status=exc.status_code, headers=headers)
    logger.exception("Unhandled error in %s", context.get("view").__class__.__name__)
    set_rollback()
    return Response(
        error_body("server_error", "The server failed to handle this request; it has been logged."), status=500
    )


def json_not_found(request, exception=None) -> JsonResponse:
    return JsonResponse(error_body("not_found", f"No such resource: {request.path}"), status=404)


def json_server_error(request) -> JsonResponse:
    return JsonResponse(
        error_body("server_error", "The server failed to handle this request; it has been logged."), status=500
    )


def lockout_response(request, original_response=None, credentials=None):
    """What a locked-out login gets (django-axes): JSON for the API, a page for the portal.

    One answer whichever lock holds (account, account from an address, address) and whether or
    not the account exists, so that it tells an attacker nothing about either.
    """
    from django.conf import settings
    from django.shortcuts import render

    minutes = int(settings.AXES_COOLOFF_TIME.total_seconds() // 60)
    message = (
        f"Too many failed logins: this account or address is locked for {minutes} minutes. An admin can unlock it."
    )
    if request.path.startswith("/api/"):
        return JsonResponse(error_body("locked_out", message), status=429, headers={"Retry-After": str(minutes * 60)})
    return render(request, "portal/locked.html", {"minutes": minutes}, status=429)
