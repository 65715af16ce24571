from csp.decorators import csp_update
from django.urls import include, path, re_path
from drf_spectacular.views import SpectacularAPIView, SpectacularSwaggerSplitView

from apps.accounts import api as accounts
from apps.catalog import api as catalog
from apps.connections import api as connections
from apps.schedules import api as schedules
from apps.storage.api import StorageApi
from apps.webhooks import api as webhooks
from sessions import api as sessions
from sessions import attempt_api as attempts
from sessions.task_api import TaskRunApi
from sessions.usage_api import UsageApi

app_name = "api"

urlpatterns = [
    path("", include("pro_portal.api_root")),
    path("schema/", SpectacularAPIView.as_view(), name="schema"),
    # Swagger UI sets element styles from its script; scripts stay limited to the platform's own.
    path(
        "docs/",
        csp_update({"style-src": ["'unsafe-inline'"]})(SpectacularSwaggerSplitView.as_view(url_name="api:schema")),
        name="docs",
    ),
    path("auth/me", accounts.MeApi.as_view(), name="me"),
    path("auth/tickets", accounts.TicketCreateApi.as_view(), name="tickets"),
    path("auth/tickets/current", accounts.CurrentTicketApi.as_view(), name="ticket-current"),
    path("auth/tickets/current/renew", accounts.TicketRenewApi.as_view(), name="ticket-renew"),
    path("auth/keys", accounts.ApiKeyListApi.as_view(), name="keys"),
    path("auth/keys/<int:key_id>", accounts.ApiKeyDetailApi.as_view(), name="key"),
    path("publisher-key", catalog.PublisherKeyApi.as_view(), name="publisher-key"),
    path("runtimes", catalog.RuntimeListApi.as_view(), name="runtimes"),
    path("runtimes/<str:key>", catalog.RuntimeDetailApi.as_view(), name="runtime"),
    path("environments", catalog.EnvironmentListApi.as_view(), name="environments"),
    path("environments/<str:key>", catalog.EnvironmentDetailApi.as_view(), name="environment"),
    path("wheelhouse", catalog.WheelhouseApi.as_view(), name="wheelhouse"),
    path("wheelhouse/<str:name>", catalog.WheelApi.as_view(), name="wheel"),
    path("apps", catalog.AppListApi.as_view(), name="apps"),
    path("apps/<slug:name>", catalog.AppDetailApi.as_view(), name="app"),
    path("apps/<slug:name>/icon", catalog.AppIconApi.as_view(), name="app-icon"),
    path("apps/<slug:name>/versions", catalog.VersionListApi.as_view(), name="app-versions"),
    path("apps/<slug:name>/versions/<str:version>", catalog.VersionDetailApi.as_view(), name="app-version"),
    path("apps/<slug:name>/grants", catalog.GrantListApi.as_view(), name="app-grants"),
    path("apps/<slug:name>/grants/<int:grant_id>", catalog.GrantDetailApi.as_view(), name="app-grant"),
    path("apps/<slug:app>/tasks/<str:procedure>", TaskRunApi.as_view(), name="app-task"),
    path("jobs", sessions.JobListApi.as_view(), name="jobs"),
    path("jobs/<int:job_id>", sessions.JobDetailApi.as_view(), name="job"),
    path("jobs/<int:job_id>/log", sessions.JobLogApi.as_view(), name="job-log"),
    path("jobs/<int:job_id>/interrupt", sessions.JobInterruptApi.as_view(), name="job-interrupt"),
    path("jobs/<int:job_id>/cancel", sessions.JobCancelApi.as_view(), name="job-cancel"),
    path("jobs/<int:job_id>/result", sessions.JobResultApi.as_view(), name="job-result"),
    path("jobs/<int:job_id>/attempts/<int:attempt>/bundle", attempts.AttemptBundleApi.as_view(), name="attempt-bundle"),
    path(
        "jobs/<int:job_id>/attempts/<int:attempt>/environment",
        attempts.AttemptEnvironmentApi.as_view(),
        name="attempt-environment",
    ),
    path("jobs/<int:job_id>/attempts/<int:attempt>/files", attempts.AttemptFileApi.as_view(), name="attempt-files"),
    path(
        "jobs/<int:job_id>/attempts/<int:attempt>/heartbeat",
        attempts.AttemptHeartbeatApi.as_view(),
        name="attempt-heartbeat",
    ),
    path("jobs/<int:job_id>/attempts/<int:attempt>/log", attempts.AttemptLogApi.as_view(), name="attempt-log"),
    path(
        "jobs/<int:job_id>/attempts/<int:attempt>/progress",
        attempts.AttemptProgressApi.as_view(),
        name="attempt-progress",
    ),
    path("jobs/<int:job_id>/attempts/<int:attempt>/result", attempts.AttemptResultApi.as_view(), name="attempt-result"),
    path("jobs/<int:job_id>/attempts/<int:attempt>/finish", attempts.AttemptFinishApi.as_view(), name="attempt-finish"),
    path(
        "jobs/<int:job_id>/attempts/<int:attempt>/release", attempts.AttemptReleaseApi.as_view(), name="attempt-release"
    ),
    path("sessions", sessions.SessionListApi.as_view(), name="sessions"),
    path("sessions/<str:session_id>", sessions.SessionDetailApi.as_view(), name="session"),
    path("sessions/<str:session_id>/stop", sessions.SessionStopApi.as_view(), name="session-stop"),
    path("sessions/<str:session_id>/restart", sessions.SessionRestartApi.as_view(), name="session-restart"),
    path("cases", sessions.CaseListApi.as_view(), name="cases"),
    path("cases/<str:case_id>", sessions.CaseDetailApi.as_view(), name="case"),
    path("usage", UsageApi.as_view(), name="usage"),
    path("webhooks/deliveries", webhooks.DeliveryListApi.as_view(), name="webhook-deliveries"),
    path("webhooks/secret", webhooks.SecretApi.as_view(), name="webhook-secret"),
    path("webhooks/settings", webhooks.SettingsApi.as_view(), name="webhook-settings"),
    path("connections", connections.ConnectionListApi.as_view(), name="connections"),
    path("connections/<slug:name>", connections.ConnectionDetailApi.as_view(), name="connection"),
    path("connections/<slug:name>/apps/<slug:app>", connections.ConnectionGrantApi.as_view(), name="connection-grant"),
    path("schedules", schedules.ScheduleListApi.as_view(), name="schedules"),
    path("schedules/<int:schedule_id>", schedules.ScheduleDetailApi.as_view(), name="schedule"),
    path("schedules/<int:schedule_id>/runs", schedules.ScheduleRunListApi.as_view(), name="schedule-runs"),
    re_path(r"^storage/(?P<path>.*)$", StorageApi.as_view(), name="storage"),
]
