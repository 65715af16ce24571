"""Two-factor login for local accounts: a TOTP authenticator (codes computed here as a phone
would) and one-time recovery codes, in the portal, the ticket API, the CLI and the admin; roles
that must use it; wrong codes counted by the lockout rules."""

from __future__ import annotations

import re
import time

import pytest
from django.conf import settings as django_settings
from django.test import Client
from django_otp.oath import TOTP
from django_otp.plugins.otp_totp.models import TOTPDevice
from rest_framework.test import APIClient

from apps.accounts.models import SecurityEvent
from apps.accounts.two_factor import two_factor_confirm, two_factor_start
from tests.helpers import password

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def no_waiting_between_codes(settings):
    """django-otp makes a device wait 1, 2, 4 ... s after each wrong code; the tests try a right
    one at once (one test checks the wait itself)."""
    settings.OTP_TOTP_THROTTLE_FACTOR = settings.OTP_STATIC_THROTTLE_FACTOR = 0


def clear_of_step_end(step: int = 30, margin: float = 2.0) -> None:
    """Wait for the next step when this one ends within ``margin`` seconds: a code of the
    previous step, typed as the server's clock turns, would be two steps old when checked."""
    left = step - time.time() % step
    if left < margin:
        time.sleep(left + 0.05)


def code_of(device: TOTPDevice, steps_ahead: int = 0) -> str:
    """The authenticator's code, ``steps_ahead`` 30-second steps from now (a used code is refused
    again: each step of the test takes the next one, within the accepted drift of one step)."""
    clear_of_step_end(device.step)
    totp = TOTP(device.bin_key, device.step, device.t0, device.digits)  # a phone knows no drift
    totp.time = time.time() + steps_ahead * device.step
    return f"{totp.token():0{device.digits}d}"


def enrol(user) -> tuple[TOTPDevice, list[str]]:
    device = two_factor_start(user=user)
    codes = two_factor_confirm(user=user, code=code_of(device, -1))
    device.refresh_from_db()
    return device, codes


def portal_password(client: Client, username: str, next_url: str = "/"):
    return client.post(f"/login/?next={next_url}", {"username": username, "password": password(username)})


def test_set_up_on_the_account_page_then_log_in_with_the_code(carol):
    browser = Client()
    assert portal_password(browser, "carol").status_code == 302
    page = browser.get("/account/")
    assert "Set it up" in page.content.decode()
    shown = browser.post("/account/two-factor/", {"action": "start"}).content.decode()
    assert "<svg" in shown and "otpauth" not in shown  # the key is in the QR code and typed out, not as a link
    secret = re.search(r'<code id="secret">([A-Z2-7]+)</code>', shown).group(1)
    device = TOTPDevice.objects.get(user=carol, confirmed=False)
    assert secret and device.key  # the page's key is the device's
    wrong = browser.post("/account/two-factor/", {"action": "confirm", "code": "000000"}, follow=True)
    assert "current one: check the phone" in wrong.content.decode()
    assert not TOTPDevice.objects.filter(user=carol, confirmed=True).exists()
    on = browser.post("/account/two-factor/", {"action": "confirm", "code": code_of(device, -1)}).content.decode()
    assert "Two-factor login is on" in on and len(re.findall(r"<li><code>([a-z2-9]{10})</code></li>", on)) == 10

    browser.post("/logout/")
    browser = Client()
    step_one = portal_password(browser, "carol", "/jobs/")
    assert step_one.status_code == 302 and step_one["Location"] == "/login/code/"
    assert browser.get("/jobs/").status_code == 302  # not logged in between the two steps
    refused = browser.post("/login/code/", {"code": "123456"})
    assert "wrong or was used" in refused.content.decode()
    assert SecurityEvent.objects.filter(kind="login.2fa", outcome="failure", actor="carol").exists()
    done = browser.post("/login/code/", {"code": code_of(device)})
    assert done.status_code == 302 and done["Location"] == "/jobs/"
    assert browser.get("/jobs/").status_code == 200


def test_a_recovery_code_logs_in_once(carol):
    _, codes = enrol(carol)
    first = Client()
    portal_password(first, "carol")
    assert first.post("/login/code/", {"code": codes[0].upper()}).status_code == 302
    assert SecurityEvent.objects.get(kind="2fa.recovery.use").detail["left"] == 9
    again = Client()
    portal_password(again, "carol")
    assert "wrong or was used" in again.post("/login/code/", {"code": codes[0]}).content.decode()


def test_the_password_step_expires_and_wrong_codes_send_back_to_it(carol):
    device, _ = enrol(carol)
    browser = Client()
    portal_password(browser, "carol")
    for _ in range(4):
        assert browser.post("/login/code/", {"code": "111111"}).status_code == 200
    back = browser.post("/login/code/", {"code": "111111"})
    assert back.status_code == 302 and back["Location"] == "/login/"
    assert browser.post("/login/code/", {"code": code_of(device)})["Location"] == "/login/"  # the step is gone
    assert Client().get("/login/code/")["Location"] == "/login/"


def test_wrong_codes_count_as_failed_logins_of_the_account(carol):
    enrol(carol)
    browser = Client()
    for _ in range(django_settings.AXES_FAILURE_LIMIT):
        if browser.session.get("pro_2fa_pending") is None:
            portal_password(browser, "carol")
        browser.post("/login/code/", {"code": "222222"})
    locked = Client().post("/login/", {"username": "carol", "password": password("carol")})
    assert locked.status_code == 429  # the lockout's answer: the right password does not help now


def test_a_ticket_from_a_password_needs_the_code_too(carol):
    device, _ = enrol(carol)
    api = APIClient()
    given = {"username": "carol", "password": password("carol")}
    missing = api.post("/api/v1/auth/tickets", given, format="json")
    assert missing.status_code == 401 and missing.json()["error"]["code"] == "otp_required"
    wrong = api.post("/api/v1/auth/tickets", {**given, "otp": "333333"}, format="json")
    assert wrong.status_code == 401 and wrong.json()["error"]["code"] == "otp_invalid"
    issued = api.post("/api/v1/auth/tickets", {**given, "otp": code_of(device)}, format="json")
    assert issued.status_code == 201 and issued.json()["ticket"].startswith("pro_t_")


def test_roles_that_must_use_it_set_it_up_before_anything_else(settings, admin_user, carol):
    settings.PRO_2FA_REQUIRED_FOR = ["admins"]
    admin = Client()
    portal_password(admin, "root")
    for page in ("/", "/jobs/", "/admin/"):
        assert admin.get(page)["Location"] == "/account/two-factor/"
    assert "Your role logs in with two factors" in admin.get("/account/two-factor/").content.decode()
    refused = APIClient().post(
        "/api/v1/auth/tickets", {"username": "root", "password": password("root")}, format="json"
    )
    assert refused.status_code == 401 and refused.json()["error"]["code"] == "otp_setup_required"
    user = Client()
    portal_password(user, "carol")
    assert user.get("/jobs/").status_code == 200  # a plain user is not asked
    device, _ = enrol(admin_user)
    assert admin.get("/jobs/").status_code == 200
    kept = admin.post("/account/two-factor/", {"action": "disable", "code": code_of(device)}, follow=True)
    assert "required for your role" in kept.content.decode()
    assert TOTPDevice.objects.filter(user=admin_user, confirmed=True).exists()


def test_turning_it_off_or_moving_it_needs_a_current_code(carol):
    device, _ = enrol(carol)
    browser = Client()
    portal_password(browser, "carol")
    browser.post("/login/code/", {"code": code_of(device)})
    moved = browser.post("/account/two-factor/", {"action": "start", "code": "444444"}, follow=True)
    assert "wrong or was used" in moved.content.decode()
    assert not TOTPDevice.objects.filter(user=carol, confirmed=False).exists()
    off = browser.post("/account/two-factor/", {"action": "disable", "code": code_of(device, 1)}, follow=True)
    assert "Two-factor login is off" in off.content.decode()
    assert not TOTPDevice.objects.filter(user=carol).exists()
    assert SecurityEvent.objects.filter(kind="2fa.disable", actor="carol").exists()


def test_the_admin_logs_in_through_the_portal_and_resets_a_lost_phone(admin_user, carol):
    enrol(carol)
    anonymous = Client().get("/admin/login/?next=/admin/auth/user/")
    assert anonymous["Location"] == "/login/?next=%2Fadmin%2Fauth%2Fuser%2F"
    admin = Client()
    portal_password(admin, "root")
    admin.post(
        "/admin/auth/user/",
        {"action": "reset_two_factor", "_selected_action": [carol.pk]},
    )
    assert not TOTPDevice.objects.filter(user=carol).exists()
    assert SecurityEvent.objects.get(kind="2fa.reset").target == "user carol"
    assert portal_password(Client(), "carol")["Location"] == "/"  # the password alone again, to set it up anew


def test_a_wrong_code_makes_the_next_wait(settings, carol):
    settings.OTP_TOTP_THROTTLE_FACTOR = settings.OTP_STATIC_THROTTLE_FACTOR = 30
    device, _ = enrol(carol)
    browser = Client()
    portal_password(browser, "carol")
    browser.post("/login/code/", {"code": "555555"})
    waiting = browser.post("/login/code/", {"code": code_of(device)}).content.decode()
    assert re.search(r"wait \d+ s before the next one", waiting)


# ---------------------------------------------------------------- the CLI and a real browser


@pytest.mark.live
@pytest.mark.django_db(transaction=True)
def test_pro_login_asks_for_the_code(platform_server, carol, tmp_path):
    from tests.helpers import Pro

    device, _ = enrol(carol)
    pro = Pro(tmp_path / "config", platform_server.url)
    env = {"PRO_PASSWORD": password("carol")}
    asked = pro.fails("login", "--url", pro.url, "--username", "carol", env=env)
    assert "give the code with --otp (or PRO_OTP)" in asked
    wrong = pro.fails("login", "--url", pro.url, "--username", "carol", "--otp", "666666", env=env)
    assert "wrong or was used" in wrong and "otp_invalid" in wrong
    time.sleep(1.1)  # the server's own throttle (this process's settings do not reach it): 1 s after a wrong code
    pro.run("login", "--url", pro.url, "--username", "carol", "--otp", code_of(device), env=env)
    assert pro.run("app", "list").stdout.startswith("NAME")


@pytest.mark.live
@pytest.mark.browser
@pytest.mark.django_db(transaction=True)
def test_set_up_and_log_in_in_a_browser(platform_server, carol, browser_page):
    page, errors = browser_page
    base = platform_server.url
    page.goto(f"{base}/login/")
    page.fill("input[name=username]", "carol")
    page.fill("input[name=password]", password("carol"))
    page.click("button[type=submit]")
    page.wait_for_url(f"{base}/")
    page.goto(f"{base}/account/")
    page.get_by_role("link", name="Set it up").click()
    page.get_by_role("button", name="Set it up").click()
    assert page.locator(".qr svg").is_visible()
    secret = page.locator("#secret").inner_text()

    def phone(steps_ahead: int = 0) -> str:
        """What an authenticator app shows for the typed key."""
        from base64 import b32decode

        clear_of_step_end()
        totp = TOTP(b32decode(secret))
        totp.time = time.time() + steps_ahead * 30
        return f"{totp.token():06d}"

    page.get_by_label("The code it shows").fill(phone(-1))
    page.get_by_role("button", name="Turn it on").click()
    assert page.locator("#recovery-codes li").count() == 10
    page.get_by_role("button", name="Log out").click()

    page.goto(f"{base}/login/?next=/jobs/")
    page.fill("input[name=username]", "carol")
    page.fill("input[name=password]", password("carol"))
    page.click("button[type=submit]")
    page.wait_for_url(f"{base}/login/code/")
    page.get_by_label("Code").fill(phone())
    page.get_by_role("button", name="Log in").click()
    page.wait_for_url(f"{base}/jobs/")
    assert not errors
