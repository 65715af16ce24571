from django.contrib import admin
from django.urls import include, path

from apps.accounts.login_views import admin_login
from apps.cluster.api import MetricsApi
from apps.portal.views import favicon, healthz

from .errors import json_not_found, json_server_error

# The admin is part of the platform, not a separate "Django administration".
admin.site.site_header = "Optimization platform administration"
admin.site.site_title = "Optimization platform admin"
admin.site.index_title = "Users, apps, jobs and the cluster"

urlpatterns = [
    path("admin/login/", admin_login),  # the portal's login, with its second step
    path("admin/", admin.site.urls),
    path("api/v1/", include("pro_portal.api_urls")),
    path("oidc/", include("mozilla_django_oidc.urls")),  # single sign-on: authenticate/, callback/
    path("healthz", healthz, name="healthz"),
    path("metrics", MetricsApi.as_view(), name="metrics"),
    path("favicon.ico", favicon, name="favicon"),
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
