"""``/api/v1/``: what a person or a script finds at the API's root, the endpoints and the docs.

Answered to anyone, like the schema and the docs it links: it lists routes, never data.
"""

from __future__ import annotations

import re
from functools import cache

from django.urls import URLPattern, get_resolver, path, reverse
from drf_spectacular.utils import extend_schema
from rest_framework import serializers
from rest_framework.permissions import AllowAny
from rest_framework.response import Response
from rest_framework.views import APIView

# Views whose docstrings speak to the platform's users; the others (drf-spectacular's) are said here.
OWN_MODULES = ("apps.", "sessions.", "pro_portal.")
OTHER_SUMMARIES = {"schema": "The OpenAPI schema of this API.", "docs": "This API's documentation, to try it out."}
# "<slug:name>" of a route and "(?P<path>.*)" of a regular expression both become "{name}".
_PARAMETER = re.compile(r"<(?:\w+:)?(\w+)>|\(\?P<(\w+)>[^)]*\)")


class EndpointOut(serializers.Serializer):
    path = serializers.CharField(help_text="With {parameters} in braces, as in the schema.")
    methods = serializers.ListField(child=serializers.CharField())
    summary = serializers.CharField(allow_blank=True)


class ApiRootOut(serializers.Serializer):
    name = serializers.CharField()
    version = serializers.CharField()
    docs = serializers.URLField(help_text="The interactive documentation.")
    schema = serializers.URLField(help_text="The OpenAPI schema.")
    portal = serializers.URLField()
    authentication = serializers.CharField()
    endpoints = EndpointOut(many=True)


def _template(pattern: URLPattern) -> str:
    route = str(pattern.pattern).removeprefix("^").removesuffix("$")
    return _PARAMETER.sub(lambda m: "{" + (m.group(1) or m.group(2)) + "}", route)


@cache
def api_endpoints() -> tuple[dict, ...]:
    """Every route of the API, read from the URL configuration itself so that none is forgotten."""
    prefix, resolver = get_resolver().namespace_dict["api"]
    endpoints = []
    for pattern in resolver.url_patterns:
        if not isinstance(pattern, URLPattern):
            continue
        view = getattr(pattern.callback, "cls", None) or getattr(pattern.callback, "view_class", None)
        methods = [m.upper() for m in getattr(view, "http_method_names", []) if m != "options" and hasattr(view, m)]
        doc = (view.__doc__ or "") if view is not None and view.__module__.startswith(OWN_MODULES) else ""
        summary = OTHER_SUMMARIES.get(pattern.name or "", " ".join(doc.strip().split("\n\n")[0].split()))
        endpoints.append({"path": "/" + prefix + _template(pattern), "methods": methods, "summary": summary})
    return tuple(endpoints)


class ApiRootApi(APIView):
    """The API's endpoints and where its documentation is."""

    authentication_classes = []
    permission_classes = [AllowAny]

    @extend_schema(responses=ApiRootOut)
    def get(self, request):
        body = {
            "name": "Optimization platform API",
            "version": "1",
            "docs": request.build_absolute_uri(reverse("api:docs")),
            "schema": request.build_absolute_uri(reverse("api:schema")),
            "portal": request.build_absolute_uri("/"),
            "authentication": (
                "Authorization: Bearer <ticket> (POST /api/v1/auth/tickets) or <API key> (made on the account"
                " page); the portal's login session works too."
            ),
            "endpoints": list(api_endpoints()),
        }
        return Response(ApiRootOut(body).data)


# Included by pro_portal.api_urls into the "api" namespace: reverse("api:root").
urlpatterns = [path("", ApiRootApi.as_view(), name="root")]
