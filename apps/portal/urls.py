from django.contrib.auth import views as auth_views
from django.urls import path, re_path, reverse_lazy

from apps.accounts import oidc
from apps.accounts.login_views import PasswordLoginView, login_code, two_factor_page
from apps.accounts.views import account
from apps.schedules.views import schedules_page
from sessions import job_views, webui

from . import usage_views, views

app_name = "portal"

urlpatterns = [
    path("login/", PasswordLoginView.as_view(), name="login"),
    path("login/code/", login_code, name="login-code"),
    path("account/two-factor/", two_factor_page, name="two-factor"),
    path("logout/", oidc.logout, name="logout"),
    # Password reset by e-mail (Django's views): the same answer whether or not the address is known.
    path(
        "password-reset/",
        auth_views.PasswordResetView.as_view(
            template_name="portal/password_reset_form.html",
            email_template_name="registration/password_reset_email.txt",
            subject_template_name="registration/password_reset_subject.txt",
            success_url=reverse_lazy("portal:password-reset-done"),
        ),
        name="password-reset",
    ),
    path(
        "password-reset/sent/",
        auth_views.PasswordResetDoneView.as_view(template_name="portal/password_reset_done.html"),
        name="password-reset-done",
    ),
    path(
        "password-reset/<uidb64>/<token>/",
        auth_views.PasswordResetConfirmView.as_view(
            template_name="portal/password_reset_confirm.html",
            success_url=reverse_lazy("portal:password-reset-complete"),
        ),
        name="password-reset-confirm",
    ),
    path(
        "password-reset/done/",
        auth_views.PasswordResetCompleteView.as_view(template_name="portal/password_reset_complete.html"),
        name="password-reset-complete",
    ),
    path("", views.catalogue, name="catalogue"),
    path("publish/", views.publish, name="publish"),
    path("apps/<slug:name>/", views.app_detail, name="app"),
    path("apps/<slug:name>/manage", views.app_manage, name="app-manage"),
    path("launch/<slug:name>/<str:version>", webui.launch, name="launch"),
    path("apps/<slug:name>/versions/<str:version>/", views.version_detail, name="version"),
    path("apps/<slug:name>/versions/<str:version>/submit", job_views.job_submit, name="job-submit"),
    path("jobs/", job_views.job_list, name="jobs"),
    path("schedules/", schedules_page, name="schedules"),
    path("jobs/<int:job_id>/", job_views.job_detail, name="job"),
    path("jobs/<int:job_id>/action", job_views.job_action, name="job-action"),
    path("statistics/", views.statistics, name="statistics"),
    path("usage/", usage_views.usage, name="usage"),
    path("nodes/", views.nodes, name="nodes"),
    path("security/", views.security, name="security"),
    path("account/", account, name="account"),
    path("sessions/", webui.session_list, name="sessions"),
    path("sessions/<uuid:session_id>/", webui.session_page, name="session"),
    path("sessions/<uuid:session_id>/action", webui.session_action, name="session-action"),
    re_path(r"^files/(?P<path>.*)$", views.files, name="files"),
]
