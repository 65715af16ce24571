"""The platform API's one error shape, read on the client side (standard library only).

Every error answer of ``/api/v1/`` is ``{"error": {"code": "...", "message": "...", "detail": ...}}``
(``detail`` is optional). Both clients read it here: the runtime's ``api_client`` (inside session
processes) and the ``pro`` command (``pro_cli``), which ships in the same wheel.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class ApiErrorBody:
    """What an error answer says: a stable ``code``, a human ``message``, and optional ``detail``."""

    code: str
    message: str
    detail: Any = None


def parse_error(body: bytes | str | None) -> ApiErrorBody | None:
    """The error an answer's body carries, or None when the body is not in the API's error shape.

    A missing ``code`` or ``message`` is read as an empty string, so that a caller can fall back on
    the HTTP status for what is missing.
    """
    if not body:
        return None
    try:
        data = json.loads(body)
    except (ValueError, TypeError):  # not JSON, or not text (UnicodeDecodeError is a ValueError)
        return None
    error = data.get("error") if isinstance(data, dict) else None
    if not isinstance(error, dict):
        return None
    code, message = error.get("code"), error.get("message")
    return ApiErrorBody(
        code="" if code is None else str(code),
        message="" if message is None else str(message),
        detail=error.get("detail"),
    )
