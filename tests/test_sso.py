"""Single sign-on by OpenID Connect: the accounts and group mapping of apps.accounts.sso, and the
whole login in Chromium against a real provider (django-oauth-toolkit, tests/oidc_provider)."""

from __future__ import annotations

import pytest
from django.contrib.auth.models import User
from django.test import Client

from apps.accounts.models import SecurityEvent, SsoIdentity
from apps.accounts.services import user_role
from apps.accounts.sso import SsoRefused, sso_login
from tests.helpers import password

ISSUER = "https://id.example.com"


@pytest.fixture
def group_settings(settings):
    settings.PRO_OIDC_GROUPS_CLAIM = "groups"
    settings.PRO_SSO_GROUP_MAP = ["ops-team=Operations"]
    settings.PRO_SSO_ADMIN_GROUPS = ["pro-admins"]
    settings.PRO_SSO_PUBLISHER_GROUPS = ["pro-publishers"]
    return settings


def names(user: User) -> set[str]:
    return set(user.groups.values_list("name", flat=True))


@pytest.mark.django_db
def test_the_first_login_creates_the_account_and_every_login_maps_the_groups(group_settings):
    claims = {
        "sub": "u-1",
        "preferred_username": "erin",
        "email": "erin@example.com",
        "groups": ["ops-team", "pro-publishers"],
    }
    erin = sso_login(issuer=ISSUER, claims=claims)
    assert erin.username == "erin" and erin.email == "erin@example.com" and not erin.has_usable_password()
    assert names(erin) == {"Everyone", "Operations", "pro-publishers", "Publishers"}
    assert user_role(erin) == "publisher"
    assert SsoIdentity.objects.get(user=erin).groups == ["ops-team", "pro-publishers"]

    again = sso_login(issuer=ISSUER, claims={**claims, "groups": ["analysts"]})  # the provider moved her
    assert again == erin and names(erin) == {"Everyone", "analysts"} and user_role(erin) == "user"
    change = SecurityEvent.objects.filter(kind="sso.groups").order_by("pk").last()
    assert change.detail == {"added": ["analysts"], "removed": ["Operations", "pro-publishers"]}
    assert SecurityEvent.objects.filter(kind="user.role", target="user erin").count() == 2


@pytest.mark.django_db
def test_a_provider_user_named_like_a_local_account_gets_an_account_of_its_own(admin_user, group_settings):
    root = sso_login(issuer=ISSUER, claims={"sub": "evil", "preferred_username": "root", "groups": []})
    assert root.username == "root-2" and root != admin_user and user_role(root) == "user"
    other = sso_login(issuer="https://other.example.com", claims={"sub": "u-1", "preferred_username": "root"})
    assert other.username == "root-3"  # the same subject at another issuer is another person


@pytest.mark.django_db
def test_roles_without_a_setting_stay_as_the_admins_set_them(settings):
    settings.PRO_SSO_ADMIN_GROUPS = settings.PRO_SSO_PUBLISHER_GROUPS = []
    settings.PRO_SSO_GROUP_MAP = []
    frank = sso_login(issuer=ISSUER, claims={"sub": "u-2", "preferred_username": "frank", "groups": "a, b"})
    assert names(frank) == {"Everyone", "a", "b"}
    frank.is_superuser = True
    frank.save()
    assert user_role(sso_login(issuer=ISSUER, claims={"sub": "u-2", "groups": []})) == "admin"


@pytest.mark.django_db
def test_refusals(group_settings):
    with pytest.raises(SsoRefused):
        sso_login(issuer=ISSUER, claims={"preferred_username": "nobody"})
    gone = sso_login(issuer=ISSUER, claims={"sub": "u-3", "preferred_username": "gone"})
    gone.is_active = False
    gone.save()
    with pytest.raises(SsoRefused, match="deactivated"):
        sso_login(issuer=ISSUER, claims={"sub": "u-3"})
    many = sso_login(issuer=ISSUER, claims={"sub": "u-4", "groups": [f"g{i}" for i in range(2000)]})
    assert many.groups.count() == 501  # at most 500 of the provider's, and Everyone


@pytest.mark.django_db
def test_without_a_provider_there_is_no_single_sign_on(carol):
    assert "Log in with" not in Client().get("/login/").content.decode()
    assert Client().get("/oidc/authenticate/").status_code == 404


# ---------------------------------------------------------------- against real providers


@pytest.fixture
def sso_platform(transactional_db, storage_folder, tmp_path, oidc_provider, alice, runtime, platform_public_key):
    """The platform's web server logging in through the test's OpenID provider; alice's lab app
    granted to the platform group Operations, which the provider's group ops-team maps onto."""
    from django.contrib.auth.models import Group

    from tests.helpers import LAB, publish_folder
    from tests.live import free_port, platform_env, start_web_server

    version = publish_folder(alice, LAB, platform_public_key)
    version.app.grants.create(group=Group.objects.get_or_create(name="Operations")[0], level="viewer")
    env = platform_env(
        free_port(),
        storage_folder.as_uri(),
        PRO_OIDC_ISSUER=oidc_provider.issuer,
        PRO_OIDC_CLIENT_ID=oidc_provider.client_id,
        PRO_OIDC_CLIENT_SECRET=oidc_provider.client_secret,
        PRO_OIDC_NAME="Example ID",
        PRO_SSO_GROUP_MAP="ops-team=Operations",
        PRO_SSO_PUBLISHER_GROUPS="pro-publishers",
    )
    with start_web_server(env, tmp_path / "web.log") as server:
        yield server


def sso_log_in(page, base: str, provider, username: str, password: str, signed_in_there: bool = False) -> None:
    page.goto(f"{base}/login/")
    page.get_by_role("link", name="Log in with Example ID").click()
    if not signed_in_there:
        page.wait_for_url(f"{provider.url}/accounts/login/**")
        page.fill("input[name=username]", username)
        page.fill("input[name=password]", password)
        page.get_by_role("button", name="Sign in").click()
    page.wait_for_url(f"{base}/")


@pytest.mark.browser
def test_log_in_through_the_provider_with_its_groups_at_every_login(
    sso_platform, oidc_provider, browser_page, monkeypatch
):
    import requests

    monkeypatch.setenv("DJANGO_ALLOW_ASYNC_UNSAFE", "1")  # the ORM beside Playwright's loop, in a test only
    page, errors = browser_page
    base = sso_platform.url
    oidc_provider.add_user("erin", "erin-Secret-pw-1", groups=["ops-team", "pro-publishers"], email="erin@example.com")

    sso_log_in(page, base, oidc_provider, "erin", "erin-Secret-pw-1")
    assert page.locator("[data-app=lab]").count() == 1  # granted to Operations, the provider's ops-team
    erin = User.objects.get(username="erin")
    assert user_role(erin) == "publisher" and not erin.has_usable_password() and erin.email == "erin@example.com"
    assert SsoIdentity.objects.get(user=erin).issuer == oidc_provider.issuer

    # Logging out of the platform ends the provider's session too (RP-initiated logout).
    page.get_by_role("button", name="Log out").click()
    page.wait_for_url(f"{base}/login/**")
    assert oidc_provider.active_sessions("erin") == 0

    # The provider takes erin out of its groups: at her next login she loses the group, its app and the role.
    oidc_provider.set_groups("erin", [])
    # Her password at the platform is locked out meanwhile (someone guessed): single sign-on is not.
    for _ in range(django_settings_failures()):
        requests.post(f"{base}/api/v1/auth/tickets", json={"username": "erin", "password": "guess"}, timeout=10)
    locked = requests.post(f"{base}/api/v1/auth/tickets", json={"username": "erin", "password": "guess"}, timeout=10)
    assert locked.status_code == 429
    sso_log_in(page, base, oidc_provider, "erin", "erin-Secret-pw-1")
    assert page.locator("[data-app=lab]").count() == 0
    erin.refresh_from_db()
    assert names(erin) == {"Everyone"} and user_role(erin) == "user"
    assert SecurityEvent.objects.filter(kind="sso.groups", actor="erin").count() == 2
    assert not errors


def django_settings_failures() -> int:
    from django.conf import settings

    return settings.AXES_FAILURE_LIMIT


@pytest.mark.django_db(transaction=True)
def test_a_provider_that_cannot_be_reached_leaves_the_password_login(settings, carol):
    settings.PRO_OIDC_ISSUER = "http://127.0.0.1:9"  # nothing listens there
    from apps.accounts import oidc

    oidc._discovery.clear()
    browser = Client()
    assert "Log in with" in browser.get("/login/").content.decode()
    refused = browser.get("/oidc/authenticate/", follow=True)
    assert "cannot be reached now" in refused.content.decode()
    assert browser.post("/login/", {"username": "carol", "password": password("carol")}).status_code == 302
