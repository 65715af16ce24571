"""Password reset by e-mail (Django's views): a link that works once, and no word on who exists."""

import re

import pytest
from django.contrib.auth import get_user_model
from django.test import Client
from rest_framework.test import APIClient

from apps.accounts.models import SecurityEvent
from tests.helpers import password

pytestmark = pytest.mark.django_db

NEW_PASSWORD = "carol-Other-pw-2"


@pytest.fixture
def carol_with_mail(carol):
    carol.email = "carol@example.com"
    carol.save(update_fields=["email"])
    return carol


def ask(address: str):
    return Client().post("/password-reset/", {"email": address}, follow=True)


def link_in(mail) -> str:
    match = re.search(r"https?://testserver(/password-reset/[^/\s]+/[^/\s]+/)", mail.body)
    assert match, mail.body
    return match.group(1)


def test_login_page_links_to_it():
    page = Client().get("/login/")
    assert b'href="/password-reset/"' in page.content and b"Forgot your password?" in page.content


def test_a_known_address_gets_a_link_that_sets_a_new_password_once(carol_with_mail, mailoutbox):
    page = ask("Carol@Example.com")  # addresses match whatever their case
    assert page.status_code == 200 and b"Check your e-mail" in page.content
    assert len(mailoutbox) == 1
    mail = mailoutbox[0]
    assert mail.to == ["carol@example.com"] and "carol" in mail.body
    link = link_in(mail)

    browser = Client()
    form = browser.get(link, follow=True)  # Django moves the token out of the address first
    assert form.status_code == 200 and b"<h1>Set a new password</h1>" in form.content
    done = browser.post(form.redirect_chain[-1][0], {"new_password1": NEW_PASSWORD, "new_password2": NEW_PASSWORD})
    assert done.status_code == 302 and done["Location"] == "/password-reset/done/"
    assert b"Your password is set" in browser.get(done["Location"]).content

    login = APIClient().post("/api/v1/auth/tickets", {"username": "carol", "password": NEW_PASSWORD}, format="json")
    assert login.status_code == 201
    old = APIClient().post("/api/v1/auth/tickets", {"username": "carol", "password": password("carol")}, format="json")
    assert old.status_code == 401
    assert SecurityEvent.objects.filter(kind="password.change", actor="carol").count() == 1

    # The link works once.
    again = Client().get(link, follow=True)
    assert again.status_code == 200 and b"This link does not work" in again.content
    assert b"<h1>Set a new password</h1>" not in again.content


def test_an_unknown_address_gets_the_same_page_and_no_mail(carol_with_mail, mailoutbox):
    known = ask("carol@example.com")
    unknown = ask("nobody@example.com")
    assert known.status_code == unknown.status_code == 200
    assert known.redirect_chain == unknown.redirect_chain == [("/password-reset/sent/", 302)]
    assert known.content == unknown.content
    assert len(mailoutbox) == 1 and mailoutbox[0].to == ["carol@example.com"]


def test_accounts_without_a_usable_password_or_inactive_get_no_mail(carol_with_mail, dave, mailoutbox):
    carol_with_mail.is_active = False
    carol_with_mail.save(update_fields=["is_active"])
    dave.email = "dave@example.com"
    dave.set_unusable_password()  # an account that logs in another way
    dave.save()
    for address in ("carol@example.com", "dave@example.com"):
        assert ask(address).redirect_chain == [("/password-reset/sent/", 302)]
    assert mailoutbox == []


def test_a_tampered_link_does_not_work(carol_with_mail, mailoutbox):
    ask("carol@example.com")
    link = link_in(mailoutbox[0])
    tampered = link[:-3] + ("a" if link[-3] != "a" else "b") + link[-2:]
    page = Client().get(tampered, follow=True)
    assert b"This link does not work" in page.content
    assert get_user_model().objects.get(username="carol").check_password(password("carol"))


def test_mail_settings_default_to_files_in_the_data_folder():
    """A fresh machine has no mail server: the messages go to <data>/mail (the test run uses locmem)."""
    import importlib
    import os

    from django.conf import settings

    module = importlib.import_module("pro_portal.settings")
    if not any(os.environ.get(name) for name in ("PRO_EMAIL_HOST", "EMAIL_HOST", "PRO_EMAIL_BACKEND")):
        assert module.EMAIL_BACKEND == "django.core.mail.backends.filebased.EmailBackend"
        assert module.EMAIL_FILE_PATH == settings.DATA_DIR / "mail"
        assert (module.EMAIL_FILE_PATH.stat().st_mode & 0o777) == 0o700
    assert module.PASSWORD_RESET_TIMEOUT == 3600


def test_the_file_backend_writes_the_message_into_the_mail_folder(carol_with_mail, settings, tmp_path):
    settings.EMAIL_BACKEND = "django.core.mail.backends.filebased.EmailBackend"
    settings.EMAIL_FILE_PATH = tmp_path / "mail"
    ask("carol@example.com")
    (message,) = (tmp_path / "mail").iterdir()
    assert "/password-reset/" in message.read_text() and "carol@example.com" in message.read_text()
