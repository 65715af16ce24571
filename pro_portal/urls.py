from django.contrib import admin
from django.urls import include, path

from apps.portal.views import healthz

from .errors import json_not_found, json_server_error

urlpatterns = [
    path("admin/", admin.site.urls),
    path("api/v1/", include("pro_portal.api_urls")),
    path("healthz", healthz, name="healthz"),
    path("", include("apps.portal.urls")),
]


def handler404(request, exception=None):
    if request.path.startswith("/api/"):
        return json_not_found(request, exception)
    from django.views.defaults import page_not_found

    return page_not_found(request, exception)


def handler500(request):
    if request.path.startswith("/api/"):
        return json_server_error(request)
    from django.views.defaults import server_error

    return server_error(request)
