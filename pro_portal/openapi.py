"""The OpenAPI schema states the errors the API answers, in the one shape of ``pro_portal.errors``.

drf-spectacular documents only the success of an operation; clients (and the API fuzzer in
``tests/test_api_fuzz.py``) need the failures too. Every operation gets the error statuses that
apply to it by construction (403: the IP range filter and permissions reach every path; 401: it
authenticates; 404: it names an object; 400: it takes input); statuses that only some services
raise (409, 413, 429) are declared by their views with ``ERROR``.
"""

from __future__ import annotations

from typing import Any

from drf_spectacular.openapi import AutoSchema
from drf_spectacular.utils import OpenApiResponse
from rest_framework import serializers


class ErrorBody(serializers.Serializer):
    code = serializers.CharField(help_text="Machine-readable, e.g. not_found, invalid, forbidden.")
    message = serializers.CharField(help_text="A sentence for people.")
    detail = serializers.JSONField(required=False, help_text="Per-field messages of a refused input, if any.")


class Error(serializers.Serializer):
    error = ErrorBody()


ERROR = OpenApiResponse(Error, description="Refused; the message says why.")

DESCRIPTIONS = {
    400: "The input is malformed or refused; the message says why.",
    401: "No valid ticket or API key (or session login) came with the request.",
    403: "Not allowed: role, access to the object, a data session's ticket, or the IP range filter.",
    404: "No such object, or none the caller may see.",
}


class PlatformAutoSchema(AutoSchema):
    def get_operation(self, *args: Any, **kwargs: Any) -> dict | None:
        operation = super().get_operation(*args, **kwargs)
        if operation is None:
            return None
        parameters = operation.get("parameters", [])
        codes = {403}
        if self.view.get_authenticators():
            codes.add(401)
        if any(p["in"] == "path" for p in parameters):
            codes.add(404)
        if parameters or "requestBody" in operation:
            codes.add(400)
        error = self.resolve_serializer(Error, "response").ref
        for code in sorted(codes):
            operation["responses"].setdefault(
                str(code), {"description": DESCRIPTIONS[code], "content": {"application/json": {"schema": error}}}
            )
        return operation


# Markdown under the title of the docs page (Swagger UI): the way back from the docs.
PORTAL_LINKS = "[← Back to the portal](/) · [the API's endpoints](/api/v1/) · [the schema](/api/v1/schema/)"


def link_to_portal(result: dict, generator: Any, request: Any, public: bool) -> dict:
    """A postprocessing hook (``SPECTACULAR_SETTINGS["POSTPROCESSING_HOOKS"]``): the schema's
    description links back to the portal, so the docs page is no dead end."""
    info = result.setdefault("info", {})
    description = info.get("description", "")
    if PORTAL_LINKS not in description:
        info["description"] = f"{description}\n\n{PORTAL_LINKS}".strip()
    return result
