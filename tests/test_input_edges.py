"""Edge cases of input found in review: impossible dates, a session scope that names no app."""

from __future__ import annotations

import pytest

from apps.accounts.models import ApiKey
from apps.accounts.services import ticket_issue_for_user
from sessions import selectors
from tests.helpers import browser

pytestmark = pytest.mark.django_db


def test_an_impossible_date_in_the_event_filter_is_a_clear_error(admin_user):
    response = browser(admin_user).get("/security/?since=2024-02-30")
    assert response.status_code == 400
    assert "is not a date" in response.content.decode()


def test_an_impossible_key_expiry_is_refused_with_a_message(alice):
    response = browser(alice).post("/account/", {"action": "create-key", "name": "ci", "expires": "2024-02-30"})
    assert response.status_code == 200
    assert "is not a date" in response.content.decode()
    assert not ApiKey.objects.filter(user=alice).exists()


def test_a_scope_that_names_no_app_reaches_no_case(alice):
    _, ticket = ticket_issue_for_user(user=alice, scope={"session": "s"})
    assert list(selectors.cases_in_scope(alice, "")) == []
    assert ticket.scope == {"session": "s"}
