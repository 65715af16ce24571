"""OpenID Connect login (mozilla-django-oidc): the authorization code flow with PKCE, the
provider's endpoints found from ``PRO_OIDC_ISSUER``'s discovery document, accounts and group
mapping by :mod:`apps.accounts.sso`, and a logout that ends the provider's session too.

Configured by ``PRO_OIDC_ISSUER``, ``PRO_OIDC_CLIENT_ID``, ``PRO_OIDC_CLIENT_SECRET`` (or
``_FILE``) and the group settings of :mod:`apps.accounts.sso`; without an issuer, none of this
is reachable and the login page shows no provider.
"""

from __future__ import annotations

import logging
from typing import Any
from urllib.parse import urlencode

import requests
from django.conf import settings
from django.contrib import auth, messages
from django.contrib.auth import get_user_model
from django.core.exceptions import SuspiciousOperation
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import redirect
from django.urls import reverse
from mozilla_django_oidc.auth import OIDCAuthenticationBackend
from mozilla_django_oidc.views import OIDCAuthenticationCallbackView, OIDCAuthenticationRequestView

from pro_portal.errors import ApplicationError
from pro_portal.ttl_cache import TTLCache

from .sso import sso_login

logger = logging.getLogger(__name__)

DISCOVERY_SECONDS = 3600.0  # providers rotate keys and endpoints rarely; the keys are fetched per login anyway
_discovery: TTLCache[dict[str, Any]] = TTLCache(DISCOVERY_SECONDS)


class ProviderUnreachable(ApplicationError):
    status = 502
    code = "sso_unavailable"


def oidc_enabled() -> bool:
    return bool(settings.PRO_OIDC_ISSUER)


def provider_configuration() -> dict[str, Any]:
    """The provider's discovery document (cached for an hour in this process)."""
    issuer = settings.PRO_OIDC_ISSUER.rstrip("/")
    return _discovery.get(issuer, lambda: _discover(issuer))


def _discover(issuer: str) -> dict[str, Any]:
    try:
        answer = requests.get(f"{issuer}/.well-known/openid-configuration", timeout=settings.OIDC_TIMEOUT)
        answer.raise_for_status()
        document = answer.json()
    except (requests.RequestException, ValueError) as exc:
        raise ProviderUnreachable(f"The identity provider {issuer} cannot be reached: {exc}") from None
    if str(document.get("issuer", "")).rstrip("/") != issuer:
        # OpenID Connect Discovery 1.0, section 4.3: a document for another issuer is not this one's.
        raise ProviderUnreachable(f"{issuer}'s discovery document names another issuer: {document.get('issuer')!r}")
    return document


class ProviderBackend(OIDCAuthenticationBackend):
    """Logs in the provider's users. Its endpoints are looked up only for a login that comes back
    from the provider, not for every password login that passes through the backends."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        self.UserModel = get_user_model()

    def authenticate(self, request: HttpRequest | None, **kwargs: Any) -> Any:
        if request is None or "nonce" not in kwargs or "code" not in request.GET or not oidc_enabled():
            return None
        document = provider_configuration()
        self.OIDC_OP_TOKEN_ENDPOINT = document["token_endpoint"]
        self.OIDC_OP_USER_ENDPOINT = document["userinfo_endpoint"]
        self.OIDC_OP_JWKS_ENDPOINT = document["jwks_uri"]
        self.OIDC_RP_CLIENT_ID = settings.OIDC_RP_CLIENT_ID
        self.OIDC_RP_CLIENT_SECRET = settings.OIDC_RP_CLIENT_SECRET
        self.OIDC_RP_SIGN_ALGO = settings.OIDC_RP_SIGN_ALGO
        self.OIDC_RP_IDP_SIGN_KEY = None
        return super().authenticate(request, **kwargs)

    def verify_claims(self, claims: dict[str, Any]) -> bool:
        return bool(claims.get("sub"))

    def get_or_create_user(self, access_token: str, id_token: str, payload: dict[str, Any]) -> Any:
        # The ID token's claims and the userinfo's together: providers put groups in either.
        claims = {**payload, **self.get_userinfo(access_token, id_token, payload)}
        if claims.get("sub") != payload.get("sub"):
            raise SuspiciousOperation("the userinfo's subject is not the ID token's")
        try:
            return sso_login(issuer=settings.PRO_OIDC_ISSUER.rstrip("/"), claims=claims, request=self.request)
        except ApplicationError as exc:
            messages.error(self.request, exc.message)
            return None


class AuthenticationRequestView(OIDCAuthenticationRequestView):
    """``/oidc/authenticate/``: off to the provider's login, with state, nonce and a PKCE challenge."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super(OIDCAuthenticationRequestView, self).__init__(*args, **kwargs)
        self.OIDC_RP_CLIENT_ID = settings.OIDC_RP_CLIENT_ID

    def get(self, request: HttpRequest) -> HttpResponse:
        if not oidc_enabled():
            raise Http404("single sign-on is not configured")
        try:
            self.OIDC_OP_AUTH_ENDPOINT = provider_configuration()["authorization_endpoint"]
        except (ApplicationError, KeyError) as exc:
            logger.warning("single sign-on unavailable: %s", exc)
            messages.error(request, "The identity provider cannot be reached now: log in with a password or try later.")
            return redirect("portal:login")
        return super().get(request)


class CallbackView(OIDCAuthenticationCallbackView):
    """``/oidc/callback/``: the provider's answer; a refusal goes back to the login page saying so."""

    def login_failure(self) -> HttpResponse:
        if not any(True for _ in messages.get_messages(self.request)):
            messages.error(self.request, "The single sign-on did not log you in: try again.")
        return redirect("portal:login")


def provider_logout_url(request: HttpRequest) -> str:
    """Where a logout goes after the platform's: the provider's end of session (RP-initiated
    logout), back to the login page; the login page when the provider offers none."""
    back = request.build_absolute_uri(reverse("portal:login"))
    id_token = request.session.get("oidc_id_token")
    end = provider_configuration().get("end_session_endpoint") if id_token else None
    if not end:
        return back
    query = {"id_token_hint": id_token, "post_logout_redirect_uri": back, "client_id": settings.OIDC_RP_CLIENT_ID}
    return f"{end}?{urlencode(query)}"


def logout(request: HttpRequest) -> HttpResponse:
    """The portal's logout (POST): the platform's session, and the provider's when it made this one."""
    if request.method != "POST":
        return HttpResponse(status=405, headers={"Allow": "POST"})
    target = reverse("portal:login")
    if request.user.is_authenticated and oidc_enabled() and request.session.get("oidc_id_token"):
        try:
            target = provider_logout_url(request)
        except ApplicationError as exc:  # the provider is down: the platform's logout still happens
            logger.warning("no logout at the identity provider: %s", exc)
    auth.logout(request)
    return redirect(target)
