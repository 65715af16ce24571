"""The portal's login in two steps: the password, then (when the account has it) the code of its
authenticator app or a recovery code; and the account page's two-factor set-up."""

from __future__ import annotations

import time
from urllib.parse import urlencode

from django.conf import settings
from django.contrib import messages
from django.contrib.auth import login as auth_login
from django.contrib.auth.decorators import login_required
from django.contrib.auth.models import User
from django.contrib.auth.views import LoginView
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.urls import reverse
from django.utils.http import url_has_allowed_host_and_scheme
from django_otp import login as otp_login

from pro_portal.errors import ApplicationError

from .two_factor import (
    authenticator_qr_svg,
    authenticator_secret,
    pending_authenticator,
    recovery_codes_left,
    recovery_codes_renew,
    two_factor_check,
    two_factor_confirm,
    two_factor_disable,
    two_factor_enabled,
    two_factor_required,
    two_factor_start,
)

PENDING = "pro_2fa_pending"  # the session's user who gave the right password, waiting for the code
PENDING_SECONDS = 300
PENDING_TRIES = 5


class PasswordLoginView(LoginView):
    """Step one. An account with two-factor login is not logged in yet: it is asked for its code."""

    template_name = "portal/login.html"
    redirect_authenticated_user = True

    def get_context_data(self, **kwargs):
        from .oidc import oidc_enabled

        context = super().get_context_data(**kwargs)
        context["sso_name"] = settings.PRO_OIDC_NAME if oidc_enabled() else ""
        return context

    def form_valid(self, form):
        user = form.get_user()
        if not two_factor_enabled(user):
            return super().form_valid(form)
        self.request.session[PENDING] = {
            "user": user.pk,
            "backend": user.backend,
            "since": time.time(),
            "next": self.get_success_url(),
            "tries": 0,
        }
        return redirect("portal:login-code")


def login_code(request: HttpRequest) -> HttpResponse:
    """Step two: the code; five wrong ones (or five minutes) and the password is asked again."""
    pending = request.session.get(PENDING)
    user = User.objects.filter(pk=pending["user"], is_active=True).first() if pending else None
    if user is None or time.time() - pending["since"] > PENDING_SECONDS:
        request.session.pop(PENDING, None)
        messages.info(request, "Log in again: the password step has expired.")
        return redirect("portal:login")
    error = ""
    if request.method == "POST":
        try:
            device = two_factor_check(user=user, code=request.POST.get("code", ""), request=request)
        except ApplicationError as exc:
            pending["tries"] += 1
            request.session[PENDING] = pending
            if pending["tries"] >= PENDING_TRIES or getattr(request, "axes_locked_out", False):
                request.session.pop(PENDING, None)
                messages.error(request, "Too many wrong codes: log in again.")
                return redirect("portal:login")
            error = exc.message
        else:
            request.session.pop(PENDING, None)
            auth_login(request, user, backend=pending["backend"])
            otp_login(request, device)
            target = pending["next"]
            safe = url_has_allowed_host_and_scheme(target, {request.get_host()}, request.is_secure())
            return redirect(target if safe else reverse("portal:catalogue"))
    return render(request, "portal/login_code.html", {"error": error, "username": user.username})


def admin_login(request: HttpRequest) -> HttpResponse:
    """The Django admin logs in through the portal's login, so that its second step holds there too."""
    target = request.GET.get("next") or reverse("admin:index")
    return redirect(f"{reverse('portal:login')}?{urlencode({'next': target})}")


@login_required
def two_factor_page(request: HttpRequest) -> HttpResponse:
    """Set up, renew the recovery codes of, or turn off the user's two-factor login."""
    user = request.user
    action = request.POST.get("action") if request.method == "POST" else None
    codes: list[str] = []
    try:
        if action == "start":
            two_factor_start(user=user, code=request.POST.get("code", ""), request=request)
        elif action == "confirm":
            codes = two_factor_confirm(user=user, code=request.POST.get("code", ""), request=request)
            messages.success(request, "Two-factor login is on. Keep the recovery codes below somewhere safe.")
        elif action == "recovery":
            codes = recovery_codes_renew(user=user, code=request.POST.get("code", ""), request=request)
            messages.success(request, "New recovery codes: the old ones no longer work.")
        elif action == "disable":
            two_factor_disable(user=user, code=request.POST.get("code", ""), request=request)
            messages.success(request, "Two-factor login is off.")
            return redirect("portal:two-factor")
    except ApplicationError as exc:
        messages.error(request, exc.message)
    pending = pending_authenticator(user) if not codes else None
    context = {
        "enabled": two_factor_enabled(user),
        "required": two_factor_required(user),
        "pending": pending,
        "qr": authenticator_qr_svg(pending) if pending else "",
        "secret": authenticator_secret(pending) if pending else "",
        "codes": codes,  # shown in this response only
        "left": recovery_codes_left(user),
    }
    return render(request, "portal/two_factor.html", context)
